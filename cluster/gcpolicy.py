"""The cyclic garbage collector's policy for long-running serving processes.

A gateway or shard runs one event loop; a collection of the oldest generation stops it for as
long as it takes to walk every tracked object (measured at 1,000 connections: up to 217 ms in the
gateway with CPython's defaults, docs/benchmarks.md), and every socket waits that long.
Nearly all garbage here is freed by reference counting; the collector only has to find cycles.
So, once a process has started (``settle``): collect once, freeze what is alive (it stays for
the life of the process: modules, Ray, the app), and collect the young generations less often
and the oldest one ten times less often than the defaults. Cycles are still collected; a full
collection walks only objects made after start.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field

from cluster.config import Settings

log = logging.getLogger("hyperlocal.gc")


@dataclass
class Pauses:
    """What the collector has cost this process since ``settle``: collections and the time the
    process was stopped for them, per generation, and the longest. A full collection stops the
    event loop, so its pauses are a latency tail of everything this process serves (a gateway
    exports them on /metrics; benchmarks print them per step). A pause longer than
    ``warn_s`` is logged."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest_s: float = 0.0
    warn_s: float = 0.05
    _started: float = 0.0

    def on_collect(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info.get("generation", 2)
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.longest_s = max(self.longest_s, took)
        if took > self.warn_s:
            log.warning(
                "gc: generation %d collection stopped the process %.0f ms (%d collected)",
                generation,
                took * 1000,
                info.get("collected", 0),
            )

    def gauges(self) -> dict[str, float]:
        """The figures named ``GAUGES``, in that order."""
        values = (self.collections[2], self.seconds[2], self.seconds[0] + self.seconds[1],
                  self.longest_s)  # fmt: skip
        return dict(zip(GAUGES, values, strict=True))


GAUGES = (
    "gc_full_collections",
    "gc_full_pause_seconds",
    "gc_young_pause_seconds",
    "gc_longest_pause_seconds",
)
"""What ``Pauses.gauges`` answers: a gateway exports them as ``hl_<name>``, a shard in its stats
(``hl_shard_<name>`` on a gateway's /metrics, services/cluster_view.py)."""


pauses = Pauses()
"""This process's collector costs (one collector per process, so one record)."""


def settle(settings: Settings) -> None:
    """Apply the policy of ``settings`` (``gc_*``) to this process; call once started. From
    here on every collection is timed into ``pauses``."""
    gc.set_threshold(settings.gc_young, 10, settings.gc_full_every)
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
    if pauses.on_collect not in gc.callbacks:  # serving from here: the start's own is not timed
        gc.callbacks.append(pauses.on_collect)
    log.info("gc: thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
