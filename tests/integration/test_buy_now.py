"""Buy now (`checkout {lines}`, issue 20): the lines become the order group without the cart,
over real websockets, shards, Postgres and Redis; the cart is neither read nor cleared, a retry
with the key replays, bad lines change nothing, and a race never oversells."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def test_buy_now_orders_the_lines_and_leaves_the_cart_alone(
    api: Api, settings: Settings
) -> None:
    baker, _ = await mk.vendor(api, mk.spot(settings, 21), "buynow-baker")
    grocer, _ = await mk.vendor(api, mk.spot(settings, 22), "buynow-grocer")
    loaf = await mk.listing(api, baker.access_token, title="Rye", stock=5, price=400)
    eggs = await mk.listing(api, grocer.access_token, title="Eggs", stock=9, price=300)
    jam = await mk.listing(api, grocer.access_token, title="Jam", stock=3, price=500)
    buyer = await api.signup("buynow-buyer")
    ws = await api.connect(buyer)
    try:
        await ws.mutate("cart.add", {"listing_id": jam["id"], "qty": 1})  # not bought now
        lines = [{"listing_id": loaf["id"], "qty": 2}, {"listing_id": eggs["id"], "qty": 3}]
        key = uuid.uuid4().hex
        body = {"payment": mk.APPROVE, "lines": lines}
        reply = await ws.request("checkout", body, key=key, timeout=60)
        assert reply["ok"], reply
        orders = reply["data"]["orders"]
        assert sorted(o["total"] for o in orders) == [800, 900]
        assert {o["status"] for o in orders} == {"paid"}
        assert reply["data"]["payment"]["amount"] == 1700
        cart = await ws.ok("cart.get", {})
        assert [(i["listing_id"], i["qty"]) for i in cart["items"]] == [(jam["id"], 1)]
        assert await mk.stock_of(settings, loaf["id"]) == 3
        assert await mk.stock_of(settings, eggs["id"]) == 6
        assert await mk.stock_of(settings, jam["id"]) == 3

        again = await ws.request("checkout", body, key=key, timeout=60)  # a retry: replayed
        assert again["ok"] and [o["id"] for o in again["data"]["orders"]] == [
            o["id"] for o in orders
        ]
        other = {"payment": mk.APPROVE, "lines": lines[:1]}
        clash = await ws.request("checkout", other, key=key, timeout=60)
        assert not clash["ok"] and clash["error"]["code"] == "conflict"
        conn = await mk.db(settings)
        try:
            paid = await conn.fetchval(
                "SELECT count(*) FROM payments p JOIN order_groups g ON g.id = p.group_id"
                " WHERE g.buyer_id = $1",
                buyer.id,
            )
            assert paid == 1  # one charge for the key, however often it is sent
            captured = await conn.fetchval(
                "SELECT sum(e.amount) FROM ledger_entries e JOIN ledger_transactions t"
                " ON t.id = e.txn_id WHERE t.kind = 'capture' AND t.order_id = ANY($1::text[])"
                " AND e.account = 'provider_clearing'",
                [o["id"] for o in orders],
            )
            assert captured == 1700  # the capture's entries, posted for both orders
        finally:
            await conn.close()
        # the cart's own checkout still takes the cart, and only it
        rest = await ws.request("checkout", {"payment": mk.APPROVE}, key=uuid.uuid4().hex,
                                timeout=60)  # fmt: skip
        assert rest["ok"] and [o["total"] for o in rest["data"]["orders"]] == [500]
        assert (await ws.ok("cart.get", {}))["items"] == []
    finally:
        await ws.close()


async def test_bad_lines_are_refused_and_change_nothing(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 23), "buynow-bad")
    item = await mk.listing(api, seller.access_token, title="Pie", stock=4, price=700)
    buyer = await api.signup("buynow-bad-buyer")
    ws = await api.connect(buyer)
    try:
        cases = [
            ([], "bad_request"),
            ([{"listing_id": item["id"], "qty": 0}], "bad_request"),
            ([{"listing_id": item["id"], "qty": 1000}], "bad_request"),
            ([{"listing_id": item["id"]}, {"listing_id": item["id"], "qty": 2}], "bad_request"),
            ([{"listing_id": "l_nosuchlisting"}], "not_found"),
            ([{"listing_id": item["id"]}, {"listing_id": "l_nosuchlisting"}], "not_found"),
            ([{"qty": 1}], "bad_request"),
        ]
        for lines, code in cases:
            body = {"payment": mk.APPROVE, "lines": lines}
            reply = await ws.request("checkout", body, key=uuid.uuid4().hex, timeout=60)
            assert not reply["ok"] and reply["error"]["code"] == code, (lines, reply)
        conn = await mk.db(settings)
        try:
            groups = await conn.fetchval(
                "SELECT count(*) FROM order_groups WHERE buyer_id = $1", buyer.id
            )
            assert groups == 0
        finally:
            await conn.close()
        assert await mk.stock_of(settings, item["id"]) == 4
    finally:
        await ws.close()


async def test_a_race_of_buy_nows_never_oversells_and_shares_statements(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 24), "buynow-race")
    item = await mk.listing(api, seller.access_token, title="Drop", stock=5, price=1000)
    buyers = await asyncio.gather(*(api.signup(f"buynow-racer{i}") for i in range(20)))
    sockets = await asyncio.gather(*(api.connect(b) for b in buyers))
    checkout = server.app[SERVICES].checkout
    opened = (checkout._opened.statements, checkout._opened.rows)
    facts = (checkout._facts_read.statements, checkout._facts_read.rows)
    reads = checkout.lines.reads
    try:
        body = {"payment": mk.APPROVE, "lines": [{"listing_id": item["id"], "qty": 1}]}
        replies = await asyncio.gather(
            *(ws.request("checkout", body, key=uuid.uuid4().hex, timeout=90) for ws in sockets)
        )
        won = [r for r in replies if r["ok"]]
        lost = [r for r in replies if not r["ok"]]
        assert len(won) == 5 and {r["error"]["code"] for r in lost} == {"out_of_stock"}
        assert await mk.stock_of(settings, item["id"]) == 0
        # the twenty groups arrived together: they shared statements (store/coalesce.py)
        statements = checkout._opened.statements - opened[0]
        assert checkout._opened.rows - opened[1] == 20 and statements < 20
        # their fraud facts too, and the new listing's line was read once for all of them
        facts_statements = checkout._facts_read.statements - facts[0]
        assert checkout._facts_read.rows - facts[1] == 20 and facts_statements < 20
        assert checkout.lines.reads - reads == 1
        async with api.http.get(api.base + "/metrics") as resp:
            text = await resp.text()
        assert 'hl_checkout_coalesced_total{statement="group",what="rows"}' in text
    finally:
        for ws in sockets:
            await ws.close()


async def test_lines_kept_by_the_gateway_never_sell_at_a_price_the_listing_lost(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """A buy-now's lines come from the gateway's memory (services/checkout_reads.py): a
    vendor's change through this gateway is read afresh at once; a stale line (another
    gateway's change, not seen here) is refused by the owner, sells nothing, and is forgotten,
    so the next buy-now pays the new price."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 26), "buynow-lines")
    item = await mk.listing(api, seller.access_token, title="Tart", stock=10, price=400)
    buyer = await api.signup("buynow-lines-buyer")
    checkout = server.app[SERVICES].checkout
    ws = await api.connect(buyer)

    async def buy() -> dict[str, Any]:
        body = {"payment": mk.APPROVE, "lines": [{"listing_id": item["id"], "qty": 1}]}
        return await ws.request("checkout", body, key=uuid.uuid4().hex, timeout=60)

    try:
        reads = checkout.lines.reads
        first, second = await buy(), await buy()
        assert first["ok"] and second["ok"], (first, second)
        assert [r["data"]["payment"]["amount"] for r in (first, second)] == [400, 400]
        assert checkout.lines.reads - reads == 1  # the second line came from memory
        path = f"/api/v1/vendor/listings/{item['id']}"
        status, _ = await mk.rest(api, "PATCH", path, {"price": 600}, seller.access_token)
        assert status == 200
        third = await buy()  # the change went through this gateway: forgotten at once
        assert third["ok"] and third["data"]["payment"]["amount"] == 600, third
        kept = checkout.lines._rows[item["id"]]  # as another gateway's change would leave it
        checkout.lines._rows[item["id"]] = (kept[0], {**kept[1], "price": 500})
        stale = await buy()
        assert not stale["ok"] and stale["error"]["code"] == "conflict", stale
        assert await mk.stock_of(settings, item["id"]) == 7  # the refused one took nothing
        fourth = await buy()  # the refusal made the gateway read the listing again
        assert fourth["ok"] and fourth["data"]["payment"]["amount"] == 600, fourth
        prices = await mk.fetch(
            settings,
            "SELECT l.unit_price FROM order_lines l JOIN orders o ON o.id = l.order_id"
            " WHERE o.buyer_id = $1 AND o.status = 'paid' ORDER BY o.created_at",
            buyer.id,
        )
        assert [r["unit_price"] for r in prices] == [400, 400, 600, 600]
    finally:
        await ws.close()
