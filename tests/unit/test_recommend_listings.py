"""Listings as ranking items and the scheduled retrain loop (pure parts: no Ray, no Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import pytest

from actors.recommend_ops import parse_items
from cluster.config import Settings, load_settings
from cluster.trainer import RunDone, retrain_loop, with_retrain
from gateway.metrics import Metrics
from models.cells import Geo
from models.errors import BadRequest
from models.recommend.commands import RankRead
from models.recommend.features import price_band
from models.recommend.listings import major_units, rank_item, relevance_page
from models.recommend.serving import scope_kind
from services.market import MarketService
from services.ranking import CellRanker


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


def _settings(period_s: float, idle_s: float = 60.0) -> Settings:
    return load_settings(recommend_retrain_s=period_s, recommend_retrain_idle_s=idle_s)


def test_a_deployment_retrains_by_default() -> None:
    settings = load_settings()
    assert settings.recommend_retrain_s > 0 and settings.recommend_retrain_idle_s > 0

    async def gateway() -> None:
        return None

    off = gateway()
    assert with_retrain(_settings(0), off) is off  # 0 turns the schedule off
    main = gateway()
    on = with_retrain(settings, main)
    assert on is not main and on.__qualname__ == "beside_retrain_loop"
    for coro in (on, main, off):
        coro.close()


async def test_retrain_loop_comes_back_soon_while_no_model_was_stored() -> None:
    stored = [0, 0, 2, 2]
    fourth = asyncio.Event()

    async def run(settings: Settings) -> AsyncGenerator[str | RunDone]:
        yield "training"
        count = stored.pop(0)
        if not stored:
            fourth.set()
        yield RunDone(count)

    lines: list[str] = []
    task = asyncio.create_task(retrain_loop(_settings(0.4, idle_s=0.01), run, lines.append))
    await asyncio.wait_for(fourth.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ends = [line for line in lines if " in " in line and "next in" in line]
    assert "no model stored" in ends[0] and ends[0].endswith("next in 0.01s")
    assert ends[2].startswith("retrain #3 done in ") and ends[2].endswith("next in 0.4s")
    assert not any("RunDone" in line for line in lines)  # the outcome is not a progress line


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


# -- listings.nearby sort selection, against an in-memory router and database -------------------
class _Db:
    """Answers the distance browse query with fixed rows, honouring its cursor and LIMIT."""

    def __init__(self, n: int) -> None:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        self.rows = [
            {
                "id": f"l{i}", "vendor_id": "v", "cell": "c", "kind": "product",
                "title": f"t{i}", "description": "", "category": "x", "price": 100 * (i + 1),
                "currency": "eur", "stock": 1, "images": [], "active": True, "lat": 52.5,
                "lng": 13.4, "created_at": now, "updated_at": now, "deleted_at": None,
                "vendor_suspended": False,
                "distance_m": float(i),
            }
            for i in range(n)
        ]  # fmt: skip

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if "FROM vendors" in sql:  # the page's vendor refs (MarketService.with_vendors)
            return []
        after = args[7] if len(args) > 7 else -1.0  # a distance cursor: the last distance
        return [r for r in self.rows if r["distance_m"] > after][: args[6]]


class _Router:
    """The ``recommend.rank`` reader: no model, or one that prefers the last items."""

    def __init__(self, model: bool) -> None:
        self.model = model
        self.calls = 0

    async def read(self, read: RankRead) -> dict[str, Any]:
        assert read.op == "recommend.rank" and read.route.startswith("cell:")
        self.calls += 1
        if not self.model:
            return {"model": None}
        return {"model": {"scope": "global", "version": 7}, "scores": [float(i) for i in
                range(len(read.items))]}  # fmt: skip


def _market(model: bool, n: int = 5) -> tuple[MarketService, _Router]:
    router = _Router(model)
    market = MarketService(
        load_settings(),
        _Db(n),
        router,
        Geo(8, 1),
        {},
        CellRanker(router, 60.0),  # type: ignore[arg-type]
    )
    return market, router


AT = (52.52, 13.405)


async def test_nearby_defaults_to_relevance_where_a_model_exists_and_pages_it() -> None:
    market, _ = _market(model=True)
    first = await market.nearby("u", *AT, {}, None, None, 3)
    assert first["sort"] == "relevance" and first["model"] == {"scope": "global", "version": 7}
    assert [x["id"] for x in first["items"]] == ["l4", "l3", "l2"]
    rest = await market.nearby("u", *AT, {}, None, first["next_cursor"], 3)
    assert [x["id"] for x in rest["items"]] == ["l1", "l0"] and rest["next_cursor"] is None
    plain = await market.nearby("u", *AT, {}, "price", None, 3)
    assert plain["sort"] == "price" and "model" not in plain
    with pytest.raises(BadRequest):
        await market.nearby("u", *AT, {}, "distance", first["next_cursor"], 3)


async def test_served_counts_which_model_ranked_each_request_and_the_gateway_exports_them() -> None:
    with_model, _ = _market(model=True)
    await with_model.nearby("u", *AT, {}, None, None, 3)
    await with_model.nearby("u", *AT, {}, "price", None, 3)  # not ranked: not counted
    without, _ = _market(model=False)
    await without.nearby("u", *AT, {}, None, None, 3)  # asks: none
    await without.nearby("u", *AT, {}, None, None, 3)  # remembered, no round trip: none
    assert with_model.ranker.served == {("listings", "global"): 1}
    assert without.ranker.served == {("listings", "none"): 2}
    metrics = Metrics()
    metrics.watch_counts("recommend_served", "test", ("surface", "model"),
                         lambda: without.ranker.served.items())  # fmt: skip
    text = metrics.render().decode()
    assert 'hl_recommend_served_total{model="none",surface="listings"} 2.0' in text
    assert scope_kind("global", "8a2a1072b59ffff") == "global"
    assert scope_kind("8a2a1072b59ffff", "8a2a1072b59ffff") == "cell"
    assert scope_kind("882a1072b5fffff", "8a2a1072b59ffff") == "parent"


async def test_nearby_without_a_model_falls_back_and_remembers_the_cell() -> None:
    market, router = _market(model=False)
    first = await market.nearby("u", *AT, {}, None, None, 3)
    assert first["sort"] == "distance" and [x["id"] for x in first["items"]] == ["l0", "l1", "l2"]
    assert router.calls == 1
    again = await market.nearby("u", *AT, {}, None, None, 3)
    assert again["sort"] == "distance" and router.calls == 1  # known unranked: no round trip
    more = await market.nearby("u", *AT, {}, None, first["next_cursor"], 3)
    assert [x["id"] for x in more["items"]] == ["l3", "l4"] and more["sort"] == "distance"
    asked = await market.nearby("u", *AT, {}, "relevance", None, 3)
    assert asked["sort"] == "distance" and router.calls == 2  # an explicit ask always asks
    stale = await market.nearby("u", *AT, {}, None, "r3", 3)  # the model went away mid-paging
    assert stale == {"items": [], "next_cursor": None, "sort": "distance"}
