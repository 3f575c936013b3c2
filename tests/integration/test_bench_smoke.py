"""The benchmark's load generator, briefly, against the real stack: it runs, stops by itself,
loses nothing and produces its figures. Timing values are measured, never asserted."""

from __future__ import annotations

import math

import pytest
from aiohttp.test_utils import TestServer

from bench.loadgen import run
from bench.report import result_rows, table

pytestmark = pytest.mark.integration


async def test_loadgen_runs_against_the_real_stack_without_loss(server: TestServer) -> None:
    result = await run(
        str(server.make_url("")),
        clients=12,
        cells=3,
        senders_fraction=0.25,
        rate=20.0,
        duration_s=3.0,
        drain_s=8.0,
    )
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


def test_loadgen_refuses_remote_targets() -> None:
    from bench.loadgen import check_loopback

    with pytest.raises(ValueError, match="loopback"):
        check_loopback("http://example.com:8080")
    assert check_loopback("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
