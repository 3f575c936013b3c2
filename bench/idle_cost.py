"""What the stack costs doing nothing: the server CPU of an idle deployment, by part.

One deployment as the fanout benchmarks start it (embedded Postgres and Redis, a local Ray, the
gateway; the same environment, bench/targets.py), pinned to one CPU as they pin it, with nobody
connected. After ``--settle`` seconds (start-up work done: migrations, the first sweeps, Ray's
workers warm), the CPU of every process of its tree is read over ``--windows`` windows of
``--window`` seconds each, and printed per part (gateway, shards, notifier, Ray workers, Ray
system, Postgres, Redis) and for the busiest processes.

This is the floor under every per-core figure: a rate's "server CPU %" includes it, so at low
rates it is a large share of what a message or a checkout seems to cost (docs/benchmarks.md).

    python -m bench.idle_cost                         # 40 s settle, 2 windows of 20 s
    python -m bench.idle_cost --quick                 # 15 s settle, 1 window of 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import Pinning, TreeMeter, choose_pinning, machine
from bench.targets import make_target


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.idle_cost", description=__doc__)
    p.add_argument("--settle", type=float, default=40.0, help="seconds after start, unmeasured")
    p.add_argument("--window", type=float, default=20.0, help="seconds a window measures")
    p.add_argument("--windows", type=int, default=2)
    p.add_argument("--top", type=int, default=8, help="busiest processes to print per window")
    p.add_argument("--quick", action="store_true", help="15 s settle, one window of 5 s")
    p.add_argument("--cpus", metavar="SERVER,LOADGEN", help="as the fanout benchmarks' (0,1)")
    p.add_argument("--unpinned", action="store_true")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.settle, args.window, args.windows = 15.0, 5.0, 1
    return args


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:90]


async def _window(pid: int, data_dir: Path, pinning: Pinning | None, args: Any) -> dict[str, Any]:
    meter = TreeMeter(pid, data_dir=data_dir, pinning=pinning)
    async with meter:
        await asyncio.sleep(args.window)
    report = meter.report()
    busiest = sorted(
        ((last - first, part, p) for p, (part, first, last) in meter.cpu.items()), reverse=True
    )[: args.top]
    return {
        "cpu_pct": round(report["cpu_pct"], 2),
        "cpu_pct_by": {
            part: round(100 * s / args.window, 2) for part, s in report["cpu_s_by"].items()
        },
        "processes": report["processes"],
        "busiest": [
            {"pct": round(100 * s / args.window, 2), "part": part, "pid": p, "cmd": _command(p)}
            for s, part, p in busiest
        ],
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    pinning, note = choose_pinning(args.cpus, args.unpinned)
    print(note, flush=True)
    root = Path(tempfile.mkdtemp(prefix="hl-bench-idle-"))
    target = make_target("ours", root, None, {}, cpus=pinning.server if pinning else None)
    windows: list[dict[str, Any]] = []
    try:
        await target.server.start()
        assert target.server.proc is not None
        print(f"[ours] up on {target.url}; settling {args.settle:.0f} s", flush=True)
        await asyncio.sleep(args.settle)
        for i in range(args.windows):
            found = await _window(target.server.proc.pid, target.data_dir, pinning, args)
            windows.append(found)
            parts = ", ".join(f"{k} {v:.1f}" for k, v in found["cpu_pct_by"].items())
            print(f"window {i + 1}: {found['cpu_pct']:.1f} % of a core ({parts})", flush=True)
            for row in found["busiest"]:
                print(f"  {row['pct']:5.2f} %  {row['part']:<12} {row['cmd']}")
    finally:
        code, left = await target.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {"machine": machine(), "pinning": note, "windows": windows, "exit": code,
            "left_running": left}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    result = asyncio.run(_run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result["exit"] != 0 or result["left_running"]:
        print(f"the stack stopped with {result['exit']}, left {result['left_running']}")
        return 1
    return 0 if result["windows"] else 1


if __name__ == "__main__":
    sys.exit(main())
