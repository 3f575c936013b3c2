"""bench/analytics.py, briefly (``--quick``): it seeds its own embedded Postgres, rolls up,
answers the same from the rollups as from the raw orders, and stops the server it started.
Timing values are measured, never asserted."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench import analytics

pytestmark = pytest.mark.integration


async def test_analytics_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "analytics.json"
    result = await asyncio.to_thread(analytics.main, ["--quick", "--json", str(out)])
    assert out.exists() and result["orders"] == 2_100
    assert result["same_answer"] is True
    assert result["same_answer_ranges"] is True  # mid-month, mid-history ranges too
    # no rollup query reads rows in proportion to the orders: the repeat-customer part one
    # row per customer (201 buyers), the raw query every counted order of the range
    read = result["rows_read"]
    assert read["rollups"]["customers"] <= 201 < read["raw SQL"]["customers"]
    assert all(read["rollups"][k] < read["raw SQL"][k] for k in read["rollups"]), read
    assert 0 < result["counted_orders"] < result["orders"]  # refunded and cancelled left out
    assert result["rollup_backfill_days"] >= 300 and result["rollup_incremental_days"] >= 1
    for name in ("rollups", "raw SQL"):
        assert math.isfinite(result["variants"][name]["p99_ms"]), name
    assert "p99 ms" in analytics.report(result)
