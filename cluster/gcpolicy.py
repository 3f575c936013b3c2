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

from cluster.config import Settings

log = logging.getLogger("hyperlocal.gc")


def settle(settings: Settings) -> None:
    """Apply the policy of ``settings`` (``gc_*``) to this process; call once started."""
    gc.set_threshold(settings.gc_young, 10, settings.gc_full_every)
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
    log.info("gc: thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
