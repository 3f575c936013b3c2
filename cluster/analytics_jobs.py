"""The analytics jobs on Ray: the scheduled rollup, and the CLI of it and of the warehouse export.

``hyperlocal up`` runs ``rollup_loop`` beside its gateway (``with_rollups``): every
``analytics_rollup_interval_s`` one Ray task runs one incremental rollup
(services/analytics.py: ``run_rollup``; store/analytics_store.py says what a run does). The
gateway's loop only awaits the task's ref (rule 6). Several gateways may each schedule runs: a
run that finds another one in progress does nothing (``busy``), and a run is idempotent, so an
extra one costs a little work and changes no figure.

``hyperlocal analytics rollup`` runs one rollup now; ``hyperlocal warehouse export DIR`` writes
the partitioned Parquet warehouse (cluster/warehouse.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import ray

from cluster.config import Settings, load_settings
from services.analytics import run_rollup
from services.loops import SupervisedLoop, beside

log = logging.getLogger("hyperlocal.analytics")


def _rollup_task(database_url: str, overlap_s: float) -> dict[str, Any]:
    """Ray task body: one rollup run, its summary."""
    return asyncio.run(run_rollup(database_url, overlap_s)).as_dict()


async def rollup_remote(settings: Settings) -> dict[str, Any]:
    """One rollup run as a Ray task (no CPU reserved: it waits on Postgres)."""
    assert settings.database_url
    task = ray.remote(_rollup_task).options(num_cpus=0, max_retries=0)
    ref = task.remote(settings.database_url, settings.analytics_rollup_overlap_s)
    result: dict[str, Any] = await ref
    return result


async def rollup_loop(
    settings: Settings,
    run: Callable[[Settings], Awaitable[dict[str, Any]]] = rollup_remote,
) -> None:
    """A rollup now and then every ``analytics_rollup_interval_s``, until cancelled.

    This loop must not die (services/loops.py): a failed run is logged and the next one comes
    on schedule (it rereads what the failed one would have: the watermark moved only if it
    committed)."""

    async def one() -> None:
        t0 = time.monotonic()
        done = await run(settings)
        log.info("rollup #%d in %.2fs: %s", loop.rounds, time.monotonic() - t0, done)

    loop = SupervisedLoop(
        "analytics-rollup", one, period_s=settings.analytics_rollup_interval_s, log=log
    )
    await loop.run()


def with_rollups(settings: Settings, main: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """``main`` (the gateway) with the scheduled rollup beside it, unless the interval is 0."""
    if settings.analytics_rollup_interval_s <= 0:
        return main
    log.info("analytics rollup every %gs", settings.analytics_rollup_interval_s)
    return beside(main, rollup_loop(settings), "analytics-rollup")


# -- CLI ------------------------------------------------------------------------------------------
def _with_runtime(work: Callable[[Settings], int]) -> int:
    from cluster.runtime import Runtime

    runtime = Runtime(load_settings())
    try:
        settings = runtime.start_services()
        runtime.start_ray()
        return work(settings)
    finally:
        runtime.stop()


def cmd_rollup(args: argparse.Namespace) -> int:
    def work(settings: Settings) -> int:
        print(json.dumps(asyncio.run(rollup_remote(settings))), flush=True)
        return 0

    return _with_runtime(work)


def cmd_export(args: argparse.Namespace) -> int:
    from cluster import warehouse

    tables = [t.strip() for t in args.tables.split(",") if t.strip()] or list(warehouse.TABLES)
    if set(tables) - warehouse.TABLES.keys():
        print(f"--tables: some of {', '.join(warehouse.TABLES)}", file=sys.stderr)
        return 2

    def work(settings: Settings) -> int:
        t0 = time.monotonic()
        counts = warehouse.export(settings, Path(args.dir), tables)
        for name, rows in counts.items():
            print(f"{name}: {rows} rows -> {Path(args.dir) / name}", flush=True)
        print(f"done in {time.monotonic() - t0:.1f}s", flush=True)
        return 0

    return _with_runtime(work)


def register(sub: Any) -> None:
    analytics = sub.add_parser("analytics", help="vendor analytics: the rollup")
    cmds = analytics.add_subparsers(dest="analytics_command", required=True)
    cmds.add_parser("rollup", help="run one incremental rollup now").set_defaults(func=cmd_rollup)
    wh = sub.add_parser("warehouse", help="the Parquet warehouse export (Ray Data)")
    wcmds = wh.add_subparsers(dest="warehouse_command", required=True)
    export = wcmds.add_parser("export", help="write DIR/<table>/day=.../cell=.../*.parquet")
    export.add_argument("dir")
    export.add_argument("--tables", default="", help="comma-separated (default: every table)")
    export.set_defaults(func=cmd_export)
