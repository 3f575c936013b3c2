"""Chat fanout benchmark: group rooms on the real stack against the raw aiohttp broadcast, one run.

For each target — ``raw`` (bench/raw_broadcast.py, in-process broadcast speaking the same chat
frames) and ``ours`` (``hyperlocal up`` on a fresh temp data dir: embedded Postgres, Redis, local
Ray, the gateway) — it starts the server as a child process on a free loopback port and:

1. **Idle connections** (``--idle``, 5,000 by default): that many clients sign up, open an
   authenticated websocket and ``locate`` (no other traffic); the gateway process's RSS before
   and after (settled) gives the memory per idle connection. They are then closed.
2. **Chat fanout**: 1,000 clients (bench/chat_workload.py) in 50 group rooms of 20 — each room
   created with ``room.create`` by its first member after ``locate``, every member subscribed to
   ``room:<id>`` — 10 % of them sending ``chat.send`` at a fixed total offered rate, open loop
   (bench/loadgen.py), 3 s warm-up then 20 s measured while the server's process tree is sampled
   (CPU, RSS). Every member of the room, the sender included, must get each acked message once.
3. ``--search``: the highest offered rate that keeps p99 delivery <= 250 ms with zero loss.

The server is stopped with SIGINT; the run fails unless it exits 0 and leaves no Postgres or
Redis behind. ``--source HEAD`` runs ``ours`` from a ``git archive`` of that commit;
``--baseline-rev REV`` adds the target ``before``, the same stack from a ``git archive`` of
``REV``, measured exactly like ``ours`` (same load, steps, flags; its own fresh load-generator
process) and reported next to it (``ours/before``, ``before/raw``; JSON ``results.before``), so one
run shows a change before and after. Steps 2-3 and the stop are bench/runner.py's, shared with
bench/feed_fanout.py; this module adds step 1.

    python -m bench.chat_fanout --source HEAD --search --json chat.json   # the full run
    python -m bench.chat_fanout --quick                                   # smoke run (~2 min)
    python -m bench.chat_fanout --source HEAD --baseline-rev main --search --json chat.json
    python -m bench.chat_fanout --quick --source HEAD --baseline-rev HEAD~1   # before/after smoke
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from typing import Any

import psutil

from bench.chat_workload import ChatWorkload
from bench.loadgen import Fleet, FleetConfig
from bench.procs import TreeMeter, machine
from bench.report import fmt, table
from bench.runner import Bench, add_load_flags, add_run_flags, execute, finish_args, say
from bench.targets import TARGETS, Target
from bench.workloads import FeedWorkload, place_clients

IDLE_ROWS = (
    ("idle connections", "connections"),
    ("still open when measured", "open_at_measure"),
    ("join time s", "connect_s"),
    ("gateway RSS before MB", "gateway_rss_before_mb"),
    ("gateway RSS after MB", "gateway_rss_after_mb"),
    ("gateway KB / idle connection", "gateway_kb_per_conn"),
    ("whole tree KB / idle connection", "tree_kb_per_conn"),
    ("tree RSS after MB by part", "rss_after_mb_by"),
)


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; child servers inherit it. The new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 16)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_of(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def tree_rss(target: Target) -> dict[str, int]:
    assert target.server.proc is not None
    meter = TreeMeter(target.server.proc.pid, target.data_dir)
    meter.sample()
    return meter.rss_samples[-1]


async def quiesce(target: Target, below_pct: float = 20.0, max_s: float = 90.0) -> float:
    """Wait until the server's tree uses < ``below_pct`` % of a core over 1 s; seconds waited."""
    assert target.server.proc is not None
    started = time.perf_counter()
    while time.perf_counter() - started < max_s:
        meter = TreeMeter(target.server.proc.pid, target.data_dir)
        async with meter:
            await asyncio.sleep(1.0)
        if float(meter.report()["cpu_pct"]) < below_pct:  # type: ignore[arg-type]
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
        """Gateway RSS before and after ``--idle`` authenticated, located, silent websockets."""
        a = self.args
        assert target.server.proc is not None
        pid = target.server.proc.pid
        # A small fleet first, closed again: one-time allocations (pools, caches, imports on the
        # first request) are not counted against the idle connections.
        warm = Fleet(target.url, FeedWorkload(place_clients(50, 5)), FleetConfig(clients=50))
        try:
            await warm.connect()
        finally:
            await warm.close()
        await asyncio.sleep(a.settle)
        await quiesce(target)
        before, tree_before = rss_of(pid), tree_rss(target)
        spots = place_clients(a.idle, a.rooms)
        config = FleetConfig(clients=a.idle, senders_fraction=0.0, connect_concurrency=64)
        fleet = Fleet(target.url, FeedWorkload(spots), config)
        started = time.perf_counter()
        try:
            await fleet.connect()
            connect_s = time.perf_counter() - started
            await asyncio.sleep(a.settle)
            await quiesce(target)
            after, tree_after = rss_of(pid), tree_rss(target)
            open_sockets = sum(1 for c in fleet.clients if c.closed_code is None)
        finally:
            await fleet.close()
        result = {
            "connections": a.idle,
            "open_at_measure": open_sockets,
            "connect_s": connect_s,
            "gateway_rss_before_mb": before / 2**20,
            "gateway_rss_after_mb": after / 2**20,
            "gateway_kb_per_conn": (after - before) / a.idle / 1024,
            "tree_rss_before_mb": sum(tree_before.values()) / 2**20,
            "tree_rss_after_mb": sum(tree_after.values()) / 2**20,
            "tree_kb_per_conn": (sum(tree_after.values()) - sum(tree_before.values()))
            / a.idle
            / 1024,
            "rss_after_mb_by": {c: round(v / 2**20) for c, v in sorted(tree_after.items())},
        }
        say(
            f"[{target.name}] idle: {a.idle:,} located websockets in {connect_s:.1f}s; gateway RSS"
            f" {result['gateway_rss_before_mb']:.0f} -> {result['gateway_rss_after_mb']:.0f} MB"
            f" = {result['gateway_kb_per_conn']:.1f} KB/connection"
            f" (whole tree {result['tree_kb_per_conn']:.1f} KB)"
        )
        # Closing 5,000 located sessions is work (unfollows, presence): let it finish first.
        waited = result["quiesce_after_close_s"] = await quiesce(target)
        say(f"[{target.name}] idle sockets closed; server quiet after {waited:.0f} s")
        return result

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
