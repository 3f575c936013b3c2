"""bench/media.py ``--deploy``, briefly: it starts a deployment of its own and the inline
baseline (Pillow in the event loop), uploads the same photos through both and stops both.
Timing values are measured, never asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_deployed_mode_uploads_through_the_gateway_and_the_inline_baseline(
    tmp_path: Path,
) -> None:
    out = tmp_path / "media.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.media", "--deploy", "--uploads", "3", "--size", "640x480",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["stopped_clean"] is True
    assert set(doc["results"]) == {"ours", "inline"}
    for name, result in doc["results"].items():
        assert result["mode"] == name and result["uploads"] == 3, result
        assert result["uploads_per_s"] > 0 and result["probes"] >= 1, result
        assert math.isfinite(result["probe_p99_ms"]) and result["cpu_s_per_upload"] > 0, result
