"""The run shared by the fanout benchmarks (bench/feed_fanout.py, bench/chat_fanout.py).

``Bench`` takes every target of ``--targets`` in turn (bench/targets.py): start it, run the
subclass's ``before_load`` (the chat bench measures idle connections there), connect the fleet
of the subclass's workload, warm up, measure one phase while sampling the server's process tree,
optionally run the step search on the same fleet, then stop the target. The run fails unless
every target exits 0 and leaves no Postgres or Redis behind. ``report`` builds the comparison
table, one column per target and one per ratio of two targets (``RATIOS``); a subclass names its
unit (posts, messages) and adds rows or tables.

Before and after in one run: ``--baseline-rev REV`` adds the target ``before``, the same stack as
``ours`` from a ``git archive`` of ``REV``, measured with the same load, flags, ``--ours-env`` and
method (its own fresh load-generator process), between ``raw`` and ``ours``; the report puts it
next to them with ``ours/before`` and ``before/raw``, the JSON under ``results.before`` (and
``baseline_commit``). Both revisions are resolved to commits once, when the run starts::

    python -m bench.chat_fanout --source HEAD --baseline-rev HEAD~1 --json chat.json

Per core (the default with two cores or more; bench/procs.py ``Pinning``): the **whole server
side of every target** runs on CPU 0 — for ``ours`` every process of the deployment, found from
the process tree of the ``hyperlocal up`` child (gateway, Ray's GCS, raylet and agents, the Ray
workers hosting the shard actors, Postgres and its backends, Redis), for ``raw`` its one
process — and the **load generator** (this process, and each per-target child, every thread) on
CPU 1. A server is started with its affinity already set (its children inherit it); every
sample of its tree sets it again on every thread (Ray and Postgres start processes and threads
lazily) and a step that found a thread elsewhere says so. ``--unpinned`` keeps the old way (for
reference); ``--cpus S,L`` picks other CPUs. Each step reports the server's CPU by part and the
**server CPU µs per delivery** (server CPU time / delivered events), in all and by part.

``add_load_flags`` and ``add_run_flags`` declare the flags both benchmarks share; ``finish_args``
applies ``--quick`` to them. ``execute`` runs a bench, prints its report and writes ``--json``.

    python -m bench.chat_fanout --quick --source HEAD              # per core (pinned)
    python -m bench.chat_fanout --quick --source HEAD --unpinned   # the old way, both cores
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import Fleet
from bench.procs import (
    PARTS,
    Pinning,
    TreeMeter,
    choose_pinning,
    machine,
    pin_process,
    pinned_line,
    stray_warning,
)
from bench.report import result_rows, table
from bench.targets import DEFAULT_TARGETS, STACKS, TARGETS, Target, make_target, rev_parse, snapshot
from cluster import gcpolicy
from cluster.config import Settings
from hyperlocal_client import Api, ApiError

P99_LIMIT_MS = 250.0
OTHERS_WARN_PCT = 10
"""Warn when processes outside the run used more than this % of the server's CPU in a step."""
RATIOS = (("ours", "raw"), ("before", "raw"), ("ours", "before"))
"""The ratio columns of the report (numerator, denominator), when both targets were measured."""


class Bench:
    """One run: the same load and search against every target, then one report.

    A subclass gives ``fleet`` and ``joined``; the other hooks are optional.
    """

    unit = "posts"  # what a send is, in labels: "offered posts/s"
    connect_label = "connect+setup s (all)"
    extra_rows: tuple[tuple[str, str], ...] = ()  # (label, result key) after the standard ones
    share_note = ""  # after the ours/raw sustainable rate

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, dict[str, Any]] = {}
        self.searches: dict[str, list[dict[str, Any]]] = {}
        self.sweeps: dict[str, list[dict[str, Any]]] = {}
        self.pinned: dict[str, dict[str, Any]] = {}  # target -> what was pinned right after start
        self.sha: str = args.commits.get("ours", "working tree")  # what `ours` runs
        self.pinning: Pinning | None = args.pinning

    def fleet(self, url: str) -> Fleet:
        """The fleet of this benchmark's workload against ``url`` (not connected yet)."""
        raise NotImplementedError

    def joined(self, connect_s: float) -> str:
        """What connected, for the log line: ``100 clients connected in 1.2s``."""
        raise NotImplementedError

    async def before_load(self, target: Target) -> None:
        """Runs on the freshly started target, before the fleet connects."""

    async def run(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="hl-bench-"))
        try:
            for name in self.args.targets:
                source = None
                if name in STACKS and name in self.args.commits:
                    source, sha = snapshot(self.args.commits[name], root / f"src-{name}")
                    rev = self.revision(name)
                    given = f" ({rev})" if rev != sha else ""  # a child gets the full sha
                    say(f"[{name}] runs commit {sha[:12]}{given}, from {source}")
                cpus = self.pinning.server if self.pinning else None
                await self.measure(make_target(name, root, source, self.args.ours_env, cpus))
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def revision(self, name: str) -> str:
        """The revision target ``name`` runs as given on the command line (``HEAD``, a sha...)."""
        a = self.args
        rev = a.source if name == "ours" else a.baseline_rev if name == "before" else None
        return rev or "working tree"

    async def measure(self, target: Target) -> None:
        say(f"[{target.name}] starting on {target.url}")
        settle_gc()  # the same collector policy here for every target, first or not
        await target.server.start()
        fleet: Fleet | None = None
        try:
            self.pin_started(target)
            await self.before_load(target)
            fleet = self.fleet(target.url)
            await self.load(target, fleet)
        finally:
            if fleet is not None:
                await fleet.close()
            code, left = await target.stop()
            say(f"[{target.name}] stopped: exit {code}, leftover services {left or 'none'}")
            if code != 0 or left:
                raise RuntimeError(f"{target.name} did not stop cleanly (exit {code}, {left})")

    def meter(self, target: Target) -> TreeMeter:
        """A meter of ``target``'s process tree (pinning it, in a per-core run)."""
        assert target.server.proc is not None
        return TreeMeter(target.server.proc.pid, target.data_dir, self.pinning)

    def pin_started(self, target: Target) -> None:
        """Right after start: pin the whole tree once, and say which processes that was."""
        if self.pinning is None:
            return
        meter = self.meter(target)
        meter.pin_now()
        report = self.pinned[target.name] = meter.pinning_report()
        again = report["repinned_at_start"]
        moved = f"; {again} thread(s) were allowed elsewhere, set back" if again else ""
        say(f"[{target.name}] pinned {pinned_line(report)}{moved}")

    def measured(self, target: Target, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with the figures per delivery and, per core, what others used of the two
        CPUs; warns of threads found off their CPU and of a server CPU shared with others."""
        result |= per_delivery(result)
        if self.pinning is None:
            return result
        busy = result["core_busy_pct"]
        mine = {"server": result["cpu_pct"], "loadgen": result["loadgen_cpu_pct"]}
        result["others_pct"] = others = {
            role: max(0, round(sum(busy.get(c, 0) for c in cpus) - mine[role]))
            for role, cpus in (("server", self.pinning.server), ("loadgen", self.pinning.loadgen))
        }
        warning = stray_warning(result["pinning"])
        if warning:
            say(f"[{target.name}] {warning}")
        if others["server"] > OTHERS_WARN_PCT:
            say(
                f"[{target.name}] warning: processes outside this run used {others['server']}%"
                f" of the server's CPU during the step (the machine is not quiet)"
            )
        return result

    async def load(self, target: Target, fleet: Fleet) -> None:
        """Connect, warm up, measure one phase (and the step search) on ``fleet``."""
        a = self.args
        assert target.server.proc is not None
        started = time.perf_counter()
        await fleet.connect()
        connect_s = time.perf_counter() - started
        settle_gc()
        say(f"[{target.name}] {self.joined(connect_s)}; warming up")
        await fleet.run_phase(min(a.rate, 50.0), a.warmup, a.drain)
        async with self.meter(target) as meter:
            phase = await fleet.run_phase(a.rate, a.duration, a.drain)
        result = self.measured(target, phase.result() | meter.report() | fleet.join_report())
        result["connect_s"] = connect_s
        self.results[target.name] = result
        say(f"[{target.name}] {summary(result)}")
        say(f"[{target.name}]   {cpu_line(result)}")
        if a.sweep:
            self.sweeps[target.name] = [
                await self.step(target, fleet, rate, "sweep") for rate in a.sweep
            ]
        if a.search:
            self.searches[target.name] = await self.search(target, fleet)

    async def step(self, target: Target, fleet: Fleet, rate: float, what: str) -> dict[str, Any]:
        """One ``--search-duration`` phase at ``rate``, with the server's CPU by component."""
        a = self.args
        assert target.server.proc is not None
        before = await gauges(target.url)
        async with self.meter(target) as meter:
            phase = await fleet.run_phase(rate, a.search_duration, a.drain)
        result = self.measured(target, phase.result() | meter.report())
        after = await gauges(target.url)
        if "hl_router_shard_calls" in before and "hl_router_shard_calls" in after:
            calls = after["hl_router_shard_calls"] - before["hl_router_shard_calls"]
            commands = after["hl_router_shard_commands"] - before["hl_router_shard_commands"]
            result["shard_calls_per_s"] = calls / max(phase.wall_s, 1e-9)
            result["commands_per_call"] = commands / calls if calls else 0.0
        if "hl_gc_full_collections" in before and "hl_gc_full_collections" in after:
            # the gateway's collector in the step: its full collections stop the loop
            result["gateway_gc_full"] = (
                after["hl_gc_full_collections"] - before["hl_gc_full_collections"]
            )
            result["gateway_gc_pause_ms"] = 1000 * (
                after["hl_gc_full_pause_seconds"]
                - before["hl_gc_full_pause_seconds"]
                + after["hl_gc_young_pause_seconds"]
                - before["hl_gc_young_pause_seconds"]
            )
            result["gateway_gc_longest_ms"] = 1000 * after["hl_gc_longest_pause_seconds"]
        result["pass"] = passes(result)
        verdict = "pass" if result["pass"] else "FAIL"
        say(f"[{target.name}] {what} {rate:,.0f}/s: {verdict} {summary(result)}")
        say(f"[{target.name}]   {cpu_line(result)}")
        await asyncio.sleep(a.search_pause)  # let a backlog clear before the next step
        return result

    async def search(self, target: Target, fleet: Fleet) -> list[dict[str, Any]]:
        """Grow the offered rate by ``--search-factor`` until a step fails, then bisect twice."""
        a = self.args
        steps: list[dict[str, Any]] = []

        async def step(rate: float) -> bool:
            steps.append(await self.step(target, fleet, rate, "search"))
            return bool(steps[-1]["pass"])

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
        header = [*names, *(f"{a}/{b}" for a, b in ratio_pairs(names))]
        out = [*self.commit_lines(names), *self.pinning_lines(names)]
        out += [table(self.rows(names), header), *self.extra_tables()]
        return "\n".join(out + self.search_lines())

    def pinning_lines(self, names: list[str]) -> list[str]:
        """How the run was placed on the cores; per target, what was pinned and any stray."""
        out = [self.args.pinning_note]
        for n in names:
            pinning = self.results[n].get("pinning")
            if pinning is None:
                continue
            out.append(f"  {n}: {pinned_line(pinning)}")
            steps = [self.results[n], *self.searches.get(n, [])[:-1], *self.sweeps.get(n, [])]
            strays = sum(s["pinning"]["off_core_threads"] for s in steps if "pinning" in s)
            if strays:
                out.append(
                    f"  {n}: warning: {strays} thread(s) found off their CPU in measured"
                    " steps (set back; see the run's log)"
                )
        return out

    def commit_lines(self, names: list[str]) -> list[str]:
        """Which code each stack target ran, when a baseline makes it two (else: nothing)."""
        if "before" not in names:
            return []
        commits = self.args.commits
        return [
            f"{n}: {commits.get(n, 'working tree')[:12]} ({self.revision(n)})"
            for n in names
            if n in STACKS
        ]

    def rows(self, names: list[str]) -> list[tuple[str, list[Any]]]:
        """The comparison rows: load figures, server cost, join costs, cost per component."""
        rows = []
        for label, _ in result_rows(next(iter(self.results.values()))):
            values = [dict(result_rows(self.results[n]))[label][0] for n in names]
            label = label.replace("posts/s", f"{self.unit}/s")
            rows.append((label, values + ratios(names, values)))
        for label, key in (
            ("server CPU % (of 1 core)", "cpu_pct"),
            ("server CPU µs / delivery", "cpu_us_per_delivery"),
            ("server RSS peak MB", "rss_peak_mb"),
            ("server processes", "processes"),
            (self.connect_label, "connect_s"),
            ("signup p50 ms", "signup_p50_ms"),
            ("locate p50 ms", "setup_p50_ms"),
            ("locate p99 ms", "setup_p99_ms"),
            *self.extra_rows,
        ):
            values = [self.results[n][key] for n in names]
            rows.append((label, values + ratios(names, values)))
        for label, key in (
            ("  CPU %", "cpu_pct_by"),
            ("  µs / delivery", "cpu_us_per_delivery_by"),
            ("  RSS MB", "rss_peak_mb_by"),
        ):
            parts = [p for p in PARTS if any(p in self.results[n][key] for n in names)]
            for part in parts:
                values = [self.results[n][key].get(part, "-") for n in names]
                rows.append((f"{label} {part}", values + ratios(names, values)))
        cores = sorted({c for n in names for c in self.results[n].get("core_busy_pct", {})})
        for core in cores:
            values = [self.results[n].get("core_busy_pct", {}).get(core, "-") for n in names]
            rows.append((f"CPU {core} busy % (anyone's)", values))
        for role in ("server", "loadgen"):
            values = [self.results[n].get("others_pct", {}).get(role, "-") for n in names]
            if any(v != "-" for v in values):
                rows.append((f"  others' % on the {role} CPU", values))
        return rows

    def extra_tables(self) -> list[str]:
        """Lines printed between the comparison table and the search results."""
        return []

    def search_lines(self) -> list[str]:
        out = []
        legend = (
            f"(offered {self.unit}/s: verdict, p99 ms, server CPU % of a core,"
            " server CPU µs per delivery, by part)"
        )
        for n, steps in self.sweeps.items():
            out.append(f"{n} sweep {legend}:")
            out.extend(step_line(s) for s in steps)
        for n, steps in self.searches.items():
            out.append(f"{n} search {legend}:")
            out.extend(step_line(s) for s in steps[:-1])
        for n, steps in self.searches.items():
            best = steps[-1]
            hit = " (search ceiling, not a failure)" if best["limit_hit"] else ""
            at = [s for s in steps[:-1] if s["pass"] and s["offered_per_s"] == best["best"]]
            cost = f"; there {cpu_line(at[-1])}" if at else ""
            out.append(
                f"{n}: highest offered rate with p99 <= {P99_LIMIT_MS:.0f} ms and zero loss:"
                f" {best['best']:,.0f} {self.unit}/s{hit}{cost}"
            )
        best = {n: steps[-1]["best"] for n, steps in self.searches.items()}
        for a, b in ratio_pairs(list(best)):
            if best[b]:
                note = self.share_note if (a, b) == ("ours", "raw") else ""
                out.append(f"{a}/{b} sustainable rate: {best[a] / best[b]:.2f}{note}")
        return out

    def figures(self) -> dict[str, Any]:
        """What ``--json`` holds besides the machine, the commit and the arguments."""
        return {
            "results": self.results,
            "searches": self.searches,
            "sweeps": self.sweeps,
            "pinned_at_start": self.pinned,
        }

    def absorb(self, part: dict[str, Any]) -> None:
        """Take in the figures of a run that measured some of the targets (``figures``)."""
        self.results |= part["results"]
        self.searches |= part["searches"]
        self.sweeps |= part["sweeps"]
        self.pinned |= part.get("pinned_at_start", {})
        if part.get("commit") and part["commit"] != "working tree":
            self.sha = part["commit"]


def execute(bench: Bench) -> int:
    """Run ``bench``, print its report, write ``--json``; 0 unless a target lost events.

    With more than one target, each is measured by a **fresh load-generator process** (this
    module run again with ``--targets <one> --part-json``), one after the other: a generator
    that has just driven one target's whole search is not the same instrument as a fresh one
    (measured in one process: ours sustained 2,136 msgs/s measured after raw, 3,204 before it;
    docs/benchmarks.md), so neither target inherits the other's state. ``--one-process`` keeps
    them in this process (the old way). ``before`` is measured the same way as the others.
    """
    args = bench.args
    if args.part_json is None:
        say(args.pinning_note)
    if args.pinning is not None:  # this process is the load generator (or starts them)
        pin_process(os.getpid(), args.pinning.loadgen)
    if len(args.targets) > 1 and not args.one_process:
        code = 0
        for name in args.targets:
            code = max(code, measure_in_child(bench, name))
    else:
        asyncio.run(bench.run())
    if args.part_json:
        doc = {"commit": bench.sha} | bench.figures()
        args.part_json.write_text(json.dumps(doc, default=str))
        return 0 if all(r["loss"] == 0 for r in bench.results.values()) else 1
    print()
    print(bench.report())
    if args.json:
        doc = {"machine": machine(), "commit": bench.sha, "pinning": pinning_doc(args)}
        if "before" in args.commits:
            doc["baseline_commit"] = args.commits["before"]
        doc |= {"args": vars(args) | {"json": str(args.json)}}
        doc |= bench.figures()
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    ok = all(r["loss"] == 0 for r in bench.results.values())
    return 0 if ok else 1


def measure_in_child(bench: Bench, name: str) -> int:
    """Measure target ``name`` in a fresh process running this benchmark; absorb its figures.

    The child gets this run's arguments, then ``--targets name``, the revisions as the
    commits they were resolved to here (a branch or ``HEAD`` may move while the run lasts), and
    the CPUs chosen here (``--cpus``: the child starts on the load generator's CPU only, so it
    could not choose them itself).
    """
    main = sys.modules["__main__"].__spec__
    if main is None:
        raise RuntimeError("run the benchmark as a module: python -m bench.<name>")
    with tempfile.TemporaryDirectory(prefix="hl-bench-part-") as tmp:
        part = Path(tmp) / f"{name}.json"
        argv = [sys.executable, "-m", main.name, *sys.argv[1:]]
        argv += ["--targets", name, "--part-json", str(part)]
        for flag, target in (("--source", "ours"), ("--baseline-rev", "before")):
            if target in bench.args.commits:
                argv += [flag, bench.args.commits[target]]
        if bench.args.pinning is not None:
            argv += ["--cpus", bench.args.pinning.spec()]
        say(f"[{name}] measured by a fresh load-generator process")
        code = subprocess.run(argv, check=False).returncode
        if not part.exists():
            raise RuntimeError(f"the run measuring {name} failed (exit {code})")
        bench.absorb(json.loads(part.read_text()))
    return code


def settle_gc() -> None:
    """The load generator's own collector pauses would show as latency of whichever target it
    measures: once the fleet is connected, it takes the servers' policy (cluster/gcpolicy.py,
    at its defaults: freeze what is alive, collect rarely)."""
    gcpolicy.settle(Settings())


def passes(result: dict[str, Any]) -> bool:
    return (
        result["loss"] == 0
        and not result["errors"]
        and result["no_reply"] == 0
        and result["delivery_p99_ms"] <= P99_LIMIT_MS
    )


def per_delivery(result: dict[str, Any]) -> dict[str, Any]:
    """Server CPU µs per delivered event, in all and by part (``cpu_s_by``), and the load
    generator's; NaN (the total) or absent (parts) with nothing delivered."""
    events = result["delivered"]
    if not events:
        return {"cpu_us_per_delivery": math.nan, "cpu_us_per_delivery_by": {}}
    return {
        "cpu_us_per_delivery": 1e6 * result["cpu_s"] / events,
        "cpu_us_per_delivery_by": {
            part: round(1e6 * s / events, 1) for part, s in result["cpu_s_by"].items()
        },
    }


def pinning_doc(args: argparse.Namespace) -> dict[str, Any]:
    """The run's placement for ``--json``."""
    pin: Pinning | None = args.pinning
    if pin is None:
        return {"mode": "unpinned", "note": args.pinning_note}
    return {
        "mode": "pinned",
        "server_cpus": sorted(pin.server),
        "loadgen_cpus": sorted(pin.loadgen),
        "note": args.pinning_note,
    }


def ratio_pairs(names: list[str]) -> list[tuple[str, str]]:
    """The ``RATIOS`` whose two targets are both in ``names``."""
    return [(a, b) for a, b in RATIOS if a in names and b in names]


def ratios(names: list[str], values: list[Any]) -> list[Any]:
    """One row's ratio cells, for ``ratio_pairs(names)``; ``values`` go with ``names``."""
    by_name = dict(zip(names, values, strict=True))
    cells: list[Any] = []
    for a, b in ratio_pairs(names):
        top, bottom = by_name[a], by_name[b]
        numbers = isinstance(top, int | float) and isinstance(bottom, int | float)
        share = top / bottom if numbers and bottom else math.nan
        cells.append(f"{share:.2f}" if math.isfinite(share) else "")
    return cells


def summary(result: dict[str, Any]) -> str:
    return (
        f"delivered {result['delivered_per_s']:,.0f}/s, p50 {result['delivery_p50_ms']:.1f} ms,"
        f" p99 {result['delivery_p99_ms']:.1f} ms, ack p99 {result['ack_p99_ms']:.1f} ms,"
        f" loss {result['loss']}, errors {result['errors'] or 0},"
        f" loadgen CPU {result['loadgen_cpu_pct']:.0f}%,"
        f" send lag p99 {result['send_lag_p99_ms']:.0f} ms,"
        f" loadgen stall max {result.get('loadgen_stall_max_ms', float('nan')):.0f} ms"
    )


def cpu_line(result: dict[str, Any]) -> str:
    """Server CPU (% of one core) and µs per delivery, in all and by part; shard calls."""
    pct = ", ".join(f"{k} {v}" for k, v in result["cpu_pct_by"].items())
    us = ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_us_per_delivery_by"].items())
    line = (
        f"server CPU {result['cpu_pct']:.0f}% of a core ({pct});"
        f" {result['cpu_us_per_delivery']:.1f} µs per delivery ({us})"
    )
    if "core_busy_pct" in result:
        busy = ", ".join(f"{c} {v}%" for c, v in result["core_busy_pct"].items())
        line += f"; CPU busy {busy}"
    if "others_pct" in result:
        others = result["others_pct"]
        line += f" (others: {others['server']}% of the server's, {others['loadgen']}% of the"
        line += " generator's)"
    if "shard_calls_per_s" in result:
        line += (
            f", {result['shard_calls_per_s']:.0f} shard calls/s"
            f" of {result['commands_per_call']:.1f} commands"
        )
    if "gateway_gc_full" in result:
        line += (
            f"; gateway GC: {result['gateway_gc_full']:.0f} full collections,"
            f" {result['gateway_gc_pause_ms']:.0f} ms paused in all"
            f" (longest so far {result['gateway_gc_longest_ms']:.0f} ms)"
        )
    return line


def step_line(result: dict[str, Any]) -> str:
    """One step of a search or sweep, for the report (``search_lines``)."""
    verdict = "pass" if result.get("pass") else "FAIL"
    us = ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_us_per_delivery_by"].items())
    return (
        f"  {result['offered_per_s']:>8,.0f}: {verdict} p99 {result['delivery_p99_ms']:7.1f},"
        f" CPU {result['cpu_pct']:4.0f} %, {result['cpu_us_per_delivery']:6.1f} µs/delivery"
        f" ({us})"
    )


async def gauges(url: str) -> dict[str, float]:
    """The target's unlabelled Prometheus samples (``/metrics``); empty if it has none."""
    try:
        async with aiohttp.ClientSession() as http:
            text = await Api(url, http).text("/metrics")
    except (aiohttp.ClientError, ApiError):
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line.startswith("hl_") and "{" not in name:
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def say(text: str) -> None:
    print(text, flush=True)


# -- command line ----------------------------------------------------------------------------------
def add_load_flags(p: argparse.ArgumentParser, unit: str) -> None:
    """The offered load and its phases (after ``--clients`` and the cells/rooms flag)."""
    p.add_argument("--senders-fraction", type=float, default=0.1)
    p.add_argument("--rate", type=float, default=200.0, help=f"offered {unit}/s (all senders)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--drain", type=float, default=10.0, help="max wait for late replies/events")


def add_run_flags(
    p: argparse.ArgumentParser, *, source_help: str, env_help: str = "(experiments)"
) -> None:
    """Targets, smoke run, step search, what ``ours`` (and ``before``) runs, JSON output."""
    p.add_argument(
        "--targets",
        nargs="+",
        choices=TARGETS,
        default=list(DEFAULT_TARGETS),
        help="what to measure, in this order (default: raw ours; before: with --baseline-rev)",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--search", action="store_true", help="step search for the p99/loss limit")
    p.add_argument("--search-start", type=float, default=100.0)
    p.add_argument("--search-factor", type=float, default=1.5)
    p.add_argument(
        "--search-max", type=float, default=None, help="highest step (20,000; --quick: 400)"
    )
    p.add_argument("--search-duration", type=float, default=6.0)
    p.add_argument("--search-pause", type=float, default=2.0)
    p.add_argument(
        "--sweep",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[],
        metavar="R1,R2,...",
        help="also run one --search-duration step at each of these rates (server CPU by part)",
    )
    p.add_argument("--source", metavar="REV", help=source_help)
    p.add_argument(
        "--baseline-rev",
        metavar="REV",
        help="also measure `before`: `ours` from a snapshot of this git revision, same load and"
        " method, reported next to `ours` (ours/before, before/raw)",
    )
    p.add_argument(
        "--ours-env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help=f"extra environment for `ours` and `before` {env_help}",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--one-process",
        action="store_true",
        help="measure every target from this process (default: a fresh one per target)",
    )
    p.add_argument(
        "--unpinned",
        action="store_true",
        help="let the server and the load generator use every core (the old way, for"
        " reference; default: the server on one core, the load generator on another)",
    )
    p.add_argument(
        "--cpus",
        metavar="SERVER,LOADGEN",
        help="the CPU of the whole server side and of the load generator (default: the first"
        " two this process may use, e.g. 0,1; a range like 2-3 for either)",
    )
    p.add_argument("--part-json", type=Path, help=argparse.SUPPRESS)  # a per-target child


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """``--ours-env`` as a dict; the revisions as commits (``args.commits``: stack target to
    full sha); ``before`` among the targets with ``--baseline-rev`` (just ahead of ``ours``);
    ``--quick`` shrinks the shared flags (the caller its own)."""
    args.ours_env = dict(item.split("=", 1) for item in args.ours_env)
    try:
        args.pinning, args.pinning_note = choose_pinning(args.cpus, args.unpinned)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    args.commits = {}
    for target, rev in (("ours", args.source), ("before", args.baseline_rev)):
        if rev:
            try:
                args.commits[target] = rev_parse(rev)
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None
    if "before" in args.targets and not args.baseline_rev:
        raise SystemExit("error: the target `before` needs --baseline-rev REV")
    if args.baseline_rev and "before" not in args.targets and args.part_json is None:
        at = args.targets.index("ours") if "ours" in args.targets else len(args.targets)
        args.targets = [*args.targets[:at], "before", *args.targets[at:]]
    if args.quick:
        args.clients, args.rate = min(args.clients, 100), 50.0
        args.duration, args.warmup, args.drain = 5.0, 1.0, 5.0
        args.search_duration = 3.0
    if args.search_max is None:
        args.search_max = 400.0 if args.quick else 20000.0
    return args
