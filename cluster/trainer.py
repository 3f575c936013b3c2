"""Training the rankers on Ray from the interactions in Postgres.

One run: read the recent interactions (store/recommend_store.py), plan the scopes - one global
model, plus one per cell (data of the cell and its k-ring) and per parent cell that has at least
``recommend_cell_min_events`` interactions - train each scope in its own Ray task
(``num_cpus=recommend_train_num_cpus``), then store every model as a new version and prune old
ones. Shards pick a new version up on their next scoring call (actors/recommend_ops.py).

A scope without enough usable data is skipped and reported, never an error of the run.
``hyperlocal recommend train`` runs it once with a progress display; ``--loop`` repeats it every
``recommend_retrain_s``. ``hyperlocal up`` runs the same schedule itself by default
(``with_retrain``; ``recommend_retrain_s`` 0 turns it off): each run is one Ray generator task,
so the gateway's loop only awaits object refs and logs the progress lines the task streams
back. A run that stored no model is retried after ``recommend_retrain_idle_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import queue
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import h3
import ray

from cluster.config import Settings, load_settings
from models.recommend.data import Interaction
from models.recommend.serving import GLOBAL, Item, ModelBundle, product_recipe, train_scope
from models.recommend.training import NotEnoughData
from services.loops import SupervisedLoop, beside
from store import recommend_store
from store.db import create_pool

log = logging.getLogger("hyperlocal.trainer")

Report = Callable[[str], None]


@dataclass
class Scope:
    name: str
    items: list[Item]
    events: list[Interaction]


def _train_task(
    scope: str, items: list[Item], events: list[Interaction], h3_res: int, k_ring: int
) -> dict[str, Any]:
    """Ray task body: train one scope; a scope with too little data answers ``skipped``."""
    t0 = time.perf_counter()
    recipe = product_recipe(h3_res, k_ring)
    try:
        ranker, info = train_scope(scope, items, events, recipe)
    except NotEnoughData as exc:
        return {"scope": scope, "skipped": exc.message}
    info["train_s"] = time.perf_counter() - t0
    return {"scope": scope, "ranker": ranker, "recipe": recipe, "metrics": info}


def plan_scopes(
    items: Sequence[Item],
    events: Sequence[Interaction],
    settings: Settings,
    cells: Sequence[str] | None = None,
    min_events: int | None = None,
) -> list[Scope]:
    """Global (unless ``cells`` restricts the run) + cells and parents with enough data."""
    need = settings.recommend_cell_min_events if min_events is None else min_events
    res, k = settings.h3_resolution, settings.k_ring
    by_cell: dict[str, list[Interaction]] = defaultdict(list)
    for ev in events:
        if ev.cell is not None and h3.get_resolution(ev.cell) == res:
            by_cell[ev.cell].append(ev)
    items_by_cell: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.cell is not None:
            items_by_cell[it.cell].append(it)
    scopes: list[Scope] = [] if cells else [Scope(GLOBAL, list(items), list(events))]
    wanted = list(cells) if cells else [c for c, evs in by_cell.items() if len(evs) >= need]
    for cell in wanted:
        disk = set(h3.grid_disk(cell, k))
        scopes.append(_scope(cell, disk, items_by_cell, by_cell))
    if cells:
        return scopes
    for level in range(1, settings.recommend_parent_levels + 1):
        if res - level < 0:
            break
        groups: dict[str, set[str]] = defaultdict(set)
        for cell in by_cell:
            groups[h3.cell_to_parent(cell, res - level)].add(cell)
        for parent, members in groups.items():
            if sum(len(by_cell[c]) for c in members) >= need:
                scopes.append(_scope(parent, members, items_by_cell, by_cell))
    return scopes


def _scope(
    name: str,
    cells: set[str],
    items_by_cell: dict[str, list[Item]],
    by_cell: dict[str, list[Interaction]],
) -> Scope:
    items = [it for c in cells for it in items_by_cell.get(c, ())]
    events = sorted((ev for c in cells for ev in by_cell.get(c, ())), key=lambda e: e.timestamp)
    return Scope(name, items, events)


async def train(
    settings: Settings,
    db: asyncpg.Pool,
    cells: Sequence[str] | None = None,
    min_events: int | None = None,
    report: Report | None = None,
) -> list[dict[str, Any]]:
    """One training run (see the module docstring); one summary dict per scope."""
    say = report or (lambda line: log.info("%s", line))
    since = recommend_store.since(settings.recommend_history_days)
    load_cells = None
    if cells:
        load_cells = sorted({c for cell in cells for c in h3.grid_disk(cell, settings.k_ring)})
    items, events = await recommend_store.load_events(
        db, load_cells, since, settings.recommend_max_events
    )
    scopes = plan_scopes(items, events, settings, cells, min_events)
    say(f"{len(events)} interactions, {len(items)} items -> {len(scopes)} scopes")
    task = ray.remote(_train_task).options(num_cpus=settings.recommend_train_num_cpus)
    refs = [
        task.remote(s.name, s.items, s.events, settings.h3_resolution, settings.k_ring)
        for s in scopes
    ]
    futures = [asyncio.wrap_future(ref.future()) for ref in refs]
    results: list[dict[str, Any]] = []
    for done, next_result in enumerate(asyncio.as_completed(futures), 1):
        result = await next_result
        results.append(await _store(db, result))
        say(f"[{done}/{len(scopes)}] {_describe(results[-1])}")
    removed = await recommend_store.prune_models(db, settings.recommend_keep_versions)
    if removed:
        say(f"pruned {removed} old model versions")
    return results


async def _store(db: asyncpg.Pool, result: dict[str, Any]) -> dict[str, Any]:
    if "skipped" in result:
        return result
    version = await recommend_store.next_version(db)
    bundle = ModelBundle(
        result["scope"], version, result["ranker"], result["recipe"], result["metrics"]
    )
    await recommend_store.save_model(db, bundle.scope, version, bundle.metrics, bundle.to_bytes())
    return {"scope": bundle.scope, "version": version, "metrics": bundle.metrics}


def _describe(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"{r['scope']}: skipped ({r['skipped']})"
    m = r["metrics"]
    return (
        f"{r['scope']}: v{r['version']} {int(m['interactions'])} interactions, "
        f"{int(m['groups'])} training queries, recall {m['candidate_recall']:.2f}, "
        f"{m['train_s']:.1f}s"
    )


def run_cli(args: argparse.Namespace) -> int:
    """``hyperlocal recommend train [--cells ...] [--loop]``."""
    from cluster.runtime import Runtime

    runtime = Runtime(load_settings())
    try:
        settings = runtime.start_services()
        runtime.start_ray()
        period = settings.recommend_retrain_s
        if args.loop and period <= 0:
            print("set HL_RECOMMEND_RETRAIN_S to a period to use --loop", file=sys.stderr)
            return 2
        while True:
            asyncio.run(_run_once(settings, args.cells))
            if not args.loop:
                return 0
            print(f"next run in {period:.0f}s", flush=True)
            time.sleep(period)
    finally:
        runtime.stop()


async def _run_once(
    settings: Settings, cells: list[str] | None, report: Report | None = None
) -> int:
    """One run against the deployment's Postgres; the number of models it stored."""
    assert settings.database_url
    t0 = time.monotonic()
    say = report or (lambda line: print(line, flush=True))
    pool = await create_pool(settings.database_url)
    try:
        results = await train(
            settings,
            pool,
            cells or None,
            report=lambda line: say(f"[{time.monotonic() - t0:6.1f}s] {line}"),
        )
    finally:
        await pool.close()
    return sum(1 for r in results if "version" in r)


# -- scheduled retraining beside the gateway (hyperlocal up) ------------------------------------
@dataclass(frozen=True)
class RunDone:
    """The last thing a scheduled run yields: how many models it stored."""

    stored: int


Progress = str | RunDone
"""What a scheduled run yields: progress lines, then (when it finished) its ``RunDone``."""


def _run_streaming(settings: Settings) -> Iterator[Progress]:
    """Ray generator task body: one training run in this worker, yielding its progress lines
    as they happen (the run has its own event loop, in a thread of the worker), then its
    ``RunDone``."""
    lines: queue.Queue[object] = queue.Queue()

    def work() -> None:
        try:
            lines.put(RunDone(asyncio.run(_run_once(settings, None, lines.put))))
        except BaseException as exc:  # handed over: the generator raises it in the task
            lines.put(exc)

    threading.Thread(target=work, name="recommend-retrain", daemon=True).start()
    while not isinstance(line := lines.get(), RunDone):
        if isinstance(line, BaseException):
            raise line
        yield str(line)
    yield line


async def remote_run(settings: Settings) -> AsyncGenerator[Progress]:
    """One training run as a Ray task; its progress lines, live, then its ``RunDone``. Closing
    the iterator early (cancellation) cancels the task and the scope tasks it started."""
    # The orchestrating task only waits on the scope tasks: it reserves no CPU, so on a small
    # cluster it cannot hold the CPU the scope tasks it waits for need.
    task = ray.remote(_run_streaming).options(num_cpus=0, num_returns="streaming", max_retries=0)
    # ray's types give .remote() one ObjectRef whatever the options; with num_returns="streaming"
    # it is an ObjectRefGenerator, one ref per yielded line.
    gen = cast(ray.ObjectRefGenerator, task.remote(settings))
    finished = False
    try:
        async for ref in gen:
            item = await ref
            yield item if isinstance(item, RunDone) else str(item)
        finished = True
    finally:
        if not finished:
            with contextlib.suppress(Exception):  # already gone: nothing left to cancel
                ray.cancel(gen, force=True)


async def retrain_loop(
    settings: Settings,
    run: Callable[[Settings], AsyncGenerator[Progress]] = remote_run,
    say: Report | None = None,
) -> None:
    """Retrain now and then every ``recommend_retrain_s`` after a run ends, until cancelled;
    after a run that stored no model (nothing to learn from yet), ``recommend_retrain_idle_s``
    after it, so a fresh deployment gets its models soon after activity starts.

    This loop must not die (services/loops.py): a failed run is logged with its traceback and
    the schedule goes on.
    """
    report = say or (lambda line: log.info("%s", line))
    period = settings.recommend_retrain_s

    async def one() -> float:
        n, t0 = loop.rounds, time.monotonic()
        report(f"retrain #{n} started")
        stored = None
        try:
            async with contextlib.aclosing(run(settings)) as progress:  # closed even if cancelled
                async for item in progress:
                    if isinstance(item, RunDone):
                        stored = item.stored
                    else:
                        report(f"retrain #{n} {item}")
        except Exception:  # Ray, Postgres or training errors: the loop logs it, goes on
            report(f"retrain #{n} failed in {time.monotonic() - t0:.1f}s; next in {period:g}s")
            raise
        outcome, wait = "done", period
        if stored == 0:
            outcome, wait = "done, no model stored", settings.recommend_retrain_idle_s
        report(f"retrain #{n} {outcome} in {time.monotonic() - t0:.1f}s; next in {wait:g}s")
        return wait

    loop = SupervisedLoop("recommend-retrain", one, period_s=period, log=log)
    await loop.run()


def with_retrain(settings: Settings, main: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """What ``hyperlocal up`` runs: ``main`` (the gateway), with the scheduled retrain beside
    it unless ``recommend_retrain_s`` is 0."""
    if settings.recommend_retrain_s <= 0:
        return main
    log.info("retraining the rankers every %gs", settings.recommend_retrain_s)
    return beside_retrain_loop(settings, main)


async def beside_retrain_loop(settings: Settings, main: Awaitable[None]) -> None:
    """Await ``main`` (the gateway) with ``retrain_loop`` running beside it on the same event
    loop (it only awaits Ray refs: rule 6); the loop is stopped when ``main`` returns."""
    await beside(main, retrain_loop(settings), "recommend-retrain")
