"""The benchmark's load generator, briefly, against the real stack: it runs, stops by itself,
loses nothing and produces its figures. Timing values are measured, never asserted."""

from __future__ import annotations

import math
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bench import raw_broadcast
from bench.loadgen import check_loopback, percentile, run
from bench.report import result_rows, table
from bench.workloads import FeedWorkload, place_clients

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
            "setup_p50_ms": 1.0, "setup_p99_ms": 1.0, "cpu_pct_by": {}, "rss_peak_mb_by": {},
        }  # fmt: skip
    lines = bench.report().splitlines()
    header = next(line for line in lines if "ours/before" in line).split()
    assert header == ["raw", "before", "ours", "ours/raw", "before/raw", "ours/before"]
    p99 = next(line for line in lines if line.startswith("delivery p99 ms")).split()[-6:]
    assert p99 == ["2.0", "10.0", "5.0", "2.50", "5.00", "0.50"]
    with pytest.raises(SystemExit, match="baseline-rev"):
        parse(["--targets", "before"])
