"""bench/search.py, briefly (``--quick``): it seeds its own embedded Postgres, runs every
variant without errors, finds what it searches for, and stops the server it started. Timing
values are measured, never asserted."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench import search

pytestmark = pytest.mark.integration


async def test_search_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    result = await asyncio.to_thread(search.main, ["--quick", "--json", str(out)])
    assert out.exists() and result["posts"] == result["listings"] == 2_000
    variants = result["variants"]
    assert set(variants) == {
        "fts posts", "fts posts near", "fts listings", "ilike posts", "ilike listings"
    }  # fmt: skip
    for name, v in variants.items():
        assert v["errors"] == 0 and v["ok"] == v["sent"] > 0, (name, v)
        assert math.isfinite(v["p99_ms"]), name
    # the ranked search finds at least what the substring scan finds (typos too)
    assert variants["fts posts"]["mean_hits"] >= variants["ilike posts"]["mean_hits"] > 0
    assert "p99 ms" in search.report(result)
