"""Shard call channel benchmark: a Ray actor call against the shard's direct channel, per call.

What a gateway pays to reach a shard, and what the shard pays to be reached, with nothing else
on the path: one shard on a fresh embedded stack (Postgres, Redis, local Ray), called from this
process by ``RayTransport`` (a Ray actor call per request) and by ``DirectTransport`` (the
shard's own TCP channel, services/channel.py), the same requests in the same run:

- ``ping``: transport only (the shard answers its name);
- ``feed_page``: a read of 20 posts from the cell's memory (a few KB of reply);
- each with 1 request in flight (latency) and 32 (throughput);
- ``--chat``: instead, ``execute`` batches of 1, 4 and 16 ``chat.send`` commands to a
  neighbourhood room (one call in flight, direct channel): what a durable chat message costs
  the shard and Postgres per message, and how much of it is per batch. Postgres's CPU is every
  process of the embedded server (backends, WAL writer, checkpointer...) over the row.
  ``--post``: the same with ``post.create`` to one cell (texts shaped as the load generator's).
  Both first print what the shard and Postgres spend idle (CPU ms a second over 10 s): a part
  of every row's per-message figure at these call rates.

CPU per call is measured in both processes (this one: ``process_time``, Ray's threads included;
the shard: its process's user + system time). Unless ``--unpinned``, the shard's process (all
its threads) runs on core 0 and this process on core 1, as in a deployment's unit.

    python -m bench.shard_channel            # about a minute
    python -m bench.shard_channel --quick
    python -m bench.shard_channel --chat --calls 2000                 # events pushed
    python -m bench.shard_channel --chat --calls 2000 --fanout redis  # events to Redis
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import ray

from bench.report import table
from cluster.config import load_settings
from cluster.runtime import Runtime
from models.commands import ShardCommand
from models.feed import PostCreate
from services.channel import DirectTransport
from services.transport import RayTransport, ShardTransport

CELL_LAT, CELL_LNG = 48.8566, 2.3522


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (``sched_setaffinity`` moves one thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            continue


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _run(
    transport: ShardTransport, shard: str, version: int, method: str, calls: int, in_flight: int,
    cell: str, shard_proc: psutil.Process,
) -> dict[str, Any]:  # fmt: skip
    async def one() -> float:
        started = time.perf_counter()
        if method == "ping":
            await transport.ping(shard)
        else:
            await transport.feed_page(shard, version, [cell], None, 20)
        return time.perf_counter() - started

    for _ in range(50):  # warm up (connections, the cell)
        await one()
    lat: list[float] = []
    slots = asyncio.Semaphore(in_flight)

    async def slot() -> None:
        async with slots:
            lat.append(await one())

    caller0, shard0, wall0 = time.process_time(), _cpu_s(shard_proc), time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(calls)))
    wall = time.perf_counter() - wall0
    caller, shard_cpu = time.process_time() - caller0, _cpu_s(shard_proc) - shard0
    lat.sort()
    return {
        "calls/s": calls / wall,
        "p50 us": lat[len(lat) // 2] * 1e6,
        "p99 us": lat[int(len(lat) * 0.99)] * 1e6,
        "caller CPU us/call": caller / calls * 1e6,
        "shard CPU us/call": shard_cpu / calls * 1e6,
    }


async def _run_chat(
    transport: ShardTransport, shard: str, version: int, room: str, author: str, calls: int,
    batch: int, procs: dict[str, list[psutil.Process]], cell: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``batch`` chat messages to ``room`` a call, or with ``cell`` posts there (``--post``)."""
    from models.chat import ChatSend

    def command(i: int) -> ShardCommand:
        key = uuid.uuid4().hex
        if cell is None:
            return ChatSend(user_id=author, key=key, room_id=room, text="x" * 64)
        text = f"lg m {i} {key[:6]} {time.time_ns()}"  # the load generator's shape
        return PostCreate(user_id=author, key=key, cell=cell, lat=CELL_LAT, lng=CELL_LNG,
                          text=text)  # fmt: skip

    async def one() -> float:
        commands = [command(i) for i in range(batch)]
        started = time.perf_counter()
        replies = await transport.execute(shard, version, commands)
        elapsed = time.perf_counter() - started
        if not all(r.get("ok") for r in replies):
            raise RuntimeError(f"{commands[0].op} failed: {replies[:1]}")
        return elapsed

    for _ in range(30):
        await one()
    cpu0 = {part: sum(_cpu_s(p) for p in ps) for part, ps in procs.items()}
    lat: list[float] = []
    wall0 = time.perf_counter()
    for _ in range(calls):
        lat.append(await one())
    wall = time.perf_counter() - wall0
    cpu = {part: sum(_cpu_s(p) for p in ps) - cpu0[part] for part, ps in procs.items()}
    messages = calls * batch
    lat.sort()
    return {
        "calls/s": calls / wall,
        "p50 us": lat[len(lat) // 2] * 1e6,
        "p99 us": lat[int(len(lat) * 0.99)] * 1e6,
        **{f"{part} CPU us/msg": cpu[part] / messages * 1e6 for part in procs},
    }


def _postgres_procs(data_dir: Path) -> list[psutil.Process]:
    """The embedded Postgres server's processes (the postmaster and its children)."""
    pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    master = psutil.Process(pid)
    return [master, *master.children()]


async def _setup(settings: Any) -> tuple[str, int, str, str]:
    """The shard to call, the placement version, the bench's cell and a signed-up author."""
    import h3

    from models.ids import new_id
    from store import placement, users
    from store.db import create_pool

    pool = await create_pool(settings.database_url)
    table_ = await placement.load(pool)
    author = new_id()
    await users.create_user(pool, author, "bench@example.test", "bench@example.test", "!", "b")
    await pool.close()
    assert table_ is not None
    cell = str(h3.latlng_to_cell(CELL_LAT, CELL_LNG, settings.h3_resolution))
    return table_.shards[0], table_.version, cell, author


async def measure_chat(
    settings: Any, calls: int, posts: bool = False
) -> list[tuple[str, list[Any]]]:
    from models.chat import NEIGHBOURHOOD_PREFIX

    shard, version, cell, author = await _setup(settings)
    room = NEIGHBOURHOOD_PREFIX + cell
    direct = DirectTransport(RayTransport.connect(settings), settings.shard_call_timeout_s)
    pushed: list[int] = [0]
    if settings.push_fanout:  # as a gateway does: the shard's events come on the channel

        def take(shard: str, items: list[Any]) -> None:
            pushed[0] += len(items)

        direct.receive_pushes(take, lambda shard: None)
    stats = await ray.get_actor(shard, namespace=settings.ray_namespace).stats.remote()
    procs = {
        "shard": [psutil.Process(int(stats["pid"]))],
        "postgres": _postgres_procs(settings.data_dir.resolve()),
    }
    rows = []
    # what the processes spend doing nothing (ticks, timers, Ray's threads), a second: a part
    # of every row's per-message figure at these rates (~100-150 calls/s)
    kind = cell if posts else None
    await _run_chat(direct, shard, version, room, author, 30, 1, procs, kind)  # warm
    idle0 = {part: sum(_cpu_s(p) for p in ps) for part, ps in procs.items()}
    await asyncio.sleep(10.0)
    idle = {part: (sum(_cpu_s(p) for p in ps) - idle0[part]) / 10.0 for part, ps in procs.items()}
    print("  idle: " + ", ".join(f"{part} CPU ms/s {v * 1e3:,.1f}" for part, v in idle.items()))
    for batch in [int(b) for b in os.environ.get("HL_BENCH_CHAT_BATCHES", "1,4,16").split(",")]:
        n = max(calls // batch, 50)
        r = await _run_chat(direct, shard, version, room, author, n, batch, procs, kind)
        rows.append(
            (f"{'post.create' if posts else 'chat.send'} x{batch} direct", list(r.values()))
        )
        print(f"  {rows[-1][0]}: " + ", ".join(f"{k} {v:,.0f}" for k, v in r.items()))
    fanout = "pushed on the channel" if settings.push_fanout else "published to Redis"
    print(f"  events {fanout} (stream messages received here: {pushed[0]:,})")
    await direct.close()
    return rows


async def _seed(
    transport: ShardTransport, shard: str, version: int, cell: str, author: str
) -> None:
    commands: list[ShardCommand] = [
        PostCreate(
            user_id=author,
            key=uuid.uuid4().hex,
            cell=cell,
            lat=CELL_LAT,
            lng=CELL_LNG,
            text=f"post {i} " + "x" * 100,
        )
        for i in range(20)
    ]
    replies = await transport.execute(shard, version, commands)
    if not all(r.get("ok") for r in replies):
        raise RuntimeError(f"seeding the cell failed: {replies[:1]}")


async def measure(settings: Any, calls: int) -> list[tuple[str, list[Any]]]:
    shard, version, cell, author = await _setup(settings)
    ray_t = RayTransport.connect(settings)
    direct = DirectTransport(ray_t, settings.shard_call_timeout_s)
    stats = await ray.get_actor(shard, namespace=settings.ray_namespace).stats.remote()
    shard_proc = psutil.Process(int(stats["pid"]))
    await _seed(direct, shard, version, cell, author)
    page = await direct.feed_page(shard, version, [cell], None, 20)
    print(f"feed_page answers {len(page['data']['items'])} posts")
    rows = []
    for method in ("ping", "feed_page"):
        for in_flight in (1, 32):
            for name, transport in (("ray", ray_t), ("direct", direct)):
                r = await _run(
                    transport, shard, version, method, calls, in_flight, cell, shard_proc
                )
                rows.append((f"{method} x{in_flight} {name}", list(r.values())))
                print(f"  {rows[-1][0]}: " + ", ".join(f"{k} {v:,.0f}" for k, v in r.items()))
    await direct.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=5000, help="requests per row")
    p.add_argument("--quick", action="store_true", help="500 requests per row")
    p.add_argument("--unpinned", action="store_true", help="let processes share both cores")
    p.add_argument("--chat", action="store_true", help="chat.send batches: shard and Postgres CPU")
    p.add_argument("--post", action="store_true", help="as --chat with post.create batches")
    p.add_argument(
        "--fanout",
        choices=("push", "redis"),
        default="push",
        help="with --chat: the shard pushes its events on the channel, or publishes to Redis",
    )
    args = p.parse_args()
    calls = 500 if args.quick else args.calls
    root = Path(tempfile.mkdtemp(prefix="hl-bench-channel-"))
    runtime = Runtime(load_settings(data_dir=root, port=0, shard_count=1, ray_num_cpus=2,
                                    shard_num_cpus=0.1, gc_freeze=True,
                                    shard_push=args.fanout == "push"))  # fmt: skip
    try:
        settings = runtime.start()
        if not args.unpinned and (os.cpu_count() or 1) >= 2:
            shard = asyncio.run(_shard_pid(settings))
            pin_process(shard, {0})
            for proc in _postgres_procs(settings.data_dir.resolve()):  # new backends inherit
                pin_process(proc.pid, {0})
            pin_process(os.getpid(), {1})
            print(f"pinned: shard pid {shard} and Postgres on core 0, this process on core 1")
        if args.chat or args.post:
            rows = asyncio.run(measure_chat(settings, calls, posts=args.post))
            header = ["calls/s", "p50 us", "p99 us", "shard CPU us/msg", "postgres CPU us/msg"]
        else:
            rows = asyncio.run(measure(settings, calls))
            header = ["calls/s", "p50 us", "p99 us", "caller CPU us/call", "shard CPU us/call"]
        print()
        print(table(rows, header))
    finally:
        runtime.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _shard_pid(settings: Any) -> int:
    handle = ray.get_actor(settings.shard_names()[0], namespace=settings.ray_namespace)
    return int((await handle.stats.remote())["pid"])


if __name__ == "__main__":
    main()
