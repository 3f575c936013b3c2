"""The gateway's view of the deployment's notifier actor (cluster/notifier.py): its counters.

The notifier delivers in a process of its own; a gateway only shows what it did on ``/metrics``.
``refresh`` (the ``/metrics`` handler calls it before rendering) asks the actor for its
``stats`` with a short timeout and keeps the last answer; an actor that is not running or does
not answer leaves ``up`` False and the last counts in place (a Prometheus counter may read the
same twice, never go backwards except when the actor restarted).
"""

from __future__ import annotations

import asyncio
import logging

from services.named_actor import NamedActor

log = logging.getLogger("hyperlocal.notifier")


class NotifierClient:
    """Owns the last ``stats`` the named, detached notifier actor answered (found by name on
    first use, and again after a failure: Ray restarts it under the same name)."""

    def __init__(self, name: str, namespace: str, timeout_s: float = 2.0) -> None:
        self.actor = NamedActor(name, namespace)
        self.timeout_s = timeout_s
        self.outcomes: dict[tuple[str, str], float] = {}
        self.queued: dict[str, float] = {}
        self.loop_failures: dict[str, float] = {}
        self.up = False

    async def refresh(self) -> None:
        """Read the actor's counters now (bounded by ``timeout_s``)."""
        import ray.exceptions

        try:
            actor = await asyncio.wait_for(self.actor.handle(), self.timeout_s)
            stats = await asyncio.wait_for(actor.stats.remote(), self.timeout_s)
        except (LookupError, ray.exceptions.RayError, TimeoutError) as exc:
            self.actor.forget()
            if self.up:
                log.warning("the notifier actor did not answer its stats: %r", exc)
            self.up = False
            return
        self.outcomes = {(str(c), str(o)): float(n) for (c, o), n in stats["outcomes"].items()}
        self.queued = {name: float(n) for name, n in stats["queued"].items()}
        self.loop_failures = {name: float(n) for name, n in stats["loop_failures"].items()}
        self.up = True

    def gauges(self) -> dict[str, float]:
        """``notifier_up`` and the outbox's pending rows by channel."""
        return {"notifier_up": 1.0 if self.up else 0.0, **self.queued}

    def loop_items(self) -> list[tuple[tuple[str], float]]:
        """The actor's loops' failed rounds as ``hl_loop_failures{loop}`` pairs (its loops'
        names begin ``notifier``: no gateway loop has those)."""
        return [((name,), n) for name, n in self.loop_failures.items()]
