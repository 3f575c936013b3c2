"""cluster/analytics_jobs.py: the scheduled rollup loop survives failed runs and keeps its
schedule; an interval of 0 schedules nothing. No Ray: the run is a stand-in."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from cluster.analytics_jobs import rollup_loop, with_rollups
from cluster.config import Settings


async def test_the_loop_goes_on_after_a_failed_run() -> None:
    settings = Settings(analytics_rollup_interval_s=0.01)
    calls: list[int] = []
    done = asyncio.Event()

    async def run(_: Settings) -> dict[str, Any]:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ConnectionError("postgres went away")
        if len(calls) == 3:
            done.set()
        return {"busy": False}

    task = asyncio.create_task(rollup_loop(settings, run))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(calls) >= 3


async def test_an_interval_of_zero_runs_only_main() -> None:
    async def main() -> None:
        return None

    coro = main()
    assert with_rollups(Settings(analytics_rollup_interval_s=0), coro) is coro
    await coro


def test_the_cli_has_the_rollup_and_the_warehouse_export() -> None:
    from cluster import analytics_jobs
    from cluster.cli import parser

    args = parser().parse_args(["warehouse", "export", "out", "--tables", "orders"])
    assert args.func is analytics_jobs.cmd_export and (args.dir, args.tables) == ("out", "orders")
    assert parser().parse_args(["analytics", "rollup"]).func is analytics_jobs.cmd_rollup
    bad = parser().parse_args(["warehouse", "export", "out", "--tables", "payments"])
    assert analytics_jobs.cmd_export(bad) == 2  # refused before anything starts
