"""The control actor: the one handle of admins and operators on the cluster (docs/admin.md).

A named (``control_actor_name``), detached Ray actor, thin by design: it opens the services of
its process once (services/container.py, no hook dispatcher or market sweeper: the gateways run
those) and hands every call to ``ControlHost`` (services/control.py). It keeps nothing in
memory that matters: every action's state and its audit entry are in Postgres, so a restart
(Ray restarts it, ``max_restarts=-1``) loses nothing. Calls are not retried by Ray
(``max_task_retries=0``): an action is not idempotent by itself, a caller that gets
``unavailable`` decides. Beside the calls it lifts expired suspensions every ``admin_sweep_s``,
sends again a vendor's suspension flag its owner shard missed (``AdminService.sync_vendors``),
when ``rebalance_interval_s`` is set, runs the hot-cell rebalancer (services/scaling.py) and,
unless ``failover_ping_s`` is 0, the failover watcher (services/failover.py): a dead shard's
cells go to the others by one table change.
It also runs the money loop (services/payouts.py ``run_scheduled``): the ledger's release
sweep every ``ledger_sweep_s``, a payout batch every ``payout_interval_s`` and the Stripe
transfers due (woken at once by a batch that queued some: an admin's ``payouts.run`` answers
before any money moves). Every loop counts its failed rounds in the actor's ``LoopFailures``
(``background`` answers them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg
import ray
from redis.exceptions import RedisError

from actors.shard import deployment_actor_options
from cluster import gcpolicy
from cluster.config import Settings
from cluster.fleet import RayFleet
from services.container import Services, open_services
from services.control import ControlHost
from services.failover import FailoverWatcher
from services.loops import Backoff, LoopFailures, SupervisedLoop
from services.payouts import run_scheduled
from services.transport import RayTransport

log = logging.getLogger("hyperlocal.control")

_OPEN_BACKOFF = Backoff(first_s=0.5, cap_s=5.0)
"""How a control actor that could not open its services (at start) tries again."""


class ControlActor:
    """Hosts ``ControlHost`` in Ray; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._host: ControlHost | None = None
        self._opening = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._rebalancer: asyncio.Task[None] | None = None
        self._watcher: FailoverWatcher | None = None
        self._failover: asyncio.Task[None] | None = None
        self._money: asyncio.Task[None] | None = None
        self._incarnation = uuid.uuid4().hex[:12]
        self._failures = LoopFailures()
        """Failed rounds of this actor's loops by name (``background`` answers them)."""
        # Open at once, not at the first call: after Ray restarts this actor its loops (money,
        # suspension sweep, rebalancer, failover watcher) run again by themselves. An async
        # actor's __init__ runs on its event loop.
        self._opening_task = asyncio.get_running_loop().create_task(
            self._open_at_start(), name="control-open"
        )

    async def _open_at_start(self) -> None:
        """Open the services and start the loops, tried again (``_OPEN_BACKOFF``) while
        Postgres or Redis is away; a call meanwhile opens them itself."""
        failures = 0
        while True:
            try:
                await self._ready()
                return
            except Exception as exc:  # tried again whatever it was; a bug logs its traceback
                failures += 1
                delay = _OPEN_BACKOFF.delay_s(failures)
                away = isinstance(exc, (OSError, asyncpg.PostgresError, RedisError))
                (log.warning if away else log.exception)(
                    "control actor not open yet (%r): again in %.1f s", exc, delay
                )
                await asyncio.sleep(delay)

    async def _ready(self) -> ControlHost:
        async with self._opening:
            if self._host is None:
                services: Services = await self._stack.enter_async_context(
                    open_services(self._settings, background=False, fleet=RayFleet(self._settings))
                )
                self._host = ControlHost(
                    services.admin,
                    services.moderation,
                    services.appeals,
                    services.disputes,
                    services.risk,
                    services.holds,
                    services.cluster,
                    payouts=services.payouts,
                )
                self._money = asyncio.create_task(
                    run_scheduled(services.payouts, services.ledger,
                                  self._settings.payout_interval_s, self._settings.ledger_sweep_s,
                                  self._failures),
                    name="money",
                )  # fmt: skip
                self._sweeper = asyncio.create_task(self._sweep(), name="suspension-sweep")
                if self._settings.rebalance_interval_s > 0:
                    self._rebalancer = asyncio.create_task(self._rebalance(), name="rebalancer")
                if self._settings.failover_ping_s > 0:
                    self._watcher = FailoverWatcher(
                        self._settings, services.db, services.cluster, self._probe_transport()
                    )
                    self._failover = asyncio.create_task(
                        self._watcher.run(self._failures), name="failover"
                    )
                gcpolicy.settle(self._settings)
            return self._host

    async def _sweep(self) -> None:
        """Lift expired suspensions; survives errors (logged, tried again next period)."""
        await SupervisedLoop(
            "suspension-sweep",
            self._sweep_once,
            period_s=self._settings.admin_sweep_s,
            log=log,
            wait_first=True,
            failures=self._failures,
        ).run()

    async def _sweep_once(self) -> None:
        if self._host is not None:
            lifted = await self._host.admin.lift_expired()
            if lifted:
                log.info("lifted %d expired suspensions", lifted)
            fixed = await self._host.admin.sync_vendors()
            if fixed:
                log.info("vendor suspension flags put right for %d vendors", fixed)

    async def _rebalance(self) -> None:
        """The hot-cell rebalancer (off unless ``rebalance_interval_s``): one round a period;
        survives errors (logged, tried again next period)."""

        async def once() -> None:
            if self._host is not None:
                await self._host.cluster.rebalance_once()

        await SupervisedLoop(
            "rebalancer",
            once,
            period_s=self._settings.rebalance_interval_s,
            log=log,
            wait_first=True,
            failures=self._failures,
        ).run()

    def _probe_transport(self) -> RayTransport:
        """Ray calls for the probe (a shard's endpoint), bounded by the ping's timeout."""
        s = self._settings
        return RayTransport({}, s.failover_timeout_s, s.ray_namespace)

    async def stop_failover(self) -> None:
        """Stop watching the shards (a deployment shutting down kills them next: that is no
        failure to act on)."""
        if self._failover is not None:
            self._failover.cancel()
            self._failover = None
        if self._watcher is not None:
            await self._watcher.close()

    async def failovers(self) -> list[dict[str, Any]]:
        """The failovers and rejoins this incarnation made (tests, benchmarks)."""
        await self._ready()
        return list(self._watcher.changes) if self._watcher else []

    async def background(self) -> dict[str, Any]:
        """This incarnation (as ``ping`` names it), its running loops and their failed rounds
        by loop (services/loops.py), without opening anything (tests: a restarted actor runs
        them before anyone calls it)."""
        tasks = (self._money, self._sweeper, self._rebalancer, self._failover)
        running = sorted(t.get_name() for t in tasks if t is not None and not t.done())
        return {"incarnation": f"control:{self._incarnation}", "loops": running,
                "loop_failures": dict(self._failures.counts)}  # fmt: skip

    async def ping(self) -> str:
        """``control:<incarnation>``, once the services are open (a new one after a restart)."""
        await self._ready()
        return f"control:{self._incarnation}"

    async def call(
        self, action: str, staff: dict[str, Any] | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        return await (await self._ready()).call(action, staff, args)


ControlRemote = ray.remote(ControlActor)


def start_control(settings: Settings, **placed: Any) -> Any:
    """Create (or find) the deployment's control actor and wait until it serves; ``placed``:
    Ray scheduling options (``scheduling_strategy``: off the shards' nodes, say)."""
    handle = ControlRemote.options(
        **placed,
        **deployment_actor_options(settings, settings.control_actor_name),
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=100,
        num_cpus=0,
    ).remote(settings)
    ray.get(handle.ping.remote(), timeout=120)  # type: ignore[attr-defined]
    return handle
