"""Presence refresh benchmark: how long one refresh round holds a gateway's event loop.

A gateway re-adds its presence members to Redis every ``presence_ttl_s / 3`` (services/
presence.py), in ``REFRESH_SLICES`` rounds a period. This builds one gateway's presence as the
chat benchmark leaves it (``--sessions`` users, each in one of ``--rooms`` rooms, its own inbox
and one of ``--cells`` feed cells) against a private embedded Redis, and times rounds: one
round for every stream at once (the old way) against one slice, with a 1 ms loop-lateness probe
beside them. Unless ``--unpinned``, this process and Redis run on one core, as a gateway and
Redis share the server's core in the per-core benchmarks.

    python -m bench.presence_refresh
    python -m bench.presence_refresh --sessions 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.loadgen import LoopStalls
from services.presence import REFRESH_SLICES, Presence
from store.embedded import EmbeddedRedis


async def _measure(url: str, args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    redis = aioredis.Redis.from_url(url)
    presence = Presence(redis, "gw-bench", 30.0)
    for i in range(args.sessions):
        user = f"user{i}"
        for stream in (f"room:{i % args.rooms}", f"user:{user}", f"feed:cell{i % args.cells}"):
            presence._local[stream][user] = 1
    stalls = LoopStalls(tick_s=0.001)
    watcher = asyncio.create_task(stalls.watch())
    out: dict[str, list[tuple[float, float]]] = {"all streams": [], "one slice": []}
    try:
        await presence._refresh()  # warm: connections, Redis's keys
        for i in range(args.rounds):
            for label, part, parts in (("all streams", 0, 1), ("one slice", i, REFRESH_SLICES)):
                await asyncio.sleep(0.05)
                stalls.reset()
                started = time.perf_counter()
                await presence._refresh(part % parts, parts)
                out[label].append((time.perf_counter() - started, stalls.worst_s))
    finally:
        watcher.cancel()
        await redis.aclose()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--rooms", type=int, default=50)
    p.add_argument("--cells", type=int, default=37)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--unpinned", action="store_true", help="let Redis and this use every core")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hl-bench-presence-") as tmp:
        cpu = min(os.sched_getaffinity(0))
        if not args.unpinned:
            os.sched_setaffinity(0, {cpu})  # Redis, started next, inherits it
        server = EmbeddedRedis(Path(tmp)).start()
        try:
            figures = asyncio.run(_measure(server.url, args))
        finally:
            server.stop()
    streams = args.sessions + args.rooms + args.cells
    where = "unpinned" if args.unpinned else f"this process and Redis on CPU {cpu}"
    print(f"{args.sessions} sessions, {streams} streams, {args.rounds} rounds each; {where}")
    for label, rows in figures.items():
        walls = [1000 * wall for wall, _ in rows]
        blocks = [1000 * block for _, block in rows]
        print(
            f"  {label:<12} wall ms median {statistics.median(walls):6.1f}  max {max(walls):6.1f}"
            f" | longest loop block ms median {statistics.median(blocks):5.1f}"
            f"  max {max(blocks):5.1f}"
        )
    print(f"  (a period is {REFRESH_SLICES} slices: every member is refreshed once a period)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
