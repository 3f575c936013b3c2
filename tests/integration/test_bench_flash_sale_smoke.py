"""The flash-sale benchmark, tiny, end to end: its own stack and baseline server start and stop
cleanly, both targets complete orders, the buyers receive listing events, nothing is oversold
(checked from Postgres) and every unit Postgres counts as sold was answered ok to a client.
Timing values are measured, never asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.flash_sale import catalog, parse, plan, report
from cluster.config import load_settings

pytestmark = pytest.mark.integration

TINY = ["--quick", "--buyers", "100", "--vendors", "10", "--listings", "4", "--rates", "10,20",
        "--step-seconds", "3", "--drain", "8"]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_a_tiny_flash_sale_completes_orders_and_oversells_nothing(tmp_path: Path) -> None:
    out = tmp_path / "flash.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.flash_sale", *TINY, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["stopped_clean"]
    assert set(doc["results"]) == {"baseline", "ours"}
    for name, result in doc["results"].items():
        audit = result["audit"]
        assert audit["oversell"] == 0, (name, audit)
        assert audit["listings_checked"] == audit["listings_expected"] == 10 * 4 + 2 * 10
        assert audit["units_held_pending"] == 0
        assert audit["units_sold"] == result["units_answered_ok"] > 0, (name, audit)
        assert [s["offered_per_s"] for s in result["steps"]] == [10.0, 20.0]
        for step in result["steps"]:
            assert step["orders"] > 0 and step["ok"] > 0, (name, step)
            assert step["answered"] == step["scheduled"], (name, step)
            assert math.isfinite(step["total_p99_ms"])
            assert step["server_cpu_pct"] > 0
    ours = doc["results"]["ours"]["steps"]
    assert all(s["listing_events_per_s"] > 0 for s in ours)  # buyers follow the vendors' feeds
    assert all(s["checkout_p99_ms"] <= s["total_p99_ms"] for s in ours)
    text = report(doc)
    assert "ours/base" in text and "oversell 0" in text
    assert "highest passing rate" in done.stdout


def test_the_plan_is_seeded_and_the_same_for_both_targets() -> None:
    args = parse(TINY)
    assert args.buyers == 100 and args.rates == [10.0, 20.0] and args.step_seconds == 3.0
    assert args.drain == 8.0 and args.warmup == 2.0  # --quick fills only what was not given
    first, again = plan(args, 0, 10.0, 3.0, 0.5), plan(args, 0, 10.0, 3.0, 0.5)
    assert first == again and len(first) == 30
    for lines in first:
        refs = [(kind, index) for kind, index, _ in lines]
        assert 1 <= len(lines) <= 3 and len(set(refs)) == len(refs)
        assert all(qty in (1, 2) for _, _, qty in lines)
    assert plan(args, 1, 10.0, 3.0, 0.5) != first  # each step its own sale
    assert all(kind == "ordinary" for c in plan(args, 9, 10.0, 3.0, 0.0) for kind, _, _ in c)
    import h3

    settings = load_settings()
    cat = catalog(args, settings)
    assert len(cat.ordinary) == 40 and [len(h) for h in cat.hot] == [10, 10]
    assert all(item.stock == args.hot_stock for h in cat.hot for item in h)
    center = h3.latlng_to_cell(48.8566, 2.3522, settings.h3_resolution)
    assert all(h3.grid_distance(center, c) <= 3 for c in cat.vendor_cells)
    for b, cell in enumerate(cat.buyer_cells):  # each buyer near its vendor
        assert h3.grid_distance(cat.vendor_cells[b % args.vendors], cell) <= settings.k_ring
