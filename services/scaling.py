"""The ops service: the cluster view, cell moves and pins, scale out and in, the rebalancer.

``ClusterService`` is what the control actor's ``cluster.*`` actions call (services/control.py;
REST and the CLI are in front of it). Every call checks its permission (models/rbac.py:
``cluster.view``, ``cluster.move``, ``cluster.scale``); every change is audited in the
transaction that makes it (services/cluster_ops.py), reads by the control host.

Scale out: the new shard actors are started first (``Fleet.start``: they serve, owning
nothing), then one table change gives them exactly the keys rendezvous hashing reassigns (the
fence drains the old owners' batches in flight). Scale in: one table change takes every key off
the removed shards (their batches in flight commit first, every later one is fenced), then
each removed shard drains (loads the new table, its committer empties), keeps answering
``moved`` for ``scale_drain_s`` so gateways' calls in flight re-route, and is stopped. Nothing
acknowledged is lost: an ack follows a commit, and a fenced batch wrote nothing.

Holds one lock: changes of the fleet run one at a time in this process (the control actor is
the only caller; the table's row lock serialises the rest).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg

from cluster.config import Settings
from models.cells import Geo
from models.errors import BadRequest, Unavailable
from models.failover import Liveness, Policy
from models.rbac import Staff
from models.rebalance import pick
from services import cluster_ops as ops
from services.cluster_view import ClusterView
from services.router import ShardRouter

log = logging.getLogger("hyperlocal.cluster")

MAX_SHARDS = 256


class Fleet(Protocol):
    """Starts and stops shard processes by name (Ray actors: cluster/fleet.py)."""

    async def start(self, names: Sequence[str]) -> None:
        """Create (or find) shards ``names`` and return once each serves."""

    async def stop(self, names: Sequence[str]) -> None:
        """Stop shards ``names`` for good (they own nothing any more)."""


class NoFleet:
    """A process that cannot start shards (a gateway's local control without Ray)."""

    async def start(self, names: Sequence[str]) -> None:
        raise Unavailable("scaling needs the Ray deployment's control actor")

    async def stop(self, names: Sequence[str]) -> None:
        raise Unavailable("scaling needs the Ray deployment's control actor")


class ClusterService:
    """See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        db: asyncpg.Pool,
        geo: Geo,
        router: ShardRouter,
        fleet: Fleet,
    ) -> None:
        self.settings = settings
        self.db = db
        self.geo = geo
        self.router = router
        self.fleet = fleet
        self.view_of = ClusterView(
            db, router, settings.shard_call_timeout_s, settings.cluster_view_cache_s
        )
        self._changing = asyncio.Lock()
        self.liveness = Liveness(Policy(settings.failover_misses, settings.failover_rejoin_s))
        """Which shards the failover watcher took out (services/failover.py): a scale decides
        whether they come back."""

    # -- reads -----------------------------------------------------------------------------
    async def view(self, staff: Staff) -> dict[str, Any]:
        staff.require("cluster.view")
        return await self.view_of.view()

    async def cell(self, staff: Staff, cell: str) -> dict[str, Any]:
        staff.require("cluster.view")
        ops.check_cell(self.geo, cell)
        return await self.view_of.cell(cell)

    # -- cells -----------------------------------------------------------------------------
    async def move(self, staff: Staff, cell: str, shard: str) -> dict[str, Any]:
        staff.require("cluster.move")
        async with self._changing:
            return await ops.move_cell(self.db, self.geo, cell, shard, staff.user_id)

    async def pin(self, staff: Staff, cell: str, shard: str) -> dict[str, Any]:
        staff.require("cluster.move")
        async with self._changing:
            return await ops.pin_cell(self.db, self.geo, cell, shard, staff.user_id)

    async def unpin(self, staff: Staff, cell: str) -> dict[str, Any]:
        staff.require("cluster.move")
        async with self._changing:
            return await ops.unpin_cell(self.db, self.geo, cell, staff.user_id)

    # -- shards ----------------------------------------------------------------------------
    async def scale(self, staff: Staff, shards: int) -> dict[str, Any]:
        """Make rendezvous hashing use ``shards`` shards (dedicated ones come on top)."""
        staff.require("cluster.scale")
        if isinstance(shards, bool) or not isinstance(shards, int):
            raise BadRequest("shards: a whole number")
        if not 1 <= shards <= MAX_SHARDS:
            raise BadRequest(f"shards: 1 to {MAX_SHARDS}")
        async with self._changing:
            table = await self.view_of.table()
            wanted = ops.general_names(table, shards)
            await self._settle_failed(set(wanted) | set(table.shards))
            if set(wanted) == set(table.hashed):
                return {"shards": list(table.shards), "added": [], "removed": [],
                        "placement_version": table.version, "changed": False}  # fmt: skip
            await self.fleet.start([s for s in wanted if s not in table.shards])
            record = await ops.reshard(self.db, shards, staff.user_id)
            await self.router.refresh()
            for shard in record["removed"]:
                await self._drain(shard)
            if record["removed"]:
                await asyncio.sleep(self.settings.scale_drain_s)
                await self.fleet.stop(record["removed"])
            log.info("scaled", extra=record)
            return {**record, "changed": True}

    async def _settle_failed(self, keep: set[str]) -> None:
        """A scale decides the fleet: shards failed over that it does not keep are stopped
        (Ray may have restarted them, owning nothing) and not brought back by a rejoin; those
        it keeps it starts and gives their keys like any added shard."""
        gone = sorted(self.liveness.failed - keep)
        self.liveness.forget()
        if gone:
            await self.fleet.stop(gone)

    # -- failover (services/failover.py decides) -------------------------------------------
    async def fail_over(self, dead: list[str]) -> dict[str, Any]:
        """Take ``dead`` out of the table (their keys to the others), audited as the
        operator's ``cluster.failover``; the record."""
        async with self._changing:
            record = await ops.fail_over(self.db, dead)
            self.liveness.failed_over(record["failed"])
            await self.router.refresh()
        log.warning("failed over %s (v%s)", record["failed"], record["placement_version"])
        return record

    async def rejoin(self, back: list[str]) -> dict[str, Any]:
        """Give the failed-over shards ``back`` their hashed keys again (``cluster.rejoin``)."""
        async with self._changing:
            record = await ops.rejoin(self.db, back)
            self.liveness.rejoined(record["rejoined"])
            await self.router.refresh()
        log.warning("rejoined %s (v%s)", record["rejoined"], record["placement_version"])
        return record

    async def _drain(self, shard: str) -> None:
        """The removed shard loads the new table and finishes its batches; a shard that does
        not answer (dead already) has nothing in flight that could commit: its fence is past."""
        try:
            await asyncio.wait_for(self.router.drain(shard), self.settings.shard_call_timeout_s)
        except (Unavailable, TimeoutError) as exc:
            log.warning("drain of shard %s: %r (stopping it anyway)", shard, exc)

    # -- the rebalancer --------------------------------------------------------------------
    async def rebalance_once(self) -> dict[str, Any] | None:
        """One round: move the hottest cell off an overloaded shard (models/rebalance.py), as
        the operator, audited like any move; the move's record, or None."""
        view = await self.view_of.view()
        move = pick(
            view["shards"], self.settings.rebalance_ratio, self.settings.rebalance_min_per_s
        )
        if move is None:
            return None
        async with self._changing:
            record = await ops.move_cell(self.db, self.geo, move.cell, move.target, None)
        log.info(
            "rebalanced: %s %.1f/s from %s (%.1f/s) to %s (%.1f/s)",
            move.cell, move.cell_per_s, move.source, move.source_per_s, move.target,
            move.target_per_s,
        )  # fmt: skip
        return record


class LocalFleet:
    """Shards as hosts of this process's ``LocalTransport`` (gateway and service tests)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    async def start(self, names: Sequence[str]) -> None:
        for name in names:
            self.transport.add(name)
            await self.transport.hosts[name].ready()

    async def stop(self, names: Sequence[str]) -> None:
        for name in names:
            await self.transport.remove(name)
