"""The notifier actor: the deployment's one deliverer of the notification outbox, in a process
of its own (docs/notifications.md, "Delivery: the notifier").

A named (``notifier_actor_name``), detached Ray actor, thin by design: it opens what the
notifier needs (``services.container.open_notifier``) and runs ``Notifier.run``
(services/notifier.py) from the moment it is created, so a restart by Ray (``max_restarts=-1``)
is delivering again without anyone calling it. It keeps nothing that matters in memory: every
delivery's state is in Postgres, a row it was sending when it died is claimed again when its
lease ends (at-least-once; receivers dedupe by the delivery id). Its calls (``ping``, ``stats``,
``threads``) only read; gateways call ``stats`` when ``/metrics`` is scraped
(services/notifier_client.py).

Why an actor and not the gateway: rendering, SMTP and Web Push encryption (ECDH + AES-GCM per
device) took the gateway's event loop and GIL from its sockets (docs/benchmarks.md,
"Notifications"). Why an actor rather than a process of our own: Ray already places, restarts
and names the shards' processes; the notifier gets the same for a few lines, and the same
niceness control. Its process runs ``notifier_niceness`` above the starter's (every thread), so
on a shared core the gateway and shards win.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import Any

import asyncpg
import ray

from actors.shard import deployment_actor_options
from cluster import gcpolicy
from cluster.config import Settings
from services.container import open_notifier
from services.loops import Backoff, LoopFailures, SupervisedLoop
from services.notifier import Notifier

log = logging.getLogger("hyperlocal.notifier")


def thread_niceness() -> dict[int, int]:
    """The niceness of every thread of this process, by thread id (Linux keeps one per thread;
    elsewhere: the process's, under its pid)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return {os.getpid(): os.getpriority(os.PRIO_PROCESS, 0)}
    out = {}
    for tid in tids:
        try:
            out[tid] = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError:  # the thread ended meanwhile
            continue
    return out


def renice(target: int) -> int:
    """Raise every thread of this process to niceness ``target`` (threads started later inherit
    it from the thread that starts them); one already above it is left. The lowest niceness
    left among the threads."""
    for tid, nice in thread_niceness().items():
        if nice < target:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, target)
            except OSError as exc:  # ended meanwhile, or not ours to change
                log.warning("could not renice thread %d to %d: %r", tid, target, exc)
    return min(thread_niceness().values())


class NotifierActor:
    """Hosts the deployment's ``Notifier``; see the module docstring."""

    def __init__(self, settings: Settings, niceness: int | None = None) -> None:
        self._settings = settings
        self._niceness = renice(niceness) if niceness is not None else None
        self._incarnation = uuid.uuid4().hex[:12]
        self._notifier: Notifier | None = None
        self._ready = asyncio.Event()
        self._failures = LoopFailures()
        # An async actor's __init__ runs on its event loop: the loop starts with the actor.
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="notifier")

    async def _serve(self) -> None:
        """Open the notifier and run it, supervised (services/loops.py): a failure to open
        (Postgres away) or an error out of its loop is logged, counted and tried again with
        backoff, 1 s doubling to 30 s; counts carry over to the reopened notifier."""
        await SupervisedLoop(
            "notifier-host",
            self._open_and_run,
            period_s=1.0,
            log=log,
            backoff=Backoff(1.0, 30.0),
            expected=(asyncpg.PostgresError, OSError),
            failures=self._failures,
        ).run()

    async def _open_and_run(self) -> float:
        async with open_notifier(self._settings, self._failures) as notifier:
            if self._notifier is not None:
                notifier.outcomes = self._notifier.outcomes
            self._notifier = notifier
            if not self._ready.is_set():
                gcpolicy.settle(self._settings)
                self._ready.set()
            await notifier.run()
        return 1.0  # not reached: run ends only by cancellation

    async def ping(self) -> str:
        """``notifier:<incarnation>`` once the notifier is open (a new one after a restart)."""
        await self._ready.wait()
        return f"notifier:{self._incarnation}"

    async def stats(self) -> dict[str, Any]:
        """The notifier's counts (``Notifier.stats``), and this incarnation."""
        base = {"incarnation": self._incarnation, "pid": os.getpid()}
        if self._notifier is None:
            failed = dict(self._failures.counts)
            return {**base, "outcomes": {}, "queued": {}, "paced_s": 0.0, "loop_failures": failed}
        return {**base, **self._notifier.stats()}

    async def threads(self) -> dict[int, int]:
        """The niceness of each thread of this process (tests check the knob)."""
        return thread_niceness()


NotifierRemote = ray.remote(NotifierActor)


def start_notifier(settings: Settings, wait: bool = True, **placed: Any) -> Any:
    """Create (or find) the deployment's notifier actor and (``wait``) wait until it delivers
    (else ``wait_ready`` later: its process starts meanwhile); ``placed``: Ray scheduling
    options. Its niceness is ``notifier_niceness`` over this process's own."""
    handle = NotifierRemote.options(
        **placed,
        **deployment_actor_options(settings, settings.notifier_actor_name),
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=16,
        num_cpus=settings.notifier_num_cpus,
    ).remote(settings, os.getpriority(os.PRIO_PROCESS, 0) + settings.notifier_niceness)
    if wait:
        wait_ready(handle)
    return handle


def wait_ready(handle: Any, timeout_s: float = 120.0) -> None:
    """Until the notifier actor ``handle`` has opened its notifier (and so delivers)."""
    ray.get(handle.ping.remote(), timeout=timeout_s)
