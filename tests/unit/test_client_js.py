"""web/js/client.js under node's test runner (tests/js/): the resume, dedupe, reset and
do-not-reconnect rules over a fake socket; and charts.js' busiest slot of the heatmap. Skipped
where there is no node >= 18."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _node() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    major = int(version.lstrip("v").split(".")[0] or 0)
    return node if major >= 18 else None


def test_js_client() -> None:
    node = _node()
    if node is None:
        pytest.skip("no node >= 18 on PATH (the JS client's tests need node:test)")
    run = subprocess.run(
        [node, "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 5" in run.stdout, run.stdout[-2000:]
