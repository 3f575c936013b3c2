"""bench/presence_refresh.py, briefly: both kinds of round run against a private embedded
Redis, which is stopped again. Timing values are measured, never asserted."""

from __future__ import annotations

import asyncio

import pytest

from bench import presence_refresh

pytestmark = pytest.mark.integration


async def test_presence_refresh_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(
        presence_refresh.main, ["--sessions", "100", "--rounds", "2", "--unpinned"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "100 sessions, 187 streams, 2 rounds each; unpinned" in out
    assert "all streams" in out and "one slice" in out
