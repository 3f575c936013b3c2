"""bench/redis_fanout.py, briefly: every client publishes and reads every message on its own
embedded Redis, and the Redis it started is stopped. Timing values are measured, never
asserted."""

from __future__ import annotations

import asyncio
import math

import pytest

from bench import redis_fanout

pytestmark = pytest.mark.integration


async def test_redis_fanout_bench_smoke() -> None:
    rows = await asyncio.to_thread(
        redis_fanout.main, ["--flushes", "20", "--messages", "50", "--unpinned"]
    )
    assert [r["client"] for r in rows] == [
        "redis-py pipeline", "RespPublisher", "redis-py get_message", "RespSubscriber"
    ]  # fmt: skip
    assert all(math.isfinite(r["us"]) and r["us"] > 0 for r in rows)
