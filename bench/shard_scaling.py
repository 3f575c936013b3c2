"""Throughput at 1, 2 and 4 shards: what adding shards buys, measured through the real path.

One deployment (embedded Postgres and Redis, a local Ray, ``max(--shards)`` shard actors); for
each shard count the placement is resharded live (``services/cluster_ops.py: reshard``, what
``hyperlocal scale`` does; shards left out own nothing), then ``--concurrency`` closed-loop
writers send ``post.create`` for ``--seconds`` into ``--cells`` cells (spread over the shards
by rendezvous hashing) through the gateway's router and transport (the shards' direct
channels). Printed per shard count: acknowledged commands per second, ack latency p50/p99, and
the mean group-commit batch. Every ack is checked against Postgres at the end (lost must be 0).

What a two-core machine can show: the shards, Postgres, Redis and this load generator share two
cores, so beyond two shards the figures measure contention, not capacity. The per-shard figure
that sizing uses (docs/operations.md) is the 1-shard throughput, on a quiet machine with a core
per shard; run this there. The move pause (p99 ack delay during a live move) is
``python -m bench.cell_move``.

    python -m bench.shard_scaling                 # 1, 2, 4 shards, 10 s each
    python -m bench.shard_scaling --quick         # 1 and 2 shards, 2 s each (a smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.loadgen import percentile


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.shard_scaling", description=__doc__)
    p.add_argument("--shards", default="1,2,4", help="shard counts to measure, in order")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup-s", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--cells", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="1,2 shards, 2 s each, 0.5 s warmup")
    args = p.parse_args(argv)
    if args.quick:
        args.shards, args.seconds, args.warmup_s, args.concurrency = "1,2", 2.0, 0.5, 16
    args.counts = [int(n) for n in args.shards.split(",")]
    return args


async def _measure(settings: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    import h3

    from models.ids import new_id
    from services.channel import DirectTransport
    from services.cluster_ops import reshard
    from services.router import ShardRouter
    from services.transport import RayTransport
    from store import placement
    from store.db import create_pool

    pool = await create_pool(settings.database_url, max_size=4)
    ray = RayTransport.connect(settings)
    transport = DirectTransport(ray, settings.shard_call_timeout_s)

    async def load() -> Any:
        return await placement.load(pool)

    router = ShardRouter(transport, load, settings.batch_flush_ms / 1000, settings.batch_max)
    user = new_id()
    await pool.execute(
        "INSERT INTO users (id, email, email_norm, password_hash, display_name)"
        " VALUES ($1, $2, $2, 'x', 'bench')",
        user,
        f"{user}@bench.test",
    )
    spots = [(10.0 + i * 0.05, 20.0) for i in range(args.cells)]
    cells = [(str(h3.latlng_to_cell(lat, lng, settings.h3_resolution)), lat, lng)
             for lat, lng in spots]  # fmt: skip
    acked: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        for count in args.counts:
            await reshard(pool, count)
            await router.refresh()
            before = {s: await ray.stats(s) for s in settings.shard_names()}
            latencies, elapsed = await _round(router, cells, user, args, acked)
            after = {s: await ray.stats(s) for s in settings.shard_names()}
            batches = sum(after[s]["batches"] - before[s]["batches"] for s in after)
            commands = sum(after[s]["commands"] - before[s]["commands"] for s in after)
            rows.append({
                "shards": count,
                "acked_per_s": round(len(latencies) / elapsed, 1),
                "p50_ms": round(1000 * percentile(latencies, 50), 2),
                "p99_ms": round(1000 * percentile(latencies, 99), 2),
                "batch_mean": round(commands / batches, 1) if batches else 0.0,
            })  # fmt: skip
        stored = await pool.fetchval("SELECT count(*) FROM posts WHERE id = ANY($1)", acked)
        rows.append({"acked": len(acked), "lost": len(acked) - int(stored)})
        return rows
    finally:
        await transport.close()
        await pool.close()


async def _round(
    router: Any,
    cells: list[tuple[str, float, float]],
    user: str,
    args: argparse.Namespace,
    acked: list[str],
) -> tuple[list[float], float]:
    """One shard count's run: warm up, measure; the measured ack latencies and the time."""
    from models.feed import PostCreate

    latencies: list[float] = []
    state = {"measuring": False, "stop": False}

    async def writer(n: int) -> None:
        i = n
        while not state["stop"]:
            cell, lat, lng = cells[i % len(cells)]
            i += args.concurrency
            command = PostCreate(user_id=user, key=uuid.uuid4().hex, cell=cell, lat=lat,
                                 lng=lng, text="bench")  # fmt: skip
            sent = time.perf_counter()
            with contextlib.suppress(Exception):  # counted as not acked
                data = await router.call(command)
                acked.append(str(data["post"]["id"]))
                if state["measuring"]:
                    latencies.append(time.perf_counter() - sent)

    tasks = [asyncio.create_task(writer(n)) for n in range(args.concurrency)]
    await asyncio.sleep(args.warmup_s)
    state["measuring"], started = True, time.perf_counter()
    await asyncio.sleep(args.seconds)
    state["measuring"] = False
    elapsed = time.perf_counter() - started
    state["stop"] = True
    await asyncio.gather(*tasks)
    return latencies, elapsed


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import ray

    from cluster.config import load_settings
    from cluster.runtime import Runtime

    root = Path(tempfile.mkdtemp(prefix="hl-shard-scaling-"))
    runtime = Runtime(
        load_settings(
            data_dir=root,
            shard_count=max(args.counts),
            shard_num_cpus=0.1,
            ray_num_cpus=max(2, max(args.counts)),
            ray_namespace="hl-shard-scaling",
        )
    )
    try:
        runtime.start_services()
        runtime.start_ray()
        runtime.start_shards()
        return asyncio.run(_measure(runtime.settings, args))
    finally:
        if ray.is_initialized():
            for handle in runtime.shards.values():
                with contextlib.suppress(Exception):
                    ray.kill(handle)  # type: ignore[arg-type]
        runtime.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    rows = run(_args(argv))
    *figures, audit = rows
    print("shards  acked/s   p50 ms   p99 ms  batch")
    for r in figures:
        print(f"{r['shards']:>6} {r['acked_per_s']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['batch_mean']:>6}")  # fmt: skip
    print(json.dumps({"runs": figures, **audit}))
    return 0 if audit["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
