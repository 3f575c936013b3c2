"""Feed fanout benchmark: the real stack against the raw aiohttp broadcast, in one run.

For each target — ``raw`` (bench/raw_broadcast.py) and ``ours`` (``hyperlocal up`` on a fresh
temp data dir: embedded Postgres, Redis, local Ray, the gateway) — it starts the server as a
child process on a free loopback port, connects the same fleet (bench/loadgen.py: clients spread
over H3 cells, ``locate``, a fraction posting at a fixed offered rate), runs a short warm-up, then
the measured phase while sampling the server's process tree (CPU, RSS), and stops the server with
SIGINT, checking that it exits 0 and leaves no Postgres or Redis behind. ``--search`` adds a step
search for the highest offered rate that keeps p99 delivery <= 250 ms with zero loss.

    python -m bench.feed_fanout                      # 1000 clients, 50 cells, 10% senders, 20 s
    python -m bench.feed_fanout --quick              # a smoke run (about a minute)
    python -m bench.feed_fanout --search             # plus the step search, both targets
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.loadgen import Fleet, FleetConfig
from bench.procs import ServerProcess, TreeMeter, machine, python_module
from bench.report import fmt, result_rows, table
from bench.workloads import FeedWorkload, place_clients
from store.embedded import free_port

P99_LIMIT_MS = 250.0
TARGETS = ("raw", "ours")


@dataclass
class Target:
    name: str
    server: ServerProcess
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def snapshot(rev: str, root: Path) -> tuple[Path, str]:
    """Export commit ``rev`` of this repository into ``root/src``; (the tree, its full sha)."""
    repo = Path(__file__).resolve().parent.parent
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    dest = root / "src"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", sha], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest, sha


def make_target(name: str, root: Path, source: Path | None, extra_env: dict[str, str]) -> Target:
    port = free_port()
    data_dir = root / name
    data_dir.mkdir(parents=True)
    env = dict(os.environ)
    if source is not None:  # the gateway, and Ray's shard workers, import from this tree
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    if name == "raw":
        argv = python_module("bench.raw_broadcast", "--port", str(port))
        ready = "raw broadcast on"
    else:
        for var in ("RAY_ADDRESS", "DATABASE_URL", "REDIS_URL"):
            env.pop(var, None)
        env.update(
            HL_DATA_DIR=str(data_dir),
            HL_REST_RATE_PER_MIN="100000000",  # the fleet signs up from one address
            HL_WS_RATE_PER_S="100000",  # measure fanout, not the per-socket limiter
            HL_WS_RATE_BURST="100000",
            HL_ARGON2_TIME_COST="1",  # real argon2id, cheaper: the fleet signs up many users
            HL_ARGON2_MEMORY_KIB="8192",
        )
        env.update(extra_env)
        argv = python_module("cluster.cli", "--log-level", "WARNING", "up", "--port", str(port))
        ready = "hyperlocal gateway on"
    server = ServerProcess(name, argv, env, ready, data_dir / "server.log", cwd=source)
    return Target(name, server, port, data_dir)


def leftovers(data_dir: Path) -> list[int]:
    """Postgres or Redis processes still running on ``data_dir`` (there must be none)."""
    marker = str(data_dir)
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if marker in " ".join(p.info["cmdline"] or [])
    ]


class Bench:
    """One run: the same load and search against every target, then one report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, dict[str, Any]] = {}
        self.searches: dict[str, list[dict[str, Any]]] = {}
        self.sha = "working tree"

    def fleet(self, url: str) -> Fleet:
        a = self.args
        spots = place_clients(a.clients, a.cells, spread=a.spread)
        config = FleetConfig(clients=a.clients, senders_fraction=a.senders_fraction)
        return Fleet(url, FeedWorkload(spots), config)

    async def run(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="hl-bench-"))
        try:
            source = None
            if self.args.source:
                source, self.sha = snapshot(self.args.source, root)
                say(f"[ours] runs commit {self.sha[:12]} ({self.args.source}), from {source}")
            for name in self.args.targets:
                src = source if name == "ours" else None
                await self.measure(make_target(name, root, src, self.args.ours_env))
        finally:
            shutil.rmtree(root, ignore_errors=True)

    async def measure(self, target: Target) -> None:
        a = self.args
        say(f"[{target.name}] starting on {target.url}")
        await target.server.start()
        assert target.server.proc is not None
        fleet = self.fleet(target.url)
        try:
            started = time.perf_counter()
            await fleet.connect()
            connect_s = time.perf_counter() - started
            say(f"[{target.name}] {a.clients} clients connected in {connect_s:.1f}s; warming up")
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
            await fleet.close()
            code = await target.server.stop()
            left = leftovers(target.data_dir) if target.name == "ours" else []
            say(f"[{target.name}] stopped: exit {code}, leftover services {left or 'none'}")
            if code != 0 or left:
                raise RuntimeError(f"{target.name} did not stop cleanly (exit {code}, {left})")

    async def search(self, name: str, fleet: Fleet) -> list[dict[str, Any]]:
        """Grow the offered rate by ``--search-factor`` until a step fails, then bisect twice."""
        a = self.args
        steps: list[dict[str, Any]] = []

        async def step(rate: float) -> bool:
            result = (await fleet.run_phase(rate, a.search_duration, a.drain)).result()
            ok = passes(result)
            steps.append(result | {"pass": ok})
            say(f"[{name}] search {rate:,.0f}/s: {'pass' if ok else 'FAIL'} {summary(result)}")
            await asyncio.sleep(a.search_pause)  # let a backlog clear before the next step
            return ok

        good, bad = 0.0, None
        rate = a.search_start
        while rate <= a.search_max:
            if not await step(rate):
                bad = rate
                break
            good, rate = rate, rate * a.search_factor
        for _ in range(2 if bad is not None else 0):
            mid = round((good + bad) / 2) if good else round(bad / 2)  # type: ignore[operator]
            if await step(mid):
                good = mid
            else:
                bad = mid
        steps.append({"best": good, "limit_hit": bad is None})
        return steps

    def report(self) -> str:
        names = [n for n in TARGETS if n in self.results]
        header = [*names, "ours/raw"] if len(names) == 2 else names
        rows = []
        for label, _ in result_rows(next(iter(self.results.values()))):
            values = [dict(result_rows(self.results[n]))[label][0] for n in names]
            rows.append((label, values + ratio(values, len(names))))
        for label, key in (
            ("server CPU % (of 1 core)", "cpu_pct"),
            ("server CPU ms / 1k events", None),
            ("server RSS peak MB", "rss_peak_mb"),
            ("server processes", "processes"),
            ("connect+setup s (all)", "connect_s"),
            ("signup p50 ms", "signup_p50_ms"),
            ("locate p50 ms", "setup_p50_ms"),
            ("locate p99 ms", "setup_p99_ms"),
        ):
            values = [self.results[n][key] if key else cpu_per_k(self.results[n]) for n in names]
            rows.append((label, values + ratio(values, len(names))))
        for label, key in (("  CPU %", "cpu_pct_by"), ("  RSS MB", "rss_peak_mb_by")):
            parts = sorted({p for n in names for p in self.results[n][key]})
            for part in parts:
                values = [self.results[n][key].get(part, "-") for n in names]
                rows.append((f"{label} {part}", values))
        out = [table(rows, header)]
        for n, steps in self.searches.items():
            best = steps[-1]
            hit = " (search ceiling, not a failure)" if best["limit_hit"] else ""
            out.append(
                f"{n}: highest offered rate with p99 <= {P99_LIMIT_MS:.0f} ms and zero loss:"
                f" {best['best']:,.0f} posts/s{hit}"
            )
        if len(self.searches) == 2 and self.searches["raw"][-1]["best"]:
            share = self.searches["ours"][-1]["best"] / self.searches["raw"][-1]["best"]
            out.append(f"ours/raw sustainable rate: {share:.2f}")
        return "\n".join(out)


def passes(result: dict[str, Any]) -> bool:
    return (
        result["loss"] == 0
        and not result["errors"]
        and result["no_reply"] == 0
        and result["delivery_p99_ms"] <= P99_LIMIT_MS
    )


def cpu_per_k(result: dict[str, Any]) -> float:
    events = result["delivered"]
    return 1e6 * result["cpu_s"] / events if events else float("nan")


def ratio(values: list[Any], n: int) -> list[Any]:
    if n != 2:
        return []
    raw, ours = values
    if isinstance(raw, int | float) and isinstance(ours, int | float) and raw:
        return [f"{ours / raw:.2f}"]
    return [""]


def summary(result: dict[str, Any]) -> str:
    return (
        f"delivered {result['delivered_per_s']:,.0f}/s, p50 {result['delivery_p50_ms']:.1f} ms,"
        f" p99 {result['delivery_p99_ms']:.1f} ms, ack p99 {result['ack_p99_ms']:.1f} ms,"
        f" loss {result['loss']}, errors {result['errors'] or 0},"
        f" loadgen CPU {result['loadgen_cpu_pct']:.0f}%,"
        f" send lag p99 {result['send_lag_p99_ms']:.0f} ms"
    )


def say(text: str) -> None:
    print(text, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--cells", type=int, default=50, help="home cells (disjoint neighbourhoods)")
    p.add_argument("--senders-fraction", type=float, default=0.1)
    p.add_argument("--rate", type=float, default=200.0, help="offered posts/s (all senders)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--drain", type=float, default=10.0, help="max wait for late replies/events")
    p.add_argument("--spread", choices=("ring", "cell"), default="ring")
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--search", action="store_true", help="step search for the p99/loss limit")
    p.add_argument("--search-start", type=float, default=100.0)
    p.add_argument("--search-factor", type=float, default=1.5)
    p.add_argument("--search-max", type=float, default=20000.0)
    p.add_argument("--search-duration", type=float, default=6.0)
    p.add_argument("--search-pause", type=float, default=2.0)
    p.add_argument(
        "--source",
        metavar="REV",
        help="run `ours` from a snapshot of this git revision (e.g. HEAD), not the working tree",
    )
    p.add_argument(
        "--ours-env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra environment for `ours` (experiments: HL_GROUP_COMMIT_MS=5, ...)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    args.ours_env = dict(item.split("=", 1) for item in args.ours_env)
    if args.quick:
        args.clients, args.cells, args.rate = min(args.clients, 100), min(args.cells, 10), 50.0
        args.duration, args.warmup, args.drain = 5.0, 1.0, 5.0
        args.search_duration, args.search_max = 3.0, 400.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    say(f"machine: {fmt(machine())}")
    say(
        f"load: {args.clients} clients over {args.cells} cells ({args.spread}),"
        f" {args.senders_fraction:.0%} senders, {args.rate:,.0f} posts/s for {args.duration:.0f} s"
    )
    bench = Bench(args)
    asyncio.run(bench.run())
    print()
    print(bench.report())
    if args.json:
        doc = {"machine": machine(), "commit": bench.sha}
        doc |= {"args": vars(args) | {"json": str(args.json)}}
        doc |= {"results": bench.results, "searches": bench.searches}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    ok = all(r["loss"] == 0 for r in bench.results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
