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
Redis behind. ``--source HEAD`` runs ``ours`` from a ``git archive`` of that commit.

    python -m bench.chat_fanout --source HEAD --search --json chat.json   # the full run
    python -m bench.chat_fanout --quick                                   # smoke run (~2 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

import psutil

from bench.chat_workload import ChatWorkload
from bench.feed_fanout import (
    P99_LIMIT_MS,
    TARGETS,
    Bench,
    Target,
    cpu_per_k,
    leftovers,
    ratio,
    say,
    summary,
)
from bench.loadgen import Fleet, FleetConfig
from bench.procs import TreeMeter, machine
from bench.report import fmt, result_rows, table
from bench.workloads import FeedWorkload, place_clients


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
    """The feed bench's run/search machinery with the chat workload and the idle measurement."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.idle: dict[str, dict[str, Any]] = {}
        self.workloads: dict[str, ChatWorkload] = {}

    def fleet(self, url: str) -> Fleet:
        a = self.args
        workload = ChatWorkload(a.clients, a.rooms)
        config = FleetConfig(clients=a.clients, senders_fraction=a.senders_fraction)
        return Fleet(url, workload, config)

    async def measure(self, target: Target) -> None:
        a = self.args
        say(f"[{target.name}] starting on {target.url}")
        await target.server.start()
        assert target.server.proc is not None
        fleet: Fleet | None = None
        try:
            if a.idle:
                self.idle[target.name] = await self.measure_idle(target)
            fleet = self.fleet(target.url)
            started = time.perf_counter()
            await fleet.connect()
            connect_s = time.perf_counter() - started
            say(
                f"[{target.name}] {a.clients} clients in {a.rooms} rooms joined in"
                f" {connect_s:.1f}s; warming up"
            )
            await fleet.run_phase(min(a.rate, 50.0), a.warmup, a.drain)
            meter = TreeMeter(target.server.proc.pid, target.data_dir)
            async with meter:
                phase = await fleet.run_phase(a.rate, a.duration, a.drain)
            result = phase.result() | meter.report() | fleet.join_report()
            result["connect_s"] = connect_s
            self.results[target.name] = result
            say(f"[{target.name}] {summary(result)}")
            if a.search:
                self.searches[target.name] = await self.search(target.name, fleet)
        finally:
            if fleet is not None:
                await fleet.close()
            code = await target.server.stop()
            left = leftovers(target.data_dir) if target.name == "ours" else []
            say(f"[{target.name}] stopped: exit {code}, leftover services {left or 'none'}")
            if code != 0 or left:
                raise RuntimeError(f"{target.name} did not stop cleanly (exit {code}, {left})")

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

    def report(self) -> str:
        names = [n for n in TARGETS if n in self.results]
        header = [*names, "ours/raw"] if len(names) == 2 else names
        rows = []
        for label, _ in result_rows(next(iter(self.results.values()))):
            values = [dict(result_rows(self.results[n]))[label][0] for n in names]
            label = label.replace("posts/s", "messages/s")
            rows.append((label, values + ratio(values, len(names))))
        for label, key in (
            ("server CPU % (of 1 core)", "cpu_pct"),
            ("server CPU ms / 1k events", None),
            ("server RSS peak MB", "rss_peak_mb"),
            ("server processes", "processes"),
            ("join (all clients) s", "connect_s"),
            ("signup p50 ms", "signup_p50_ms"),
            ("locate p50 ms", "setup_p50_ms"),
            ("locate p99 ms", "setup_p99_ms"),
            ("room.create + subscribe (all) ms", "prepare_p50_ms"),
        ):
            values = [self.results[n][key] if key else cpu_per_k(self.results[n]) for n in names]
            rows.append((label, values + ratio(values, len(names))))
        for label, key in (("  CPU %", "cpu_pct_by"), ("  RSS MB", "rss_peak_mb_by")):
            parts = sorted({p for n in names for p in self.results[n][key]})
            for part in parts:
                values = [self.results[n][key].get(part, "-") for n in names]
                rows.append((f"{label} {part}", values))
        out = [table(rows, header)]
        if self.idle:
            idle_names = [n for n in TARGETS if n in self.idle]
            idle_rows = [
                (label, [self.idle[n][key] for n in idle_names])
                for label, key in (
                    ("idle connections", "connections"),
                    ("still open when measured", "open_at_measure"),
                    ("join time s", "connect_s"),
                    ("gateway RSS before MB", "gateway_rss_before_mb"),
                    ("gateway RSS after MB", "gateway_rss_after_mb"),
                    ("gateway KB / idle connection", "gateway_kb_per_conn"),
                    ("whole tree KB / idle connection", "tree_kb_per_conn"),
                    ("tree RSS after MB by part", "rss_after_mb_by"),
                )
            ]
            out.append("")
            out.append(table(idle_rows, idle_names))
        for n, steps in self.searches.items():
            best = steps[-1]
            hit = " (search ceiling, not a failure)" if best["limit_hit"] else ""
            out.append(
                f"{n}: highest offered rate with p99 <= {P99_LIMIT_MS:.0f} ms and zero loss:"
                f" {best['best']:,.0f} messages/s{hit}"
            )
        if len(self.searches) == 2 and self.searches["raw"][-1]["best"]:
            share = self.searches["ours"][-1]["best"] / self.searches["raw"][-1]["best"]
            out.append(f"ours/raw sustainable rate: {share:.2f} (target >= 0.50)")
        return "\n".join(out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rooms", type=int, default=50, help="group rooms (clients dealt evenly)")
    p.add_argument("--senders-fraction", type=float, default=0.1)
    p.add_argument("--rate", type=float, default=200.0, help="offered messages/s (all senders)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--drain", type=float, default=10.0, help="max wait for late replies/events")
    p.add_argument("--idle", type=int, default=5000, help="idle connections for RSS (0: skip)")
    p.add_argument("--settle", type=float, default=3.0, help="pause before reading RSS")
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--search", action="store_true", help="step search for the p99/loss limit")
    p.add_argument("--search-start", type=float, default=100.0)
    p.add_argument("--search-factor", type=float, default=1.5)
    p.add_argument("--search-max", type=float, default=20000.0)
    p.add_argument("--search-duration", type=float, default=6.0)
    p.add_argument("--search-pause", type=float, default=2.0)
    p.add_argument("--source", metavar="REV", help="run `ours` from this git revision (HEAD)")
    p.add_argument(
        "--ours-env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra environment for `ours` (experiments)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    args.ours_env = dict(item.split("=", 1) for item in args.ours_env)
    if args.quick:
        args.clients, args.rooms, args.rate = min(args.clients, 100), min(args.rooms, 5), 50.0
        args.duration, args.warmup, args.drain = 5.0, 1.0, 5.0
        args.idle, args.settle = min(args.idle, 500), 1.0
        args.search_duration, args.search_max = 3.0, 400.0
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
    bench = ChatBench(args)
    asyncio.run(bench.run())
    print()
    print(bench.report())
    if args.json:
        doc = {"machine": machine(), "commit": bench.sha}
        doc |= {"args": vars(args) | {"json": str(args.json)}}
        doc |= {"results": bench.results, "searches": bench.searches, "idle": bench.idle}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    ok = all(r["loss"] == 0 for r in bench.results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
