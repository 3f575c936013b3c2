"""When a checkout's orders reach the inboxes (docs/protocol.md, ``order.updated``): at their
payment's outcome. A payment that settles at once announces its orders first as ``paid``; one
that waits for the buyer announces them as ``pending_payment`` (once, however often the
checkout is retried), then its outcome; an order its checkout released (a part out of stock, a
decline) is never announced. An owner that forgot its orders (a restart) still tells which
pending orders were announced: the orders table keeps it. Real websockets, shards, Postgres and
Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from actors.cell_host import CellHost
from actors.registry import HANDLERS, READERS
from cluster.config import Settings
from models.commands import ShardCommand
from models.ids import cell_of
from models.market import OrderAct, OrderAnnounce, OrderReserve
from models.placement import cell_key
from tests.integration import market_kit as mk
from tests.integration.client import Api, User, Ws

pytestmark = pytest.mark.integration


async def _announced(settings: Settings, user_id: str, order_id: str) -> list[str]:
    """The statuses ``order_id`` had in the ``order.updated`` events of ``user_id``'s inbox."""
    rows = await mk.fetch(
        settings,
        "SELECT data -> 'order' ->> 'status' AS status FROM stream_events"
        " WHERE stream = $1 AND ev = 'order.updated' AND data -> 'order' ->> 'id' = $2"
        ' ORDER BY "offset"',
        f"user:{user_id}",
        order_id,
    )
    return [r["status"] for r in rows]


async def _shop(
    api: Api, settings: Settings, i: int, name: str
) -> tuple[User, dict[str, Any], User, Ws]:
    """A vendor in its own neighbourhood with a listing of 5, and a buyer connected."""
    seller, _ = await mk.vendor(api, mk.spot(settings, i), f"announce-{name}")
    item = await mk.listing(api, seller.access_token, title=name, stock=5, price=400)
    buyer = await api.signup(f"announce-{name}-buyer")
    return seller, item, buyer, await api.connect(buyer)


async def test_a_settled_payment_announces_its_order_once_as_paid(
    api: Api, settings: Settings
) -> None:
    seller, item, buyer, ws = await _shop(api, settings, 150, "Loaf")
    try:
        out = await ws.ok("checkout", {"payment": mk.APPROVE, "lines": [
            {"listing_id": item["id"], "qty": 1}]}, key=uuid.uuid4().hex)  # fmt: skip
        order = out["orders"][0]
        assert order["status"] == "paid"
        event = await ws.next_event("order.updated", timeout=20)  # live: the first is paid
        assert event["data"]["order"]["id"] == order["id"]
        assert event["data"]["order"]["status"] == "paid"
        assert "announced" not in event["data"]["order"]  # the owner's own mark stays its own
        assert await _announced(settings, buyer.id, order["id"]) == ["paid"]
        assert await _announced(settings, seller.id, order["id"]) == ["paid"]
    finally:
        await ws.close()


async def test_a_part_released_by_its_checkout_is_never_announced(
    api: Api, settings: Settings
) -> None:
    seller_a, plenty, _, scarce = await mk.two_shops(api, settings, 151, "announce", 8, 1)
    buyer = await api.signup("announce-refused-buyer")
    ws = await api.connect(buyer)
    try:
        lines = [{"listing_id": plenty["id"], "qty": 3}, {"listing_id": scarce["id"], "qty": 2}]
        reply = await ws.request(
            "checkout", {"payment": mk.APPROVE, "lines": lines}, key=uuid.uuid4().hex, timeout=60
        )
        assert not reply["ok"] and reply["error"]["code"] == "out_of_stock", reply
        made = await mk.fetch(
            settings, "SELECT id, status FROM orders WHERE buyer_id = $1", buyer.id
        )  # the plentiful part was reserved at its own shard, then released
        assert [r["status"] for r in made] == ["cancelled"]
        assert await mk.stock_of(settings, plenty["id"]) == 8
        assert await _announced(settings, buyer.id, made[0]["id"]) == []
        assert await _announced(settings, seller_a.id, made[0]["id"]) == []

        declined = await ws.request(
            "checkout", {"payment": mk.DECLINE, "lines": lines[:1]}, key=uuid.uuid4().hex,
            timeout=60,
        )  # fmt: skip
        assert not declined["ok"] and declined["error"]["code"] == "payment_failed", declined
        rows = await mk.fetch(
            settings, "SELECT id FROM orders WHERE buyer_id = $1 AND id <> $2", buyer.id,
            made[0]["id"],
        )  # fmt: skip
        assert len(rows) == 1
        assert await _announced(settings, buyer.id, rows[0]["id"]) == []
        assert await _announced(settings, seller_a.id, rows[0]["id"]) == []
        assert await mk.stock_of(settings, plenty["id"]) == 8
    finally:
        await ws.close()


async def test_a_payment_waiting_for_the_buyer_announces_the_pending_order_once(
    api: Api, settings: Settings
) -> None:
    seller, item, buyer, ws = await _shop(api, settings, 152, "Tart")
    try:
        key = uuid.uuid4().hex
        body = {"payment": mk.ACTION, "lines": [{"listing_id": item["id"], "qty": 2}]}
        out = await ws.ok("checkout", body, key=key)
        assert out["payment"]["status"] == "requires_action"
        order = out["orders"][0]
        assert order["status"] == "pending_payment"
        event = await ws.next_event("order.updated", timeout=20)
        assert event["data"]["order"]["id"] == order["id"]
        assert event["data"]["order"]["status"] == "pending_payment"
        again = await ws.ok("checkout", body, key=key)  # a retry: the same, announced once
        assert again["orders"][0]["id"] == order["id"]
        assert await _announced(settings, buyer.id, order["id"]) == ["pending_payment"]
        assert await _announced(settings, seller.id, order["id"]) == ["pending_payment"]

        await mk.run_out(settings, order["id"])  # announced, so its end is too
        ended = await mk.order_event(ws, order["id"])
        assert ended["status"] == "cancelled"
        statuses = await _announced(settings, seller.id, order["id"])
        assert statuses == ["pending_payment", "cancelled"]
        assert await mk.stock_of(settings, item["id"]) == 5
    finally:
        await ws.close()


async def _as_owner(settings: Settings, cell: str, commands: list[ShardCommand]) -> list[Any]:
    """``commands`` run by a new host acting as ``cell``'s owner: an owner just restarted,
    which remembers none of the orders it reserved before."""
    host = CellHost("shard-0", settings, dict(HANDLERS), dict(READERS))
    await host.ready()
    try:
        owner = host.placement.owner(cell_key(cell)) if host.placement else None
        host.name = owner or host.name
        replies = []
        for command in commands:  # one batch each: each sees what the last one committed
            [reply] = await host.execute(host.placement_version(), [command])
            assert reply["ok"], reply
            replies.append(reply["data"])
        return replies
    finally:
        await host.close()


async def test_an_owner_that_forgot_its_orders_announces_each_pending_one_exactly_once(
    api: Api, settings: Settings
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 153), "announce-restart")
    item = await mk.listing(api, seller.access_token, title="Scone", stock=5, price=300)
    buyer = await api.signup("announce-restart-buyer")
    cell = str(cell_of(item["vendor_id"]))
    line = {"listing_id": item["id"], "title": item["title"], "qty": 1, "unit_price": 300}

    async def reserve() -> OrderReserve:
        group = await mk.open_group(settings, buyer.id, item["currency"], 300)
        return OrderReserve(user_id=buyer.id, key=uuid.uuid4().hex, vendor_id=item["vendor_id"],
                            group_id=group, items=(line,), total=300, currency=item["currency"],
                            ttl_s=120, announce=False)  # fmt: skip

    def system(command: type[OrderAct] | type[OrderAnnounce], order_id: str, **kw: Any) -> Any:
        return command(user_id="system", key=uuid.uuid4().hex, order_id=order_id, **kw)

    made = await _as_owner(settings, cell, [await reserve(), await reserve()])
    quiet, waiting = (reply["order"]["id"] for reply in made)
    assert await mk.stock_of(settings, item["id"]) == 3

    # restarted: the never-announced order is released quietly, the other announced once
    release = {"action": "release", "actor": "system", "reason": "checkout failed"}
    replies = await _as_owner(settings, cell, [system(OrderAct, quiet, **release),
                                               system(OrderAnnounce, waiting),
                                               system(OrderAnnounce, waiting)])  # fmt: skip
    assert [r["announced"] for r in replies[1:]] == [True, False]
    assert await mk.order_status(settings, quiet) == "cancelled"
    for user in (buyer.id, seller.id):
        assert await _announced(settings, user, quiet) == []
        assert await _announced(settings, user, waiting) == ["pending_payment"]

    # restarted again: the announced one ends where its inboxes hear it
    await _as_owner(settings, cell, [system(OrderAct, waiting, **release)])
    for user in (buyer.id, seller.id):
        assert await _announced(settings, user, waiting) == ["pending_payment", "cancelled"]
    assert await mk.stock_of(settings, item["id"]) == 5
