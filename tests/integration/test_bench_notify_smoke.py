"""The notifications benchmark, briefly, on the session's stack (its notifier actor drains what
the steps queue): both steps run, every queued delivery is sent, the chat phases lose nothing.
Timing values are measured, never asserted. ``python -m bench.notify_burst --quick`` runs the
whole benchmark on a deployment of its own (not here: a second Ray)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bench.notify_burst import (
    Sinks,
    bench_env,
    bench_overrides,
    chat_with_burst,
    report,
    throughput,
)
from cluster.config import Settings, load_settings

pytestmark = pytest.mark.integration


async def test_the_notifier_benchmark_runs_and_sends_everything(
    server: TestServer, settings: Settings
) -> None:
    sinks = Sinks()
    await sinks.start()
    try:
        assert settings.database_url
        dsn = settings.database_url
        tp = await throughput(dsn, sinks, 30, timeout_s=60)
        assert tp["deliveries"] == tp["sent"] == 60 and tp["seconds"] > 0
        assert math.isfinite(tp["emails_per_s"]) and math.isfinite(tp["pushes_per_s"])
        assert sinks.pushes >= 30  # the session's notifier pushed to this stand-in
        chat = await chat_with_burst(str(server.make_url("")), dsn, sinks, 20, 10.0, 2.0, 30)
    finally:
        await sinks.stop()
    for phase in (chat["quiet"], chat["burst"]):
        assert phase["acked"] == phase["sent"] > 0 and phase["loss"] == 0, phase
    assert chat["burst_deliveries"] == 60
    assert "notifier pushes/s" in report(tp, chat)


def test_the_benchmarks_own_deployment_settings_are_valid(tmp_path: Path) -> None:
    """``main`` starts a deployment of its own with these (a value out of range once stopped
    it before anything ran)."""
    settings = load_settings(data_dir=tmp_path, **bench_overrides("smtp://127.0.0.1:2525"))
    assert settings.smtp_url == "smtp://127.0.0.1:2525" and settings.push_allow_private
    env = bench_env(bench_overrides("smtp://127.0.0.1:2525", 0.0))  # what `hyperlocal up` reads
    assert env["HL_NOTIFY_RATE_PER_S"] == "0.0" and "HL_PORT" not in env
