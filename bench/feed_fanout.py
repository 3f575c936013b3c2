"""Feed fanout benchmark: the real stack against the raw aiohttp broadcast, in one run.

For each target — ``raw`` (bench/raw_broadcast.py) and ``ours`` (``hyperlocal up`` on a fresh
temp data dir: embedded Postgres, Redis, local Ray, the gateway) — it starts the server as a
child process on a free loopback port, connects the same fleet (bench/loadgen.py: clients spread
over H3 cells, ``locate``, a fraction posting at a fixed offered rate), runs a short warm-up, then
the measured phase while sampling the server's process tree (CPU, RSS), and stops the server with
SIGINT, checking that it exits 0 and leaves no Postgres or Redis behind. ``--search`` adds a step
search for the highest offered rate that keeps p99 delivery <= 250 ms with zero loss. The run
itself is bench/runner.py's, shared with bench/chat_fanout.py; this module gives the workload.
``--baseline-rev REV`` adds the target ``before``: ``ours`` from a ``git archive`` of ``REV``,
measured the same way and reported next to ``ours`` (``ours/before``, ``before/raw``).
Per core by default: every server process and thread of a target on CPU 0, the load generator on
CPU 1 (bench/runner.py; ``--unpinned`` for the old way); each step reports the server's CPU by
part and its CPU µs per delivered event.

    python -m bench.feed_fanout                      # 1000 clients, 50 cells, 10% senders, 20 s
    python -m bench.feed_fanout --quick              # a smoke run (about a minute)
    python -m bench.feed_fanout --quick --unpinned   # the same, server and generator unpinned
    python -m bench.feed_fanout --search             # plus the step search, both targets
    python -m bench.feed_fanout --source HEAD --baseline-rev HEAD~1 --search   # before/after
"""

from __future__ import annotations

import argparse

from bench.loadgen import Fleet, FleetConfig
from bench.procs import machine
from bench.report import fmt
from bench.runner import Bench, add_load_flags, add_run_flags, execute, finish_args, say
from bench.workloads import FeedWorkload, place_clients


class FeedBench(Bench):
    """The shared run with the feed workload: posts to the H3 neighbourhood of the sender."""

    def fleet(self, url: str) -> Fleet:
        a = self.args
        spots = place_clients(a.clients, a.cells, spread=a.spread)
        config = FleetConfig(clients=a.clients, senders_fraction=a.senders_fraction)
        return Fleet(url, FeedWorkload(spots), config)

    def joined(self, connect_s: float) -> str:
        return f"{self.args.clients} clients connected in {connect_s:.1f}s"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--cells", type=int, default=50, help="home cells (disjoint neighbourhoods)")
    add_load_flags(p, "posts")
    p.add_argument("--spread", choices=("ring", "cell"), default="ring")
    add_run_flags(
        p,
        source_help="run `ours` from a snapshot of this git revision (e.g. HEAD), not the working"
        " tree",
        env_help="(experiments: HL_GROUP_COMMIT_MS=5, ...)",
    )
    args = finish_args(p.parse_args(argv))
    if args.quick:
        args.cells = min(args.cells, 10)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    say(f"machine: {fmt(machine())}")
    say(
        f"load: {args.clients} clients over {args.cells} cells ({args.spread}),"
        f" {args.senders_fraction:.0%} senders, {args.rate:,.0f} posts/s for {args.duration:.0f} s"
    )
    return execute(FeedBench(args))


if __name__ == "__main__":
    raise SystemExit(main())
