"""Chat fanout benchmark: group rooms on the real stack against the raw aiohttp broadcast, one run.

For each target — ``raw`` (bench/raw_broadcast.py, in-process broadcast speaking the same chat
frames) and ``ours`` (``hyperlocal up`` on a fresh temp data dir: embedded Postgres, Redis, local
Ray, the gateway) — it starts the server as a child process on a free loopback port and:

1. **Idle connections** (``--idle``, 5,000 by default): after a warm-up fleet (128 located
   clients at the join's concurrency, closed again), that many clients sign up, then open an
   authenticated websocket and ``locate`` (no other traffic), in two halves; the gateway
   process's RSS before the first websocket, after each half and once the server is quiet
   gives the memory per idle connection (and per connection of the second half alone, a check
   that no one-time cost is left in it). Signups come before the first reading: an argon2id
   hash leaves its buffer in the malloc arena of the thread that computed it, so a thread
   hashing for the first time during the join used to add 8 MiB to whichever target it
   happened in (16 KB per connection at 500). They are then closed.
2. **Chat fanout**: 1,000 clients (bench/chat_workload.py) in 50 group rooms of 20 — each room
   created with ``room.create`` by its first member after ``locate``, every member subscribed to
   ``room:<id>`` — 10 % of them sending ``chat.send`` at a fixed total offered rate, open loop
   (bench/loadgen.py), 3 s warm-up then 20 s measured while the server's process tree is sampled
   (CPU, RSS). Every member of the room, the sender included, must get each acked message once.
3. ``--search``: the highest offered rate that keeps p99 delivery <= 250 ms with zero loss.

Per core by default (bench/runner.py): every process and thread of the server side on CPU 0, the
load generator on CPU 1, for both targets; ``--unpinned`` lets both use every core (the old way).

The server is stopped with SIGINT; the run fails unless it exits 0 and leaves no Postgres or
Redis behind. ``--source HEAD`` runs ``ours`` from a ``git archive`` of that commit;
``--baseline-rev REV`` adds the target ``before``, the same stack from a ``git archive`` of
``REV``, measured exactly like ``ours`` (same load, steps, flags; its own fresh load-generator
process) and reported next to it (``ours/before``, ``before/raw``; JSON ``results.before``), so one
run shows a change before and after. Steps 2-3 and the stop are bench/runner.py's, shared with
bench/feed_fanout.py; this module adds step 1.

    python -m bench.chat_fanout --source HEAD --search --json chat.json   # the full run
    python -m bench.chat_fanout --quick                                   # smoke run (~2 min)
    python -m bench.chat_fanout --quick --unpinned                        # the same, unpinned
    python -m bench.chat_fanout --source HEAD --baseline-rev main --search --json chat.json
    python -m bench.chat_fanout --quick --source HEAD --baseline-rev HEAD~1   # before/after smoke
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psutil

from bench.chat_workload import ChatWorkload
from bench.loadgen import Fleet, FleetConfig
from bench.procs import Pinning, TreeMeter, machine, raise_fd_limit
from bench.report import fmt, table
from bench.runner import Bench, add_load_flags, add_run_flags, execute, finish_args, say
from bench.targets import TARGETS, Target
from bench.workloads import FeedWorkload, place_clients

IDLE_ROWS = (
    ("idle connections", "connections"),
    ("still open when measured", "open_at_measure"),
    ("signup time s (before the first reading)", "signup_s"),
    ("websockets + locate time s", "connect_s"),
    ("gateway RSS before MB", "gateway_rss_before_mb"),
    ("gateway RSS after MB", "gateway_rss_after_mb"),
    ("gateway KB / idle connection", "gateway_kb_per_conn"),
    ("  the same over the second half", "gateway_kb_per_conn_2nd_half"),
    ("gateway growth MB by kind", "gateway_growth_mb_by"),
    ("gateway threads before / half / after", "gateway_threads"),
    ("whole tree KB / idle connection", "tree_kb_per_conn"),
    ("tree RSS after MB by part", "rss_after_mb_by"),
)
IDLE_WARM = 128
"""Clients of the warm-up before the idle connections (two rounds of the join's 64 at once)."""


def rss_of(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def rss_parts(pid: int) -> dict[str, int]:
    """RssAnon, RssFile, RssShmem (bytes) and Threads of ``pid`` (/proc/<pid>/status)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
            elif key == "Threads":
                out[key] = int(value)
    return out


def anon_by_kind(pid: int) -> dict[str, int]:
    """Resident anonymous memory (bytes) of ``pid`` by kind of mapping (/proc/<pid>/smaps):
    ``brk heap`` (malloc's main arena), ``thread arenas`` (the 64 MiB-aligned heaps of malloc's
    per-thread arenas), ``other maps`` (CPython's 1 MiB object arenas, which the kernel merges
    when adjacent, big malloc blocks mapped on their own, thread stacks, libraries' maps)."""
    out: dict[str, int] = {}
    kind = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                low, high = (int(x, 16) for x in head[0].split("-"))
                size, path = high - low, head[5] if len(head) > 5 else ""
                if path == "[heap]":
                    kind = "brk heap"
                elif path:
                    kind = ""  # a file, the stack of the main thread, vdso...
                elif size <= 64 << 20 and low % (64 << 20) == 0:
                    kind = "thread arenas"
                else:
                    kind = "other maps"
            elif head[0] == "Anonymous:" and kind:
                out[kind] = out.get(kind, 0) + int(head[1]) * 1024
    return out


def growth(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """The gateway's RSS growth (MB) between two ``idle_reading``s: file-backed pages, and
    anonymous memory by kind of mapping (``anon_by_kind``)."""
    file = after["status"]["RssFile"] - before["status"]["RssFile"]
    kinds = sorted(before["anon"].keys() | after["anon"].keys())
    out = {"file": round(file / 2**20, 1)}
    for kind in kinds:
        out[kind] = round((after["anon"].get(kind, 0) - before["anon"].get(kind, 0)) / 2**20, 1)
    return out


def tree_rss(target: Target, pinning: Pinning | None = None) -> dict[str, int]:
    assert target.server.proc is not None
    meter = TreeMeter(target.server.proc.pid, target.data_dir, pinning)
    meter.sample()
    return meter.rss_samples[-1]


async def quiesce(
    target: Target, below_pct: float = 20.0, max_s: float = 90.0, pinning: Pinning | None = None
) -> float:
    """Wait until the server's tree uses < ``below_pct`` % of a core over 1 s; seconds waited.
    With ``pinning``, every sample puts the tree's threads back on the server's CPU."""
    assert target.server.proc is not None
    started = time.perf_counter()
    while time.perf_counter() - started < max_s:
        meter = TreeMeter(target.server.proc.pid, target.data_dir, pinning)
        async with meter:
            await asyncio.sleep(1.0)
        if meter.report()["cpu_pct"] < below_pct:
            break
    return time.perf_counter() - started


class ChatBench(Bench):
    """The shared run with the chat workload, after measuring idle connections (``--idle``)."""

    unit = "messages"
    connect_label = "join (all clients) s"
    extra_rows = (("room.create + subscribe (all) ms", "prepare_p50_ms"),)
    share_note = " (target >= 0.50)"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.idle: dict[str, dict[str, Any]] = {}

    def fleet(self, url: str) -> Fleet:
        a = self.args
        workload = ChatWorkload(a.clients, a.rooms)
        config = FleetConfig(clients=a.clients, senders_fraction=a.senders_fraction)
        return Fleet(url, workload, config)

    def joined(self, connect_s: float) -> str:
        a = self.args
        return f"{a.clients} clients in {a.rooms} rooms joined in {connect_s:.1f}s"

    async def before_load(self, target: Target) -> None:
        if self.args.idle:
            self.idle[target.name] = await self.measure_idle(target)

    async def measure_idle(self, target: Target) -> dict[str, Any]:
        """Gateway RSS before, halfway and after ``--idle`` authenticated, located, silent
        websockets (each read once the server is quiet); the idle clients sign up before the
        first reading, so only opening and locating their websockets is measured."""
        a = self.args
        await self.warm_up(target)
        spots = place_clients(a.idle, a.rooms)
        halves = [spots[: a.idle // 2], spots[a.idle // 2 :]]
        fleets = [
            Fleet(
                target.url,
                FeedWorkload(half),
                FleetConfig(clients=len(half), senders_fraction=0.0, connect_concurrency=64),
            )
            for half in halves
        ]
        started = time.perf_counter()
        try:
            # Signing up is not holding a connection, and its argon2id buffer stays behind in
            # the malloc arena of the executor thread that hashed it (8 MiB a thread here):
            # counted against the connections, that was one more thread hashing for the first
            # time during the join in whichever target it happened (docs/benchmarks.md).
            for fleet in fleets:
                await fleet.sign_up()
            signup_s = time.perf_counter() - started
            readings = [await self.idle_reading(target)]
            connect_s = 0.0
            for fleet in fleets:
                started = time.perf_counter()
                await fleet.connect()
                connect_s += time.perf_counter() - started
                readings.append(await self.idle_reading(target))
            open_sockets = sum(1 for f in fleets for c in f.clients if c.close_code is None)
        finally:
            for fleet in fleets:
                await fleet.close()
        before, mid, after = readings
        second = len(halves[1])
        result = {
            "connections": a.idle,
            "open_at_measure": open_sockets,
            "signup_s": signup_s,
            "connect_s": connect_s,
            "gateway_rss_before_mb": before["gateway"] / 2**20,
            "gateway_rss_after_mb": after["gateway"] / 2**20,
            "gateway_kb_per_conn": (after["gateway"] - before["gateway"]) / a.idle / 1024,
            "gateway_kb_per_conn_2nd_half": (after["gateway"] - mid["gateway"]) / second / 1024,
            "tree_rss_before_mb": before["tree"] / 2**20,
            "tree_rss_after_mb": after["tree"] / 2**20,
            "tree_kb_per_conn": (after["tree"] - before["tree"]) / a.idle / 1024,
            "rss_after_mb_by": {c: round(v / 2**20) for c, v in after["tree_by"].items()},
            "gateway_threads": [r["status"]["Threads"] for r in readings],
            "gateway_growth_mb_by": growth(before, after),
        }
        say(
            f"[{target.name}] idle: {a.idle:,} users signed up in {signup_s:.1f}s, then their"
            f" located websockets opened in {connect_s:.1f}s; gateway RSS"
            f" {result['gateway_rss_before_mb']:.0f} -> {mid['gateway'] / 2**20:.0f} ->"
            f" {result['gateway_rss_after_mb']:.0f} MB = {result['gateway_kb_per_conn']:.1f}"
            f" KB/connection ({result['gateway_kb_per_conn_2nd_half']:.1f} over the second"
            f" half; whole tree {result['tree_kb_per_conn']:.1f} KB); gateway growth MB by kind"
            f" {fmt(result['gateway_growth_mb_by'])}, threads"
            f" {' -> '.join(map(str, result['gateway_threads']))}"
        )
        # Closing 5,000 located sessions is work (unfollows, presence): let it finish first.
        waited = result["quiesce_after_close_s"] = await quiesce(target, pinning=self.pinning)
        say(f"[{target.name}] idle sockets closed; server quiet after {waited:.0f} s")
        return result

    async def warm_up(self, target: Target) -> None:
        """A fleet of ``IDLE_WARM`` located clients at the measured join's concurrency, closed
        again: one-time allocations (pools grown to what the join uses, executor threads,
        caches, imports on the first request) are not counted against the idle connections."""
        spots = place_clients(IDLE_WARM, 5)
        config = FleetConfig(clients=IDLE_WARM, senders_fraction=0.0, connect_concurrency=64)
        warm = Fleet(target.url, FeedWorkload(spots), config)
        try:
            await warm.connect()
        finally:
            await warm.close()

    async def idle_reading(self, target: Target) -> dict[str, Any]:
        """Once the server is quiet: RSS of the gateway process (with its /proc status and
        anonymous memory by kind) and of the whole tree (in all and by part)."""
        assert target.server.proc is not None
        pid = target.server.proc.pid
        await asyncio.sleep(self.args.settle)
        await quiesce(target, pinning=self.pinning)
        tree = tree_rss(target, pinning=self.pinning)
        return {
            "gateway": rss_of(pid),
            "status": rss_parts(pid),
            "anon": anon_by_kind(pid),
            "tree": sum(tree.values()),
            "tree_by": dict(sorted(tree.items())),
        }

    def extra_tables(self) -> list[str]:
        if not self.idle:
            return []
        names = [n for n in TARGETS if n in self.idle]
        rows = [(label, [self.idle[n][key] for n in names]) for label, key in IDLE_ROWS]
        return ["", table(rows, names)]

    def figures(self) -> dict[str, Any]:
        return super().figures() | {"idle": self.idle}

    def absorb(self, part: dict[str, Any]) -> None:
        super().absorb(part)
        self.idle |= part.get("idle", {})


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rooms", type=int, default=50, help="group rooms (clients dealt evenly)")
    add_load_flags(p, "messages")
    p.add_argument("--idle", type=int, default=5000, help="idle connections for RSS (0: skip)")
    p.add_argument("--settle", type=float, default=3.0, help="pause before reading RSS")
    add_run_flags(p, source_help="run `ours` from a snapshot of this git revision (HEAD)")
    args = finish_args(p.parse_args(argv))
    if args.quick:
        args.rooms = min(args.rooms, 5)
        args.idle, args.settle = min(args.idle, 500), 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    nofile = raise_fd_limit()
    say(f"machine: {fmt(machine())}, open files limit {nofile}")
    say(
        f"load: {args.clients} clients in {args.rooms} rooms,"
        f" {args.senders_fraction:.0%} senders, {args.rate:,.0f} messages/s for"
        f" {args.duration:.0f} s; idle connections {args.idle:,}"
    )
    if nofile < args.idle + args.clients + 1000:
        say(f"warning: open files limit {nofile} may be too low for {args.idle:,} idle sockets")
    return execute(ChatBench(args))


if __name__ == "__main__":
    raise SystemExit(main())
