"""The control actor's own loops (cluster/control.py): the suspension sweep and the hot-cell
rebalancer count their failed rounds by name, as every supervised loop does (services/loops.py),
and ``background`` answers the counts. The actor class runs here without Ray (its open at start
is replaced: no Postgres, no Redis); the rounds fail as an outage would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cluster.config import load_settings
from cluster.control import ControlActor


class _Away:
    """An admin service and a cluster service whose every round fails (Postgres away)."""

    def __init__(self) -> None:
        self.admin = self
        self.cluster = self
        self.calls = 0

    async def lift_expired(self) -> int:
        self.calls += 1
        raise OSError("Postgres went away")

    async def rebalance_once(self) -> None:
        self.calls += 1
        raise OSError("Postgres went away")


async def _never_open(self: ControlActor) -> None:
    return None


async def test_the_sweep_and_the_rebalancer_count_their_failed_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ControlActor, "_open_at_start", _never_open)
    settings = load_settings(data_dir=tmp_path, admin_sweep_s=0.01, rebalance_interval_s=0.01)
    actor = ControlActor(settings)
    host: Any = _Away()
    actor._host = host
    loops = [asyncio.create_task(actor._sweep()), asyncio.create_task(actor._rebalance())]
    try:
        for _ in range(200):
            counts = (await actor.background())["loop_failures"]
            if counts.get("suspension-sweep", 0) >= 2 and counts.get("rebalancer", 0) >= 2:
                break
            await asyncio.sleep(0.01)
        assert counts["suspension-sweep"] >= 2 and counts["rebalancer"] >= 2, counts
        assert all(not t.done() for t in loops)  # failing rounds never end a loop
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
