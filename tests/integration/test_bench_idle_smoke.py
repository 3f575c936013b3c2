"""bench/idle_cost.py, briefly: a private deployment is started, its idle CPU read by part over
one short window, and it is stopped with nothing left running. Values are measured, never
asserted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import idle_cost

pytestmark = pytest.mark.integration


async def test_idle_cost_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "idle.json"
    argv = ["--settle", "3", "--window", "2", "--windows", "1", "--unpinned", "--json",
            str(out_json)]  # fmt: skip
    code = await asyncio.to_thread(idle_cost.main, argv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "window 1:" in out and "% of a core" in out
    found = json.loads(out_json.read_text())
    [window] = found["windows"]
    assert {"gateway", "shards", "postgres", "redis"} <= set(window["cpu_pct_by"])
    assert window["processes"] >= 5  # the gateway, Postgres, Redis, Ray's own, a shard
    assert window["busiest"] and all(row["cmd"] for row in window["busiest"])
    assert found["exit"] == 0 and found["left_running"] == []
