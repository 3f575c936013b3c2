"""Listings as ranking items and the scheduled retrain loop (pure parts: no Ray, no Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from actors.recommend_ops import parse_items
from cluster.config import Settings, load_settings
from cluster.trainer import retrain_loop
from models.recommend.features import price_band
from models.recommend.listings import major_units, rank_item, relevance_page


def test_major_units_follow_the_currency_exponent() -> None:
    assert major_units(1250, "eur") == 12.5
    assert major_units(1250, "JPY") == 1250.0
    assert major_units(1250, "kwd") == 1.25
    assert major_units(99, None) == 0.99


def test_rank_item_is_what_the_shard_reader_accepts() -> None:
    listing = {
        "id": "881f.x",
        "lat": 52.5,
        "lng": 13.4,
        "cell": "881f036811fffff",
        "category": "cheese",
        "price": 1250,
        "currency": "eur",
        "created_at": "2026-01-02T03:04:05+00:00",
    }
    item = rank_item(listing)
    assert item["created_ms"] == 1767323045000 and item["price"] == 12.5
    parsed = parse_items([item])[0]
    assert (parsed.category, parsed.price, parsed.cell) == ("cheese", 12.5, listing["cell"])
    assert price_band(parsed.price) == 3.0  # 12.50 is in the 7-15 band
    assert "created_ms" not in rank_item({**listing, "created_at": "not a time"})


def test_relevance_pages_cover_the_ranking_once() -> None:
    order = [4, 2, 0, 1, 3]
    assert relevance_page(order, 0, 2) == ([4, 2], 2)
    assert relevance_page(order, 2, 2) == ([0, 1], 4)
    assert relevance_page(order, 4, 2) == ([3], None)
    assert relevance_page(order, 0, 5) == (order, None)
    assert relevance_page(order, 9, 2) == ([], None)


def _settings(period_s: float) -> Settings:
    return load_settings(recommend_retrain_s=period_s)


async def test_retrain_loop_reports_survives_a_failed_run_and_stops_on_cancel() -> None:
    runs = 0
    fourth = asyncio.Event()

    async def run(settings: Settings) -> AsyncGenerator[str]:
        nonlocal runs
        runs += 1
        if runs == 4:
            fourth.set()
        yield "training"
        if runs == 2:
            raise RuntimeError("database went away")
        yield "stored"

    lines: list[str] = []
    task = asyncio.create_task(retrain_loop(_settings(0.01), run, lines.append))
    await asyncio.wait_for(fourth.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lines[:3] == ["retrain #1 started", "retrain #1 training", "retrain #1 stored"]
    assert lines[3].startswith("retrain #1 done in ")
    assert "retrain #2 training" in lines and "retrain #2 stored" not in lines
    assert any(line.startswith("retrain #2 failed in ") for line in lines)
    assert "retrain #3 stored" in lines  # the schedule went on after the failure


async def test_retrain_loop_cancelled_mid_run_closes_the_run() -> None:
    closed, running = asyncio.Event(), asyncio.Event()

    async def run(settings: Settings) -> AsyncGenerator[str]:
        try:
            running.set()
            yield "started a long run"
            await asyncio.sleep(3600)
            yield "never"
        finally:
            closed.set()  # remote_run cancels its Ray task here

    lines: list[str] = []
    task = asyncio.create_task(retrain_loop(_settings(60), run, lines.append))
    await asyncio.wait_for(running.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), 5)
