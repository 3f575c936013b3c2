"""A reservation decided from the owner's memory of its listings (issue 20, actors/
listing_memory.py): the stock taken in the batch's view, one compare-and-set row per listing per
batch, the order and its lines as rows of the batch statement stamped by the owner's clock; a
listing not as remembered fails the statement and the batch runs carefully from SQL; a vendor's
change and a release keep memory and Postgres agreeing. Real shards, Postgres and Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from models.errors import OutOfStock
from models.market import OrderReserve
from services.market import SYSTEM, Actor
from tests.integration import market_kit as mk
from tests.integration.client import Api, User

pytestmark = pytest.mark.integration


async def _reserve(
    server: TestServer, settings: Settings, buyer: User, item: dict[str, Any], qty: int
) -> dict[str, Any]:
    """One ``order.reserve`` of ``qty`` of ``item`` straight at its owner, in a group of its own."""
    group = await mk.open_group(settings, buyer.id, item["currency"])
    line = {"listing_id": item["id"], "title": item["title"], "qty": qty,
            "unit_price": item["price"]}  # fmt: skip
    command = OrderReserve(user_id=buyer.id, key=uuid.uuid4().hex, vendor_id=item["vendor_id"],
                           group_id=group, items=(line,), total=qty * item["price"],
                           currency=item["currency"], ttl_s=120)  # fmt: skip
    return dict((await server.app[SERVICES].market.mutate(command))["order"])


async def test_a_reservation_from_memory_is_what_postgres_then_holds(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 41), "memory-jam")
    jam = await mk.listing(api, seller.access_token, title="Jam", stock=20, price=300)
    buyer = await api.signup("memory-jam-buyer")
    await _reserve(server, settings, buyer, jam, 1)  # the listing is read once, remembered
    slow = await mk.slow_batches(settings)
    # many reservations of one listing at once: they share batches, each batch one row for it
    orders = await asyncio.gather(*(_reserve(server, settings, buyer, jam, 2) for _ in range(6)))
    assert await mk.stock_of(settings, jam["id"]) == 20 - 1 - 12
    assert await mk.slow_batches(settings) == slow  # every one decided from memory
    conn = await mk.db(settings)
    try:
        for order in orders:
            row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", order["id"])
            assert row is not None and row["status"] == "pending_payment"
            assert row["created_at"].isoformat() == order["created_at"]  # the owner's clock
            assert row["updated_at"] == row["created_at"]
            assert row["reserved_until"] - row["created_at"] == timedelta(seconds=120)
            assert row["reserved_until"].isoformat() == order["reserved_until"]
            assert row["total"] == 600 and row["vendor_user_id"] == seller.id
            lines = await conn.fetch(
                "SELECT listing_id, title, qty, unit_price FROM order_lines WHERE order_id = $1",
                order["id"],
            )
            assert [dict(r) for r in lines] == [
                {"listing_id": jam["id"], "title": "Jam", "qty": 2, "unit_price": 300}
            ]
        sold = await conn.fetchval(
            "SELECT sum(l.qty) FROM order_lines l JOIN orders o ON o.id = l.order_id"
            " WHERE l.listing_id = $1 AND o.status = 'pending_payment'",
            jam["id"],
        )
    finally:
        await conn.close()
    assert sold == 13  # what the stock lost, exactly


async def test_a_sold_out_listing_is_refused_from_memory_and_never_oversold(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 42), "memory-figs")
    figs = await mk.listing(api, seller.access_token, title="Figs", stock=5, price=700)
    buyer = await api.signup("memory-figs-buyer")
    await _reserve(server, settings, buyer, figs, 1)
    outcomes = await asyncio.gather(
        *(_reserve(server, settings, buyer, figs, 1) for _ in range(10)), return_exceptions=True
    )
    taken = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, OutOfStock)]
    assert len(taken) == 4 and len(refused) == 6, outcomes
    assert all(r.details["available"] == 0 for r in refused)
    assert await mk.stock_of(settings, figs["id"]) == 0


async def test_a_listing_moved_behind_the_owner_is_reserved_from_sql(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 43), "memory-honey")
    honey = await mk.listing(api, seller.access_token, title="Honey", stock=6, price=900)
    buyer = await api.signup("memory-honey-buyer")
    await _reserve(server, settings, buyer, honey, 1)  # remembered: 5 left
    conn = await mk.db(settings)
    try:  # what the shard remembers is now stale (no op does this: only a test can)
        await conn.execute("UPDATE listings SET stock = 1 WHERE id = $1", honey["id"])
        slow = await mk.slow_batches(settings)
        with pytest.raises(OutOfStock) as refused:
            await _reserve(server, settings, buyer, honey, 2)
        # the compare-and-set refused the remembered stock: the batch ran carefully, from SQL
        assert await mk.slow_batches(settings) == slow + 1
        assert refused.value.details["available"] == 1
        assert await mk.stock_of(settings, honey["id"]) == 1
        orders = await conn.fetchval(
            "SELECT count(*) FROM order_lines WHERE listing_id = $1", honey["id"]
        )
        assert orders == 1  # the first reservation's only
        await _reserve(server, settings, buyer, honey, 1)  # read afresh: the last unit
        assert await mk.stock_of(settings, honey["id"]) == 0
    finally:
        await conn.close()


async def test_a_release_and_a_vendors_change_keep_memory_and_postgres_agreeing(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 44), "memory-pears")
    pears = await mk.listing(api, seller.access_token, title="Pears", stock=4, price=250)
    buyer = await api.signup("memory-pears-buyer")
    order = await _reserve(server, settings, buyer, pears, 3)
    market = server.app[SERVICES].market
    who = Actor(SYSTEM, f"test-release-{uuid.uuid4().hex}")
    slow = await mk.slow_batches(settings)
    released = await market.step(who, order["id"], "release", SYSTEM, "test")
    assert released["order"]["status"] == "cancelled"
    assert released["order"]["reserved_until"] is None
    assert await mk.stock_of(settings, pears["id"]) == 4  # given back (in memory, then CAS)
    assert await mk.slow_batches(settings) == slow  # decided from memory, order and stock
    conn = await mk.db(settings)
    try:
        row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", order["id"])
    finally:
        await conn.close()
    assert row is not None and row["status"] == "cancelled" and row["reason"] == "test"
    assert row["updated_at"].isoformat() == released["order"]["updated_at"]
    again = await market.step(who, order["id"], "release", SYSTEM, "test")  # its key: replayed
    assert again["order"]["status"] == "cancelled"
    assert await mk.stock_of(settings, pears["id"]) == 4  # nothing given back twice
    path = f"/api/v1/vendor/listings/{pears['id']}/stock"
    status, out = await mk.rest(api, "POST", path, {"set": 2}, seller.access_token)
    assert status == 200, out
    with pytest.raises(OutOfStock) as refused:  # the vendor's 2, not the remembered 4
        await _reserve(server, settings, buyer, pears, 3)
    assert refused.value.details["available"] == 2
    await _reserve(server, settings, buyer, pears, 2)
    assert await mk.stock_of(settings, pears["id"]) == 0


async def test_a_refused_retry_of_a_committed_reservation_answers_its_first_result(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 45), "memory-plums")
    plums = await mk.listing(api, seller.access_token, title="Plums", stock=2, price=150)
    buyer = await api.signup("memory-plums-buyer")
    group = await mk.open_group(settings, buyer.id, plums["currency"])
    line = {"listing_id": plums["id"], "title": "Plums", "qty": 2, "unit_price": 150}
    first = OrderReserve(user_id=buyer.id, key=uuid.uuid4().hex, vendor_id=plums["vendor_id"],
                         group_id=group, items=(line,), total=300, currency=plums["currency"],
                         ttl_s=120)  # fmt: skip
    market = server.app[SERVICES].market
    placed = (await market.mutate(first))["order"]
    assert await mk.stock_of(settings, plums["id"]) == 0
    slow = await mk.slow_batches(settings)
    # sold out now: the retry is refused from memory like the new ones beside it, and the
    # batch's refusals ask for their records in one query: the retry's first result answers it
    outcomes = await asyncio.gather(
        market.mutate(first),
        *(_reserve(server, settings, buyer, plums, 1) for _ in range(3)),
        return_exceptions=True,
    )
    again = outcomes[0]
    assert isinstance(again, dict) and again["order"]["id"] == placed["id"], outcomes
    assert all(isinstance(o, OutOfStock) for o in outcomes[1:]), outcomes
    assert await mk.slow_batches(settings) == slow  # no careful run: refusals write nothing
    assert await mk.stock_of(settings, plums["id"]) == 0
