"""Recommendation benchmark: scoring latency inside a cell and training time per scope.

Scoring: what a shard's ``recommend.rank`` runs for one ``feed.get sort=relevance`` - feature
building for 200 candidate posts of a neighbourhood snapshot plus the LightGBM prediction - timed
in-process (p50/p99 over ``--runs`` calls, wall time and the scoring thread's CPU time; the
Ray hop from the gateway is not included). The
snapshot holds a busy neighbourhood: ``--cell-events`` interactions over ``--cell-items`` posts.

Training: ``train_scope`` with the product recipe (one thread, as one Ray task with
``num_cpus=0.5`` runs it) on a cell-sized world and on a global-sized one. Generated data only.

    python -m bench.recommend_scoring              # about a minute on 2 cores
    python -m bench.recommend_scoring --quick              # no global training, 50 calls
    python -m bench.recommend_scoring --quick --runs 1000  # the scoring figure alone
    python -m bench.recommend_scoring --quick --embeddings # with the learned embeddings
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from models.recommend.serving import ModelBundle, Snapshot, product_recipe, rank, train_scope
from models.recommend.stats import EMBED_DIM
from models.recommend.synthetic import make_events, make_items


def _world(n_items: int, n_users: int, days: int, seed: int) -> tuple[list, list]:
    items = make_items(n_items, seed=seed, spread_deg=0.004)
    return items, make_events(items, n_users=n_users, days=days, seed=seed)


def _train(label: str, n_items: int, n_users: int, days: int, embed_dim: int = 0) -> ModelBundle:
    items, events = _world(n_items, n_users, days, seed=1)
    recipe = product_recipe(8, 1)
    recipe.stats.embed_dim = embed_dim
    t0 = time.perf_counter()
    ranker, info = train_scope(label, items, events, recipe)
    took = time.perf_counter() - t0
    print(
        f"train {label:<7} {len(events):>7} interactions {n_items:>5} items "
        f"{int(info['groups']):>6} queries: {took:6.2f} s"
    )
    return ModelBundle(label, 1, ranker, recipe, info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None, help="scoring calls (300; --quick: 50)")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--cell-items", type=int, default=1000)
    parser.add_argument("--cell-events", type=int, default=20_000)
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="the learned POI embeddings on (the snapshot fits them; the call looks them up)",
    )
    args = parser.parse_args()
    runs = args.runs if args.runs is not None else 50 if args.quick else 300
    cell_model = _train("cell", 300, 60, 30, EMBED_DIM if args.embeddings else 0)
    if not args.quick:
        _train("global", 3000, 1000, 60)
    users = max(args.cell_events // 60, 10)
    items, events = _world(args.cell_items, users, 30, seed=2)
    events = events[-args.cell_events :]
    now = events[-1].timestamp + 60
    t0 = time.perf_counter()
    snap = Snapshot(items, events, now, cell_model.recipe.stats)
    print(
        f"snapshot {len(events)} interactions {len(items)} items: "
        f"{(time.perf_counter() - t0) * 1000:.0f} ms (built once per TTL, in a thread)"
    )
    rng = np.random.default_rng(0)
    lat, lng = items[0].lat, items[0].lng
    times, cpu = [], []
    for r in range(runs + 5):
        pick = rng.choice(len(items), size=args.candidates, replace=False)
        cands = [items[i] for i in pick]
        user = events[int(rng.integers(len(events)))].user_id
        t, c = time.perf_counter(), time.thread_time()
        scores = rank(cell_model, snap, user, lat, lng, cands, now=now)
        if r >= 5:  # warm-up excluded
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
        assert len(scores) == args.candidates
    p50, p99 = np.percentile(times, [50, 99])
    c50, c99 = np.percentile(cpu, [50, 99])
    # Wall time includes waiting for a CPU on a busy box; the thread's CPU time is the work.
    print(
        f"score {args.candidates} candidates in a cell: p50 {p50:.1f} ms  p99 {p99:.1f} ms "
        f"wall; CPU p50 {c50:.1f} ms  p99 {c99:.1f} ms ({runs} calls)"
    )


if __name__ == "__main__":
    main()
