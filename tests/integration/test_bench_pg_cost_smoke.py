"""bench/pg_batch_cost.py, briefly: chat batches written with the batch statement on a private
embedded Postgres, alone and against a variant database; the counts per message come from the
server's own statistics. CPU figures are measured, never asserted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import pg_batch_cost

pytestmark = pytest.mark.integration


async def test_batch_cost_counts_what_a_chat_batch_writes(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    args = ["--batches", "40", "--warmup", "5", "--per-batch", "3", "--chunk", "10"]
    # the variant: one index more on messages, so one WAL record more per message
    variant = "CREATE INDEX messages_extra ON messages (sender_id)"
    await asyncio.to_thread(pg_batch_cost.main, [*args, "--sql-b", variant, "--json", str(out)])
    figures = json.loads(out.read_text())
    a, b = figures["a"], figures["b"]
    assert a["rows"] == b["rows"] == 120
    assert a["per_row"]["batches"] == pytest.approx(1 / 3, abs=0.001)
    # a message: its row, its event, its record (heap + index each), the head, the fence
    assert a["per_row"]["wal_records"] >= 6
    assert b["per_row"]["wal_records"] == pytest.approx(a["per_row"]["wal_records"] + 1, abs=0.1)
    assert a["backend_cpu_us_per_row"] > 0 and b["backend_cpu_us_per_row"] > 0
    assert "WITH f AS" in a["statements"][0]


async def test_post_batches_of_words_count_the_search_index(tmp_path: Path) -> None:
    out = tmp_path / "posts.json"
    args = ["--kind", "post", "--words", "10", "--batches", "40", "--warmup", "5", "--chunk", "10"]
    # a text of ten words feeds the trigram index dozens of entries: without it, fewer records
    variant = "DROP INDEX posts_text_trgm"
    await asyncio.to_thread(pg_batch_cost.main, [*args, "--sql-b", variant, "--json", str(out)])
    figures = json.loads(out.read_text())
    a, b = figures["a"], figures["b"]
    assert a["rows"] == b["rows"] == 120
    assert b["per_row"]["wal_records"] < a["per_row"]["wal_records"] - 1
    assert b["per_row"]["wal_bytes"] < a["per_row"]["wal_bytes"]
