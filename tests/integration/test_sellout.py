"""A sell-out stays on the fast path: a reservation refused for stock writes nothing, so the
rest of its batch commits without the careful (savepoint per command) re-run; a retry of a
reservation that committed still gets its first result after the listing sold out."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from models.errors import OutOfStock
from models.market import OrderReserve
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def test_out_of_stock_refusals_do_not_rerun_the_batch(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 62), "sellout")
    item = await mk.listing(api, seller.access_token, title="Last loaves", stock=5, price=300)
    sockets = [await api.connect(await api.signup(f"sellout{i}")) for i in range(30)]
    for ws in sockets:
        await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
    before = await mk.slow_batches(settings)
    replies = await asyncio.gather(
        *(
            ws.request("checkout", {"payment": mk.APPROVE}, uuid.uuid4().hex, timeout=60)
            for ws in sockets
        )
    )
    paid = [r for r in replies if r["ok"]]
    refused = [r["error"]["code"] for r in replies if not r["ok"]]
    assert len(paid) == 5 and refused == ["out_of_stock"] * 25
    assert await mk.stock_of(settings, item["id"]) == 0
    assert await mk.slow_batches(settings) == before, "a refusal sent a batch down the careful path"

    # a reservation's retry after the sell-out: its first result, not out_of_stock
    market = server.app[SERVICES].market
    buyer = await api.signup("sellout-retry")
    seller2, _ = await mk.vendor(api, mk.spot(settings, 63), "sellout2")
    one = await mk.listing(api, seller2.access_token, title="Only one", stock=1, price=100)
    line = {"listing_id": one["id"], "title": one["title"], "qty": 1, "unit_price": 100}
    groups = [uuid.uuid4().hex, uuid.uuid4().hex]
    conn = await mk.db(settings)
    try:  # the checkout groups the reservations belong to (services/checkout.py writes them)
        for group in groups:
            await conn.execute(
                "INSERT INTO order_groups (id, buyer_id, idem_key, status, parts, amount,"
                " currency) VALUES ($1, $2, $1, 'open', '[]'::jsonb, 100, $3)",
                group,
                buyer.id,
                one["currency"],
            )
    finally:
        await conn.close()

    def reserve(group: str) -> OrderReserve:
        return OrderReserve(
            user_id=buyer.id,
            key=uuid.uuid4().hex,
            vendor_id=one["vendor_id"],
            group_id=group,
            items=(line,),
            total=100,
            currency=one["currency"],
            ttl_s=60,
        )

    command = reserve(groups[0])
    first = await market.mutate(command)
    again = await market.mutate(command)
    assert again["order"]["id"] == first["order"]["id"]
    other = reserve(groups[1])
    with pytest.raises(OutOfStock):
        await market.mutate(other)
    for ws in sockets:
        await ws.close()
