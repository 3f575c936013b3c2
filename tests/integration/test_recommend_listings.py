"""Relevance for listings end to end: views (``listing.get``) and purchases (checkout) written
through the product's own ops are recorded, a ranker trained by a Ray task from them reorders
``listings.nearby``, and the default sort falls back to distance where no model exists."""

from __future__ import annotations

from typing import Any

import pytest

from cluster import trainer
from cluster.config import Settings
from store import recommend_store
from store.db import create_pool
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def _interactions(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    conn = await mk.db(settings)
    try:
        rows = await conn.fetch(
            "SELECT item_kind, item_id, kind, cell, category, price FROM interactions"
            " WHERE user_id = $1 ORDER BY id",
            user_id,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def test_listing_interactions_train_a_ranker_that_reorders_nearby(
    api: Api, settings: Settings
) -> None:
    here = mk.spot(settings, 25)
    at = {"lat": here[0], "lng": here[1]}
    seller, _ = await mk.vendor(api, here, "deli", "food")
    tok = seller.access_token
    # Bread first: every listing is at the vendor's place, so distance order is creation order.
    bread = [await mk.listing(api, tok, title=f"Loaf {i}", category="bread") for i in range(5)]
    cheese = [
        await mk.listing(api, tok, title=f"Cheese {i}", category="cheese", price=1250)
        for i in range(5)
    ]
    names = ("cheese-lover", "bread-fan1", "bread-fan2")
    users = {n: await api.signup(n) for n in names}
    ws = {n: await api.connect(u) for n, u in users.items()}
    lover = ws["cheese-lover"]
    seller_ws = await api.connect(seller)

    fallback = await lover.ok("listings.nearby", {**at, "limit": 10})
    assert fallback["sort"] == "distance" and "model" not in fallback
    by_distance = [x["id"] for x in fallback["items"]]
    assert by_distance == [x["id"] for x in bread + cheese]
    asked = await lover.ok("listings.nearby", {**at, "sort": "relevance"})
    assert asked["sort"] == "distance"  # relevance asked for, no model: distance, and said so

    for mine, theirs in zip(cheese, bread, strict=True):  # interleaved: both in every period
        await lover.ok("listing.get", {"listing_id": mine["id"]})
        for fan in ("bread-fan1", "bread-fan2"):
            await ws[fan].ok("listing.get", {"listing_id": theirs["id"]})
    await lover.ok("listing.get", {"listing_id": cheese[0]["id"]})  # a repeat: not a new view
    await seller_ws.ok("listing.get", {"listing_id": bread[0]["id"]})  # the vendor's own
    bought = await mk.buy(lover, cheese[1]["id"], 2, mk.APPROVE)
    assert bought["ok"] and bought["data"]["orders"][0]["status"] == "paid", bought
    assert (await mk.buy(ws["bread-fan1"], bread[2]["id"], 1, mk.APPROVE))["ok"]

    mine = await _interactions(settings, users["cheese-lover"].id)
    views = [r for r in mine if r["kind"] == "view"]
    assert [r["item_id"] for r in views] == [x["id"] for x in cheese]
    assert {(r["item_kind"], r["category"], r["price"]) for r in views} == {
        ("listing", "cheese", 12.5)
    }
    purchases = [r for r in mine if r["kind"] == "purchase"]
    assert [(r["item_id"], r["cell"], r["price"]) for r in purchases] == [
        (cheese[1]["id"], cheese[1]["cell"], 12.5)
    ]
    assert await _interactions(settings, seller.id) == []

    cell = cheese[0]["cell"]
    assert settings.database_url
    pool = await create_pool(settings.database_url)
    try:
        lines: list[str] = []
        results = await trainer.train(
            settings, pool, cells=[cell], min_events=2, report=lines.append
        )
        assert [r["scope"] for r in results] == [cell] and "version" in results[0], lines
        version = results[0]["version"]

        relevant = await lover.ok("listings.nearby", {**at, "sort": "relevance", "limit": 10})
        assert relevant["sort"] == "relevance"
        assert relevant["model"] == {"scope": cell, "version": version}
        ids = [x["id"] for x in relevant["items"]]
        assert sorted(ids) == sorted(by_distance) and ids != by_distance
        top = [x["category"] for x in relevant["items"][:3]]
        assert top.count("cheese") >= 2, relevant["items"][:3]

        default = await lover.ok("listings.nearby", {**at, "limit": 10})  # a model: relevance
        assert default["sort"] == "relevance"
        page1 = await lover.ok("listings.nearby", {**at, "limit": 6})
        page2 = await lover.ok("listings.nearby", {**at, "cursor": page1["next_cursor"]})
        assert page1["sort"] == page2["sort"] == "relevance" and page2["next_cursor"] is None
        paged = [x["id"] for x in page1["items"] + page2["items"]]
        assert len(paged) == len(set(paged)) == 10

        cheap = await lover.ok("listings.nearby", {**at, "max_price": 500})  # filters still apply
        assert {x["category"] for x in cheap["items"]} == {"bread"}
        by_price = await lover.ok("listings.nearby", {**at, "sort": "price"})
        assert by_price["sort"] == "price" and by_price["items"][-1]["price"] == 1250
        wrong = await lover.request(
            "listings.nearby", {**at, "sort": "distance", "cursor": page1["next_cursor"]}
        )
        assert wrong["error"]["code"] == "bad_request"
    finally:
        await recommend_store.delete_models(pool, [cell])  # other tests see unranked cells
        await pool.close()
        for sock in (*ws.values(), seller_ws):
            await sock.close()
