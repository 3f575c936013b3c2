"""Fanout client cost benchmark: what publishing a batch's events and reading them back costs
the client process, redis-py against the lean connections of store/fanout.py, in one run.

A shard publishes every committed batch (one PUBLISH per stream it touched) and every gateway
with a follower reads each message; both sit on the hot path of every chat message and post.
On a fresh embedded Redis this process:

- publishes ``--flushes`` batches of ``--streams`` events (350-byte frames) through redis-py's
  pipeline (what the shard used) and through ``RespPublisher``: client CPU per flush;
- reads ``--messages`` messages of a subscribed channel with redis-py's ``get_message`` (what
  the hub used) and with ``RespSubscriber.read``, sent by a separate publisher process in
  bursts of ``--burst``: client CPU per message (the publisher's CPU is not counted).

Unless ``--unpinned``, this process runs on core 1 and Redis on core 0.

    python -m bench.redis_fanout             # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis

from bench.report import table
from models.streams import Event
from store.embedded import EmbeddedRedis
from store.fanout import RespPublisher, RespSubscriber, channel

FRAME = "x" * 350


def events(batch: int, streams: int) -> list[Event]:
    return [Event(f"room:{s}", "e", batch, "chat.message", {"t": FRAME}) for s in range(streams)]


async def publish_redis_py(url: str, flushes: int, streams: int) -> float:
    client = aioredis.from_url(url)
    try:
        start = time.process_time()
        for n in range(flushes):
            async with client.pipeline(transaction=False) as pipe:
                for event in events(n, streams):
                    pipe.publish(channel(event.stream), event.frame_json)
                await pipe.execute()
        return (time.process_time() - start) / flushes
    finally:
        await client.aclose()


async def publish_lean(url: str, flushes: int, streams: int) -> float:
    publisher = RespPublisher(url, "bench-fanout")
    try:
        start = time.process_time()
        for n in range(flushes):
            await publisher.publish(events(n, streams))
        assert publisher.failures == 0
        return (time.process_time() - start) / flushes
    finally:
        await publisher.aclose()


def feeder(url: str, name: str, messages: int, burst: int) -> subprocess.Popen[bytes]:
    """A separate process publishing ``messages`` to ``name`` in bursts, after a second."""
    code = (
        "import asyncio, redis.asyncio as r\n"
        "async def main():\n"
        f"    c = r.from_url({url!r}); await asyncio.sleep(1.0)\n"
        f"    for i in range(0, {messages}, {burst}):\n"
        "        async with c.pipeline(transaction=False) as p:\n"
        f"            for _ in range({burst}): p.publish({name!r}, {FRAME!r})\n"
        "            await p.execute()\n"
        "        await asyncio.sleep(0.0005)\n"
        "    await c.aclose()\n"
        "asyncio.run(main())\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


async def read_redis_py(url: str, messages: int, burst: int) -> float:
    client = aioredis.from_url(url)
    sub = client.pubsub()
    await sub.subscribe("bench:a")
    proc = feeder(url, "bench:a", messages, burst)
    try:
        got, start = 0, 0.0
        while got < messages:
            message = await sub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                if got == 0:
                    start = time.process_time()
                got += 1
        return (time.process_time() - start) / (messages - 1)
    finally:
        proc.wait(30)
        await sub.aclose()
        await client.aclose()


async def read_lean(url: str, messages: int, burst: int) -> float:
    sub = RespSubscriber(url, "bench-hub")
    await sub.connect(["bench:b"])
    proc = feeder(url, "bench:b", messages, burst)
    try:
        got, start = 0, 0.0
        while got < messages:
            batch = await sub.read()
            if got == 0:
                start = time.process_time()
            got += len(batch)
        return (time.process_time() - start) / (messages - 1)
    finally:
        proc.wait(30)
        await sub.aclose()


async def run(args: argparse.Namespace, url: str) -> list[dict[str, Any]]:
    rows = []
    for name, publish in (("redis-py pipeline", publish_redis_py), ("RespPublisher", publish_lean)):
        per = await publish(url, args.flushes, args.streams)
        rows.append({"what": f"publish a batch of {args.streams}", "client": name, "us": per})
    for name, read in (("redis-py get_message", read_redis_py), ("RespSubscriber", read_lean)):
        per = await read(url, args.messages, args.burst)
        rows.append({"what": f"read a message (bursts of {args.burst})", "client": name, "us": per})
    for row in rows:
        row["us"] = round(row["us"] * 1e6, 1)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flushes", type=int, default=5000)
    p.add_argument("--streams", type=int, default=2, help="events (streams) per batch")
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--burst", type=int, default=1, help="messages the feeder sends together")
    p.add_argument("--unpinned", action="store_true")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hl-bench-redis-"))
    redis = EmbeddedRedis(root)
    try:
        redis.start()
        if not args.unpinned and len(os.sched_getaffinity(0)) >= 2:
            for proc in psutil.process_iter(["cmdline"]):
                if str(root) in " ".join(proc.info["cmdline"] or []):
                    proc.cpu_affinity([0])
            os.sched_setaffinity(0, {1})
        rows = asyncio.run(run(args, redis.url))
        print(table([(f"{r['what']}: {r['client']}", [r["us"]]) for r in rows], ["client CPU µs"]))
    finally:
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
