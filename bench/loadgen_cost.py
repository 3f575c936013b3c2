"""What the load generator itself costs: its CPU per 10k messages against the raw baseline.

The fanout benchmarks' figures are only as good as their generator is cheap, so a change to it
(or to hyperlocal_client, whose ``Socket`` it builds on: docs/client.md) must not make it
dearer. This starts the raw broadcast server (bench/raw_broadcast.py) as a child process on a
free loopback port, connects the feed fleet of bench/loadgen.py to it, runs one warm-up phase
and then ``--runs`` measured phases, and prints for each the generator's own CPU (this
process's, the server's is apart) per 10k messages it handled (sends + replies + deliveries).
The server is stopped at the end, whatever happened. Compare two trees by running this in a
checkout of each, interleaved: on a loaded machine only the comparison means anything.

    python -m bench.loadgen_cost                 # 200 clients, 300 posts/s for 20 s, 3 runs
    python -m bench.loadgen_cost --quick         # a smoke run (a few seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import Fleet, FleetConfig
from bench.procs import ServerProcess, python_module
from bench.workloads import FeedWorkload, place_clients
from store.embedded import free_port


async def measure(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Warm up, then ``args.runs`` phases; each one's messages and CPU per 10k of them."""
    spots = place_clients(args.clients, args.cells)
    fleet = Fleet(url, FeedWorkload(spots), FleetConfig(clients=args.clients))
    await fleet.connect()
    out = []
    try:
        await fleet.run_phase(args.rate / 3, 2.0, 5.0)
        for _ in range(args.runs):
            phase = await fleet.run_phase(args.rate, args.seconds, 10.0)
            messages = phase.sent + phase.replies + phase.matched + phase.duplicates
            out.append({
                "sent": phase.sent, "replies": phase.replies, "delivered": phase.matched,
                "loss": phase.expected - phase.matched, "cpu_s": round(phase.loadgen_cpu_s, 3),
                "cpu_ms_per_10k_messages": round(1e7 * phase.loadgen_cpu_s / max(messages, 1), 1),
            })  # fmt: skip
    finally:
        await fleet.close()
    return out


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="hl-lg-cost-")) / "raw.log"
    argv = python_module("bench.raw_broadcast", "--port", str(port))
    server = ServerProcess("raw", argv, dict(os.environ), "raw broadcast on", log)
    await server.start(60)
    try:
        return await measure(f"http://127.0.0.1:{port}", args)
    finally:
        await server.stop(30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--cells", type=int, default=10)
    p.add_argument("--rate", type=float, default=300.0, help="offered posts per second")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.cells, args.rate, args.seconds, args.runs = 40, 4, 60.0, 2.0, 1
    results = asyncio.run(run(args))
    for result in results:
        print(json.dumps(result))
    return 0 if all(r["loss"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
