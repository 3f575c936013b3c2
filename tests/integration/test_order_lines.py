"""An order's lines are never without their order or their listing (migration 0033 dropped the
foreign keys that checked it): every code path that writes lines writes its order and takes its
listings' stock in the same statement, so all of it commits or none does. Run here: the
reservation from the owner's memory (the batch statement's rows), from SQL (a careful re-run
after the memory was stale), refusals beside reservations, a line of no listing, a whole
checkout, and a batch statement whose order fails. Real shards, Postgres and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from models.errors import NotFound, OutOfStock
from models.ids import cell_scoped_id
from models.market import OrderReserve
from store import batch_write, order_writes
from tests.integration import market_kit as mk
from tests.integration.client import Api, User

pytestmark = pytest.mark.integration

_ORPHANS = (
    "SELECT count(*) FROM order_lines l WHERE NOT EXISTS"
    " (SELECT 1 FROM orders o WHERE o.id = l.order_id)"
    " OR NOT EXISTS (SELECT 1 FROM listings x WHERE x.id = l.listing_id)"
)


async def _reserve(
    server: TestServer, settings: Settings, buyer: User, item: dict[str, Any], qty: int
) -> dict[str, Any]:
    """One ``order.reserve`` of ``qty`` of ``item`` at its owner, in a group of its own."""
    group = await mk.open_group(settings, buyer.id, item["currency"])
    line = {"listing_id": item["id"], "title": item["title"], "qty": qty,
            "unit_price": item["price"]}  # fmt: skip
    command = OrderReserve(user_id=buyer.id, key=uuid.uuid4().hex, vendor_id=item["vendor_id"],
                           group_id=group, items=(line,), total=qty * item["price"],
                           currency=item["currency"], ttl_s=120)  # fmt: skip
    return dict((await server.app[SERVICES].market.mutate(command))["order"])


async def _lines(settings: Settings, order_id: str) -> list[tuple[str, int]]:
    rows = await mk.fetch(
        settings,
        "SELECT l.listing_id, l.qty FROM order_lines l JOIN orders o ON o.id = l.order_id"
        " WHERE l.order_id = $1 ORDER BY l.listing_id",
        order_id,
    )
    return [(r["listing_id"], r["qty"]) for r in rows]


async def test_every_path_that_writes_lines_writes_their_order(
    api: Api, settings: Settings, server: TestServer
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 140), "lines-shop")
    bread = await mk.listing(api, seller.access_token, title="Bread", stock=10, price=300)
    buyer = await api.signup("lines-buyer")
    # from memory: the listing read once, then the order and its line rows of the batch statement
    remembered = await _reserve(server, settings, buyer, bread, 1)
    assert await _lines(settings, remembered["id"]) == [(bread["id"], 1)]
    # from SQL: the memory made stale behind the owner (only a test can), so the compare-and-set
    # fails, the batch runs carefully and the reservation is one statement from SQL
    conn = await mk.db(settings)
    try:
        await conn.execute("UPDATE listings SET stock = 8 WHERE id = $1", bread["id"])
    finally:
        await conn.close()
    slow = await mk.slow_batches(settings)
    from_sql = await _reserve(server, settings, buyer, bread, 2)
    assert await mk.slow_batches(settings) == slow + 1
    assert await _lines(settings, from_sql["id"]) == [(bread["id"], 2)]
    # refusals beside reservations in the same batches: a refused part writes neither
    outcomes = await asyncio.gather(
        *(_reserve(server, settings, buyer, bread, qty) for qty in (1, 50, 1, 50)),
        return_exceptions=True,
    )
    placed = [o for o in outcomes if isinstance(o, dict)]
    assert len(placed) == 2 and sum(isinstance(o, OutOfStock) for o in outcomes) == 2, outcomes
    for order in placed:
        assert await _lines(settings, order["id"]) == [(bread["id"], 1)]
    # a line of a listing that does not exist (an id of the vendor's cell): refused, nothing
    ghost = {**bread, "id": cell_scoped_id(bread["id"].partition(".")[0])}
    with pytest.raises(NotFound):
        await _reserve(server, settings, buyer, ghost, 1)
    ghosts = await mk.fetch(
        settings, "SELECT count(*) AS n FROM order_lines WHERE listing_id = $1", ghost["id"]
    )
    assert ghosts[0]["n"] == 0
    # a whole checkout through the gateway
    ws = await api.connect(buyer)
    try:
        reply = await mk.buy(ws, bread["id"], 1, mk.APPROVE)
    finally:
        await ws.close()
    assert reply["ok"], reply
    for order in reply["data"]["orders"]:
        assert await _lines(settings, order["id"]) == [(bread["id"], 1)]
    sold = await mk.fetch(
        settings, "SELECT sum(qty) AS n FROM order_lines WHERE listing_id = $1", bread["id"]
    )
    assert sold[0]["n"] == 6 and await mk.stock_of(settings, bread["id"]) == 8 - 2 - 2 - 1
    # and across everything this session wrote so far: no line without its order
    assert (await mk.fetch(settings, _ORPHANS))[0]["count"] == 0


async def test_a_batch_statement_whose_order_fails_writes_none_of_its_lines(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """What the memory's path relies on: its order and lines are rows of one statement, so an
    order that cannot be written (here its id already taken) takes its lines with it."""
    seller, vendor = await mk.vendor(api, mk.spot(settings, 141), "lines-atomic")
    jam = await mk.listing(api, seller.access_token, title="Jam", stock=5, price=200)
    honey = await mk.listing(api, seller.access_token, title="Honey", stock=5, price=200)
    buyer = await api.signup("lines-atomic-buyer")
    taken = await _reserve(server, settings, buyer, jam, 1)
    conn = await mk.db(settings)
    try:
        fence = await conn.fetchrow("SELECT shard, version FROM shard_fences LIMIT 1")
        assert fence is not None
        at = await conn.fetchval("SELECT now()")
        # the order's id is taken (the reservation above): its insert fails; its line of
        # another listing would be new, and is written only if the whole statement is
        order = order_writes.ORDERS.row(taken["id"], uuid.uuid4().hex, buyer.id, vendor["id"],
                                        seller.id, jam["cell"], 200, jam["currency"], at, at,
                                        None, False)  # fmt: skip
        line = order_writes.ORDER_LINES.row(taken["id"], honey["id"], "Honey", 1, 200)
        with pytest.raises(asyncpg.UniqueViolationError):  # sent alone, as a batch may be
            await batch_write.write(conn, [], [order, line], (fence["shard"], fence["version"]))
        lines = await conn.fetch(
            "SELECT listing_id FROM order_lines WHERE order_id = $1", taken["id"]
        )
    finally:
        await conn.close()
    assert [r["listing_id"] for r in lines] == [jam["id"]]  # nothing of the failed statement
