"""The failover watcher: a dead shard's cells go to the others by one table change.

Runs in the control actor (cluster/control.py) unless ``failover_ping_s`` is 0. Every
``failover_ping_s`` it pings each shard of the placement table, and each shard it failed over,
over the shard's direct channel (services/probe.py; one ping in flight per shard, so a slow
shard never holds the others' pings up), and hands the outcomes to ``models/failover.py:
Liveness``, which decides:

- **fail over** a shard that refused or reset the connection (its process is gone), or that
  missed ``failover_misses`` pings in a row: ``ClusterService.fail_over`` takes it out of the
  table (one version, audited as the operator's ``cluster.failover``, reason ``failover``).
  Rendezvous hashing over the survivors moves exactly its keys; the fence makes sure it can
  never commit again at the old version (a zombie, partitioned rather than dead, is fenced);
  gateways' calls that broke on it poll the table and go to the new owners, which activate the
  cells from Postgres.
- **rejoin** a failed-over shard that has answered every ping for ``failover_rejoin_s`` (Ray
  restarted it): ``ClusterService.rejoin``, a table change giving it back exactly the keys
  hashing places on it, by the move protocol (``cluster.rejoin``). With ``failover_rejoin_s``
  0 it stays empty until ``hyperlocal scale`` brings it back.

A connection that breaks by itself wakes the watcher at once, so a killed process is failed
over within milliseconds, not at the next ping. The loop survives every error (logged, tried
again at the next ping).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

from cluster.config import Settings
from models.errors import AppError
from models.failover import Outcome
from services.loops import LoopFailures, SupervisedLoop
from services.probe import ShardProbe
from services.scaling import ClusterService
from services.transport import RayTransport
from store import placement

log = logging.getLogger("hyperlocal.failover")


class FailoverWatcher:
    """Owns the probe and the ping tasks; the decisions' state is ``cluster.liveness``."""

    def __init__(
        self, settings: Settings, db: asyncpg.Pool, cluster: ClusterService, ray: RayTransport
    ) -> None:
        self.settings = settings
        self.db = db
        self.cluster = cluster
        self.liveness = cluster.liveness
        self.probe = ShardProbe(
            ray, settings.failover_timeout_s, settings.shard_transport == "direct", self._broken
        )
        self._wake = asyncio.Event()
        self._pinging: dict[str, asyncio.Task[None]] = {}
        self._in_table: frozenset[str] = frozenset()
        self.changes: list[dict[str, Any]] = []
        """The records of the failovers and rejoins this watcher made (the newest last)."""

    def _broken(self, shard: str) -> None:
        log.warning("shard %s: its probe connection broke", shard)
        self._wake.set()

    async def run(self, failures: LoopFailures | None = None) -> None:
        """Rounds every ``failover_ping_s``, or at once when a connection broke; never dies
        (a failed round is counted in ``failures``)."""
        await SupervisedLoop(
            "failover",
            self._round_step,
            period_s=self.settings.failover_ping_s,
            log=log,
            wake=self._wake,
            failures=failures,
        ).run()

    async def _round_step(self) -> None:
        await self.round()

    async def round(self) -> dict[str, Any] | None:
        """Decide on what the pings so far found, then ping what has no ping in flight; the
        record of a failover or rejoin made, or None."""
        table = await placement.load(self.db)
        if table is None:
            return None
        record = None
        dead = self.liveness.dead(table)
        back = self.liveness.back(table, time.monotonic())
        try:
            if dead:
                record = await self.cluster.fail_over(dead)
            elif back:
                record = await self.cluster.rejoin(back)
        except AppError as err:  # the table moved meanwhile (a scale): decided again next round
            log.info("failover change not made: %s", err.message)
        if record is not None:
            self.changes.append(record)
            table = await placement.load(self.db) or table
        self._in_table = frozenset(table.shards)
        watched = self.liveness.watched(table)
        for shard in [s for s in self._pinging if s not in watched]:
            self._pinging.pop(shard).cancel()
            await self.probe.forget(shard)
        for shard in watched:
            task = self._pinging.get(shard)
            if task is None or task.done():
                self._pinging[shard] = asyncio.create_task(self._ping(shard), name="probe")
        return record

    async def _ping(self, shard: str) -> None:
        try:
            outcome = await self.probe.ping(shard)
        except Exception:  # a probe bug is a miss, never a dead watcher
            log.exception("probe of shard %s failed", shard)
            outcome = Outcome.MISSED
        self.liveness.observe(shard, outcome, time.monotonic())
        if outcome is not Outcome.OK and shard in self._in_table:
            self._wake.set()  # decide now, not at the next ping (failed-over ones can wait)

    async def close(self) -> None:
        for task in self._pinging.values():
            task.cancel()
        self._pinging.clear()
        await self.probe.close()
