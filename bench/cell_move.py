"""Cell move benchmark: the pause a live move costs a busy cell, and that it loses nothing.

One ``hyperlocal up`` (from ``--source REV`` if given) on a fresh data dir, per core as the
fanout benchmarks run (the server's whole process tree on one CPU, this load generator on
another; ``--unpinned``, ``--cpus S,L``). ``--clients`` users locate in one cell; open loop at
``--rate`` ``chat.send`` a second into its neighbourhood room, round robin over the clients,
latency from the scheduled send time (a reply to a request that waited counts its wait). Every
``--every`` seconds the cell moves to the next shard (``services/cluster_ops.py: move_cell`` on
the deployment's Postgres, what the ops CLI calls; back home by ``unpin_cell`` at the end).
Sends whose scheduled time falls within ``--window`` ms after a move started are "during a
move"; the rest "steady". At the end every acknowledged message is looked up in
``chat.history``: lost (acked, not stored), duplicated and gaps in the acked offsets must be 0.

    python -m bench.cell_move --source HEAD          # 30 s at 200 msgs/s, a move every 2 s
    python -m bench.cell_move --quick                # ~15 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.loadgen import percentile
from bench.procs import choose_pinning, machine, pin_process
from bench.report import fmt, table
from bench.targets import make_target, rev_parse, snapshot, stack_dsn
from cluster.config import load_settings
from hyperlocal_client import Api
from hyperlocal_client.ws import ENDS, Socket
from models.cells import Geo
from models.placement import cell_key
from services.cluster_ops import move_cell, unpin_cell
from store import placement
from store.db import create_pool

LAT, LNG = 48.8566, 2.3522


def say(text: str) -> None:
    print(text, flush=True)


class Client(Socket):
    """A hyperlocal_client session that decodes only replies once it has its hello: every
    client of the cell hears every message, and none of it is this benchmark's business."""

    def receive(self, msg: aiohttp.WSMessage) -> bool:
        if not self.hello:
            return super().receive(msg)
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith('{"re"'):
            self.resolve(json.loads(msg.data))
        return msg.type not in ENDS


async def connect(http: aiohttp.ClientSession, url: str, i: int) -> Client:
    email = f"mover{i}-{uuid.uuid4().hex[:8]}@bench.test"
    user = await Api(url, http).signup(email, "bench-pass-1", f"mover{i}")
    client = await Client.open(http, url, user.access_token)
    await client.request("locate", {"lat": LAT, "lng": LNG}, timeout_s=30)
    return client


async def send(client: Client, room: str, due: float, i: int) -> dict[str, Any]:
    """One message, retried with its key on ``unavailable`` (as a client does)."""
    key = uuid.uuid4().hex
    await asyncio.sleep(max(0.0, due - time.perf_counter()))
    for _ in range(50):
        body = {"room_id": room, "text": f"m{i}"}
        reply = await client.call("chat.send", body, key, timeout_s=30)
        if reply["ok"] or reply["error"]["code"] != "unavailable":
            break
        await asyncio.sleep(0.02)
    return {"due": due, "ms": 1000 * (time.perf_counter() - due), "reply": reply}


async def drive(args: argparse.Namespace, url: str, dsn: str) -> dict[str, Any]:
    settings = load_settings()
    geo = Geo(settings.h3_resolution, settings.k_ring)
    cell = geo.cell_of(LAT, LNG)
    room = f"cell-{cell}"
    pool = await create_pool(dsn, min_size=1, max_size=2)
    async with aiohttp.ClientSession() as http:
        clients = [await connect(http, url, i) for i in range(args.clients)]
        table_now = await placement.load(pool)
        assert table_now is not None
        shards = list(table_now.shards)
        if len(shards) < 2:
            raise SystemExit("needs two shards (HL_SHARD_COUNT >= 2)")
        warm = [send(clients[i % len(clients)], room, time.perf_counter(), i) for i in range(20)]
        await asyncio.gather(*warm)
        start = time.perf_counter() + 0.5
        count = int(args.rate * args.duration)
        sends = [
            asyncio.create_task(send(clients[i % len(clients)], room, start + i / args.rate, i))
            for i in range(count)
        ]
        moves: list[dict[str, Any]] = []
        at = start + args.every
        while at < start + args.duration - 0.5:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            current = (await placement.load(pool)).owner(cell_key(cell))  # type: ignore[union-attr]
            target = shards[(shards.index(current) + 1) % len(shards)]
            t0 = time.perf_counter()
            await move_cell(pool, geo, cell, target)
            moves.append({"at": t0, "ms": 1000 * (time.perf_counter() - t0), "to": target})
            at += args.every
        done = await asyncio.gather(*sends)
        if cell_key(cell) in (await placement.load(pool)).overrides:  # type: ignore[union-attr]
            await unpin_cell(pool, geo, cell)
        acked = [d["reply"]["data"]["message"] for d in done if d["reply"]["ok"]]
        errors = [d["reply"]["error"]["code"] for d in done if not d["reply"]["ok"]]
        stored: dict[str, int] = {}
        before = None
        while True:
            query: dict[str, Any] = {"room_id": room, "limit": 200}
            if before:
                query["before"] = before
            page = await clients[0].request("chat.history", query, timeout_s=30)
            for m in page["messages"]:
                stored[m["id"]] = stored.get(m["id"], 0) + 1
            before = page["next_before"]
            if not before:
                break
        offsets = sorted(m["offset"] for m in acked)
        for client in clients:
            await client.close()
    await pool.close()
    window = args.window / 1000
    during = [d["ms"] for d in done if any(0 <= d["due"] - m["at"] <= window for m in moves)]
    steady = [d["ms"] for d in done if not any(0 <= d["due"] - m["at"] <= window for m in moves)]
    return {
        "sent": count,
        "acked": len(acked),
        "errors": errors,
        "moves": len(moves),
        "move_ms_p50": percentile([m["ms"] for m in moves], 50),
        "move_ms_max": max((m["ms"] for m in moves), default=0.0),
        "steady_p50": percentile(steady, 50),
        "steady_p99": percentile(steady, 99),
        "during_p50": percentile(during, 50),
        "during_p99": percentile(during, 99),
        "during_max": max(during, default=0.0),
        "during_n": len(during),
        "steady": steady,
        "lost": sum(1 for m in acked if m["id"] not in stored),
        "duplicated": sum(1 for n in stored.values() if n > 1),
        "offset_gaps": sum(1 for a, b in itertools.pairwise(offsets) if b != a + 1),
    }


async def keep_pinned(pid: int, cpus: frozenset[int], strays: list[int]) -> None:
    """Every 0.25 s, every thread of the server's whole process tree (Ray and Postgres start
    processes and threads lazily) on ``cpus``, as the fanout benchmarks do; counts strays."""
    root = psutil.Process(pid)
    while True:
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                strays.append(len(pin_process(proc.pid, cpus)[1]))
        await asyncio.sleep(0.25)


async def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    pinning, line = choose_pinning(args.cpus, args.unpinned)
    say(f"machine: {fmt(machine())}; {line}")
    root = Path(tempfile.mkdtemp(prefix="hl-bench-move-"))
    source = None
    if args.source:
        source, sha = snapshot(rev_parse(args.source), root / "src")
        say(f"runs commit {sha[:12]} ({args.source})")
    target = make_target(
        "ours", root, source, {"HL_SHARD_COUNT": "2"}, pinning.server if pinning else None
    )
    try:
        if pinning:
            os.sched_setaffinity(0, pinning.loadgen)
        await target.server.start()
        strays: list[int] = []
        keeper = None
        if pinning:
            assert target.server.proc is not None
            pid = target.server.proc.pid
            keeper = asyncio.create_task(keep_pinned(pid, pinning.server, strays))
        try:
            result = await drive(args, target.url, stack_dsn(target.data_dir))
        finally:
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
        say(f"server threads found off their CPU and set back: {sum(strays)}")
    finally:
        code, left = await target.stop()
        say(f"stopped: exit {code}, leftover services {left or 'none'}")
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        ("steady", [result["steady_p50"], result["steady_p99"], float("nan"),
                    len(result["steady"])]),
        ("during a move", [result["during_p50"], result["during_p99"], result["during_max"],
                           result["during_n"]]),
    ]  # fmt: skip
    say(table(rows, ["ack p50 ms", "p99 ms", "max ms", "sends"]))
    say(
        f"{result['moves']} moves (placement change {result['move_ms_p50']:.1f} ms p50,"
        f" {result['move_ms_max']:.1f} max); sent {result['sent']}, acked {result['acked']},"
        f" errors {len(result['errors'])}; lost {result['lost']}, duplicated"
        f" {result['duplicated']}, offset gaps {result['offset_gaps']}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--rate", type=float, default=200.0, help="chat.send per second")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--every", type=float, default=2.0, help="seconds between moves")
    p.add_argument("--window", type=float, default=250.0, help="ms after a move counted in it")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--source", metavar="REV")
    p.add_argument("--cpus", metavar="S,L")
    p.add_argument("--unpinned", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.clients = 10.0, 10
    result = asyncio.run(orchestrate(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    bad = result["lost"] or result["duplicated"] or result["offset_gaps"] or result["errors"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
