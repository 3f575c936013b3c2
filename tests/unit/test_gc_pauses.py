"""The collector's pauses are timed per generation (cluster/gcpolicy.py)."""

from __future__ import annotations

import gc
import logging

import pytest

from cluster.gcpolicy import Pauses


def test_every_collection_is_counted_and_timed_and_a_long_one_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pauses = Pauses(warn_s=0.0)  # every pause is "long": the log line is checked too
    gc.callbacks.append(pauses.on_collect)
    try:
        with caplog.at_level(logging.WARNING, "hyperlocal.gc"):
            gc.collect(0)
            gc.collect(2)
    finally:
        gc.callbacks.remove(pauses.on_collect)
    assert pauses.collections[0] >= 1 and pauses.collections[2] >= 1
    gauges = pauses.gauges()
    assert gauges["gc_full_collections"] == pauses.collections[2]
    assert (
        0
        < gauges["gc_full_pause_seconds"]
        <= gauges["gc_longest_pause_seconds"] * pauses.collections[2]
    )
    assert "generation 2 collection stopped the process" in caplog.text
