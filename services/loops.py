"""Supervised background loops: the one place that says how a loop that must not die behaves.

A ``SupervisedLoop`` runs one *step* (an async callable) again and again until it is cancelled:

- **the wait**: after a step that returned, the loop waits what the step answered (seconds;
  ``None`` means ``period_s``); with ``wait_first`` it also waits ``period_s`` before the first
  step. A ``wake`` event, when given, ends any wait at once (and is cleared before the next
  step, so a wake that comes during a step is not lost: the next wait ends at once);
- **a failure** (any ``Exception`` out of a step) is logged with the loop's name in the message
  and as the structured fields ``loop``, ``failures`` (consecutive) and ``next_s``: a
  ``warning`` with its ``repr`` when it is one of the ``expected`` kinds (Postgres or the
  network away), an ``exception`` with its traceback otherwise (a bug). It is counted in
  ``LoopFailures`` (``/metrics``: ``hl_loop_failures{loop}``), and the next step comes after
  ``backoff.delay_s(n)`` for the n-th failure in a row, or ``period_s`` without a backoff;
- **cancellation** is never caught: cancelling the task ends the loop at its current await,
  a step's ``finally`` and ``async with`` blocks run, and the task ends cancelled.

A step that wants to wait on something other than time (a free slot, say) awaits it itself
and then answers ``0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

Step = Callable[[], Awaitable[float | None]]
"""One round of a loop; answers how long to wait before the next one (``None``: the period)."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: the n-th failure in a row waits
    ``min(cap_s, first_s * 2 ** (n - 1))``."""

    first_s: float
    cap_s: float

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th consecutive failure (1 for the first)."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        # 2 ** 60 is far past any cap; bounding the exponent keeps the float finite
        return min(self.cap_s, self.first_s * 2.0 ** min(failures - 1, 60))


class LoopFailures:
    """The failures of a process's supervised loops, counted by loop name (what ``/metrics``
    exports as ``hl_loop_failures{loop}``). Owned by whoever starts the loops (the services
    container for the gateway's); no module-level state."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def failed(self, loop: str) -> None:
        self.counts[loop] += 1

    def items(self) -> Iterable[tuple[tuple[str], float]]:
        """(label values, count) pairs, as ``Metrics.watch_counts`` reads them."""
        return [((name,), float(n)) for name, n in self.counts.items()]


class SupervisedLoop:
    """A loop that must not die: runs ``step`` until cancelled, waits between steps, logs,
    counts and backs off on failure (see the module docstring for the contract)."""

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        period_s: float,
        log: logging.Logger,
        backoff: Backoff | None = None,
        expected: tuple[type[Exception], ...] = (),
        wait_first: bool = False,
        wake: asyncio.Event | None = None,
        failures: LoopFailures | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.period_s = period_s
        self.log = log
        self.backoff = backoff
        self.expected = expected
        self.wait_first = wait_first
        self.wake = wake
        self.failures = failures if failures is not None else LoopFailures()
        self.rounds = 0
        """Steps started so far (the first is 1)."""
        self.failed_in_a_row = 0

    async def run(self) -> None:
        """Run until cancelled (never returns otherwise)."""
        if self.wait_first:
            await self._wait(self.period_s)
        while True:
            await self._wait(await self._round())

    async def _round(self) -> float:
        """One step; the wait before the next."""
        self.rounds += 1
        try:
            answer = await self.step()
        except Exception as exc:  # the loop must not die: log with context, count, back off
            return self._failed(exc)
        self.failed_in_a_row = 0
        return self.period_s if answer is None else answer

    def _failed(self, exc: Exception) -> float:
        self.failed_in_a_row += 1
        self.failures.failed(self.name)
        n = self.failed_in_a_row
        delay = self.backoff.delay_s(n) if self.backoff else self.period_s
        extra = {"loop": self.name, "failures": n, "next_s": delay}
        if isinstance(exc, self.expected):
            self.log.warning("%s failed (next in %.1f s): %r", self.name, delay, exc, extra=extra)
        else:
            self.log.exception(
                "unexpected error in %s (next in %.1f s)", self.name, delay, extra=extra
            )
        return delay

    async def _wait(self, seconds: float) -> None:
        if self.wake is None:
            await asyncio.sleep(seconds)
            return
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), seconds)
        else:
            await asyncio.sleep(0)
        self.wake.clear()


async def beside(main: Awaitable[None], loop: Coroutine[Any, Any, None], name: str) -> None:
    """Await ``main`` with ``loop`` running beside it on the same event loop as the task
    ``name``; the loop is cancelled (and awaited) when ``main`` returns or raises."""
    task = asyncio.create_task(loop, name=name)
    try:
        await main
    finally:
        await stop(task)


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
