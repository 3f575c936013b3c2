"""What a checkout costs (issue 20): a reservation is one statement that writes nothing unless
every line can be taken, a system confirmation one conditional write with the purchases in the
batch, and the checkout's answer names its vendors from the shards' memory (no vendor read at
the gateway). Real websockets, shards, Postgres and Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from services.market import SYSTEM, Actor
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def test_a_refused_part_takes_nothing_and_writes_no_order(
    api: Api, settings: Settings
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 31), "cost-refused")
    plenty = await mk.listing(api, seller.access_token, title="Buns", stock=8, price=200)
    scarce = await mk.listing(api, seller.access_token, title="Cake", stock=1, price=900)
    buyer = await api.signup("cost-refused-buyer")
    ws = await api.connect(buyer)
    try:
        lines = [{"listing_id": plenty["id"], "qty": 3}, {"listing_id": scarce["id"], "qty": 2}]
        body = {"payment": mk.APPROVE, "lines": lines}
        reply = await ws.request("checkout", body, key=uuid.uuid4().hex, timeout=60)
        assert not reply["ok"] and reply["error"]["code"] == "out_of_stock", reply
        assert reply["error"]["details"] == {"listing_id": scarce["id"], "available": 1}
        # the line that could be taken was not: one statement, all or nothing
        assert await mk.stock_of(settings, plenty["id"]) == 8
        assert await mk.stock_of(settings, scarce["id"]) == 1
        conn = await mk.db(settings)
        try:
            orders = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE buyer_id = $1", buyer.id
            )
            assert orders == 0
        finally:
            await conn.close()
        ok = await ws.request(
            "checkout", {"payment": mk.APPROVE, "lines": lines[:1]}, key=uuid.uuid4().hex,
            timeout=60,
        )  # fmt: skip
        assert ok["ok"], ok
        assert await mk.stock_of(settings, plenty["id"]) == 5
    finally:
        await ws.close()


async def test_the_answer_names_its_vendors_without_reading_them(
    api: Api, settings: Settings, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    baker_user, baker = await mk.vendor(api, mk.spot(settings, 32), "cost-baker")
    grocer_user, grocer = await mk.vendor(api, mk.spot(settings, 33), "cost-grocer")
    loaf = await mk.listing(api, baker_user.access_token, title="Rye", stock=4, price=400)
    eggs = await mk.listing(api, grocer_user.access_token, title="Eggs", stock=4, price=300)
    buyer = await api.signup("cost-named-buyer")
    ws = await api.connect(buyer)
    reads: list[list[str]] = []
    from store import social_store

    real = social_store.vendor_refs

    async def counted(db: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
        reads.append(list(ids))
        return await real(db, ids)

    monkeypatch.setattr(social_store, "vendor_refs", counted)
    try:
        lines = [{"listing_id": loaf["id"], "qty": 1}, {"listing_id": eggs["id"], "qty": 2}]
        key = uuid.uuid4().hex
        body = {"payment": mk.APPROVE, "lines": lines}
        reply = await ws.request("checkout", body, key=key, timeout=60)
        assert reply["ok"], reply
        orders = {o["vendor_id"]: o for o in reply["data"]["orders"]}
        for vendor, user in ((baker, baker_user), (grocer, grocer_user)):
            order = orders[vendor["id"]]
            assert order["status"] == "paid"
            assert order["vendor"] == {"id": vendor["id"], "name": vendor["name"],
                                       "user_id": user.id}  # fmt: skip
            assert order["room_id"]
        assert reads == []  # named by the shards that reserved, not read at the gateway
        again = await ws.request("checkout", body, key=key, timeout=60)  # a replay reads them
        assert again["ok"] and again["data"]["orders"] == reply["data"]["orders"]
        assert reads and sorted(reads[-1]) == sorted(orders)
    finally:
        await ws.close()


async def test_a_confirmation_records_each_purchase_once(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 34), "cost-purchases")
    tea = await mk.listing(api, seller.access_token, title="Tea", stock=9, price=250)
    mug = await mk.listing(api, seller.access_token, title="Mug", stock=9, price=1200)
    buyer = await api.signup("cost-purchases-buyer")
    ws = await api.connect(buyer)
    try:
        lines = [{"listing_id": tea["id"], "qty": 2}, {"listing_id": mug["id"], "qty": 1}]
        body = {"payment": mk.APPROVE, "lines": lines}
        reply = await ws.request("checkout", body, key=uuid.uuid4().hex, timeout=60)
        assert reply["ok"], reply
        (order,) = reply["data"]["orders"]
        assert order["status"] == "paid"
        # the system confirms again under another key: the order is past the step's sources,
        # so it is read and answered as it is, and nothing more is recorded
        market = server.app[SERVICES].market
        who = Actor(SYSTEM, f"test-confirm-again-{uuid.uuid4().hex}")
        again = await market.step(who, order["id"], "confirm", SYSTEM, "again")
        assert again["changed"] is False and again["order"]["status"] == "paid"
        conn = await mk.db(settings)
        try:
            rows = await conn.fetch(
                "SELECT item_id, price FROM interactions WHERE user_id = $1 AND kind = 'purchase'"
                " ORDER BY item_id",
                buyer.id,
            )
            status = await conn.fetchval("SELECT status FROM orders WHERE id = $1", order["id"])
        finally:
            await conn.close()
        assert sorted((r["item_id"], r["price"]) for r in rows) == sorted(
            [(tea["id"], 2.5), (mug["id"], 12.0)]
        )
        assert status == "paid"
    finally:
        await ws.close()
