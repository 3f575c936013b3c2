"""Marketplace over real websockets, shards, Postgres and Redis: browse, race, pay, expire."""

from __future__ import annotations

import asyncio
import uuid

import h3
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from models.errors import Conflict, NotFound
from models.market import OrderReserve, RefundRecord, RefundSettle
from models.placement import cell_key
from services.checkout import SYSTEM
from services.market import Actor
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def test_browse_filters_sorts_pages_and_sees_listing_changes_live(
    api: Api, settings: Settings
) -> None:
    here = mk.spot(settings, 0)
    near = mk.neighbour(settings, here)
    seller, _ = await mk.vendor(api, near, "bakery")
    tok = seller.access_token
    loaf = await mk.listing(api, tok, title="Rye sourdough loaf", price=500)
    await mk.listing(api, tok, title="Croissant", category="pastry", price=250)
    await mk.listing(api, tok, title="Baguette", price=300)
    buyer = await api.signup("browser")
    ws = await api.connect(buyer)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    at = {"lat": here[0], "lng": here[1]}

    everything = await ws.ok("listings.nearby", {**at, "sort": "price"})
    assert [x["price"] for x in everything["items"]] == [250, 300, 500]
    assert everything["items"][0]["distance_m"] > 0
    found = await ws.ok("listings.nearby", {**at, "q": "sourdough"})
    assert [x["id"] for x in found["items"]] == [loaf["id"]]
    bread = await ws.ok("listings.nearby", {**at, "category": "bread", "max_price": 400})
    assert [x["title"] for x in bread["items"]] == ["Baguette"]
    page1 = await ws.ok("listings.nearby", {**at, "sort": "newest", "limit": 2})
    page2 = await ws.ok("listings.nearby", {**at, "sort": "newest", "cursor": page1["next_cursor"]})
    titles = [x["title"] for x in page1["items"] + page2["items"]]
    assert titles == ["Baguette", "Croissant", "Rye sourdough loaf"] and not page2["next_cursor"]
    bad = await ws.request("listings.nearby", {**at, "cursor": "garbage"})
    assert bad["error"]["code"] == "bad_request"
    assert (await ws.ok("listing.get", {"listing_id": loaf["id"]}))["listing"]["stock"] == 10
    missing = await ws.request("listing.get", {"listing_id": "nope"})
    assert missing["error"]["code"] == "not_found"

    path = f"/api/v1/vendor/listings/{loaf['id']}/stock"
    status, _ = await mk.rest(api, "POST", path, {"delta": -3}, tok)
    assert status == 200
    event = await ws.next_event("listing.updated")
    assert event["stream"] == f"feed:{loaf['cell']}" and event["data"]["listing"]["stock"] == 7
    status, body = await mk.rest(api, "POST", path, {"delta": -8}, tok)
    assert status == 409 and body["error"]["code"] == "conflict"
    await ws.close()


async def test_fifty_buyers_race_for_five_units(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 1), "scarce")
    item = await mk.listing(api, seller.access_token, title="Limited print", stock=5, price=1000)
    buyers = await asyncio.gather(*(api.signup(f"racer{i}") for i in range(50)))
    sockets = await asyncio.gather(*(api.connect(b) for b in buyers))
    for ws in sockets:
        await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})

    replies = await asyncio.gather(
        *(
            ws.request("checkout", {"payment": mk.APPROVE}, key=uuid.uuid4().hex, timeout=90)
            for ws in sockets
        )
    )
    won = [r for r in replies if r["ok"]]
    lost = [r for r in replies if not r["ok"]]
    assert len(won) == 5, [r.get("error") for r in lost][:3]
    assert len(lost) == 45 and {r["error"]["code"] for r in lost} == {"out_of_stock"}
    assert all(r["data"]["orders"][0]["status"] == "paid" for r in won)
    conn = await mk.db(settings)
    try:
        assert await conn.fetchval("SELECT stock FROM listings WHERE id = $1", item["id"]) == 0
        sold = await conn.fetchval(
            "SELECT sum(l.qty) FROM order_lines l JOIN orders o ON o.id = l.order_id"
            " WHERE l.listing_id = $1 AND o.status = 'paid'",
            item["id"],
        )
        assert sold == 5
    finally:
        await conn.close()
    for ws in sockets:
        await ws.close()


async def test_declined_payment_releases_and_expired_reservation_returns_stock(
    api: Api, settings: Settings
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 2), "release")
    item = await mk.listing(api, seller.access_token, stock=4)
    buyer = await api.signup("unlucky")
    ws = await api.connect(buyer)

    declined = await mk.buy(ws, item["id"], 3, mk.DECLINE)
    assert declined["error"]["code"] == "payment_failed"
    assert await mk.stock_of(settings, item["id"]) == 4
    mine = await ws.ok("orders.list", {})
    assert mine["items"][0]["status"] == "cancelled"
    assert (await ws.ok("cart.get"))["items"][0]["qty"] == 3  # the cart is kept to retry

    pending = await ws.request("checkout", {"payment": mk.ACTION}, key=uuid.uuid4().hex)
    assert pending["ok"] and pending["data"]["payment"]["status"] == "requires_action"
    order = pending["data"]["orders"][0]
    assert order["status"] == "pending_payment" and order["reserved_until"]
    assert await mk.stock_of(settings, item["id"]) == 1
    await mk.run_out(settings, order["id"])  # let time pass: the reservation runs out
    await mk.order_event(ws, order["id"], "cancelled", timeout=20)
    assert await mk.stock_of(settings, item["id"]) == 4
    await ws.close()


async def test_paid_order_lifecycle_refund_and_illegal_steps(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 3), "lifecycle")
    tok = seller.access_token
    item = await mk.listing(api, tok, stock=5, price=700)
    vendor_ws = await api.connect(seller)
    buyer = await api.signup("lifecycle-buyer")
    ws = await api.connect(buyer)

    key = uuid.uuid4().hex
    await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 2})
    first = await ws.ok("checkout", {"payment": mk.APPROVE}, key=key)
    again = await ws.ok("checkout", {"payment": mk.APPROVE}, key=key)
    assert first == again  # a retry with the same key returns the first result
    order = first["orders"][0]
    assert order["status"] == "paid" and order["total"] == 1400
    assert (await ws.ok("cart.get"))["items"] == []
    seen = await vendor_ws.next_event("order.updated")
    assert seen["stream"] == f"user:{seller.id}"

    base = f"/api/v1/vendor/orders/{order['id']}"
    status, body = await mk.rest(api, "POST", f"{base}/fulfil", None, tok)
    assert status == 409 and body["error"]["code"] == "conflict"  # paid cannot be fulfilled
    status, body = await mk.rest(api, "POST", f"{base}/accept", None, tok)
    assert status == 200 and body["order"]["status"] == "accepted"
    cancel = await ws.request("order.cancel", {"order_id": order["id"]}, key=uuid.uuid4().hex)
    assert cancel["error"]["code"] == "conflict"  # too late for the buyer once accepted
    status, body = await mk.rest(api, "POST", f"{base}/cancel", None, tok)
    assert status == 200 and body["order"]["status"] == "refunded"
    assert await mk.stock_of(settings, item["id"]) == 5
    refund = await mk.refund_of(settings, order["id"])
    assert refund["status"] == "succeeded" and refund["amount"] == 1400
    assert refund["refunded_amount"] == 1400

    # The buyer's own cancel of a paid order refunds it too; a second cancel is refused.
    second = (await mk.buy(ws, item["id"], 1, mk.APPROVE))["data"]["orders"][0]
    done = await ws.mutate("order.cancel", {"order_id": second["id"]})
    assert done["order"]["status"] == "refunded"
    twice = await ws.request("order.cancel", {"order_id": second["id"]}, key=uuid.uuid4().hex)
    assert twice["error"]["code"] == "conflict"

    third = (await mk.buy(ws, item["id"], 1, mk.APPROVE))["data"]["orders"][0]
    for action in ("accept", "fulfil"):
        status, _ = await mk.rest(api, "POST", f"/api/v1/vendor/orders/{third['id']}/{action}",
                                  None, tok)  # fmt: skip
        assert status == 200
    completed = await ws.mutate("order.complete", {"order_id": third["id"]})
    assert completed["order"]["status"] == "completed"
    for sock in (ws, vendor_ws):
        await sock.close()


async def _wait_status(settings: Settings, order_id: str, want: str) -> str:
    conn = await mk.db(settings)
    try:
        for _ in range(300):
            status = await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
            if status == want:
                break
            await asyncio.sleep(0.1)
        return str(status)
    finally:
        await conn.close()


async def test_early_expire_records_nothing_so_a_later_sweep_still_expires(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """``expire`` before the reservation ran out (by the database clock) is a typed error, not
    a no-op stored under the sweeper's fixed key that every later sweep would replay."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 33), "early-expire")
    item = await mk.listing(api, seller.access_token, stock=2)
    buyer = await api.signup("early-expire-buyer")
    ws = await api.connect(buyer)
    order = (await mk.buy(ws, item["id"], 1, mk.ACTION))["data"]["orders"][0]
    await ws.close()
    assert order["status"] == "pending_payment"
    who = Actor(SYSTEM, f"expire:{order['id']}")
    with pytest.raises(Conflict):
        market = server.app[SERVICES].market
        await market.act(who, order["id"], "expire", SYSTEM, "reservation expired")
    conn = await mk.db(settings)
    try:
        recorded = await conn.fetchval(
            "SELECT count(*) FROM idempotency WHERE user_id = $1 AND key = $2", SYSTEM, who.key
        )
        assert recorded == 0
        await conn.execute(
            "UPDATE orders SET reserved_until = now() - interval '1 second' WHERE id = $1",
            order["id"],
        )
    finally:
        await conn.close()
    assert await _wait_status(settings, order["id"], "cancelled") == "cancelled"
    assert await mk.stock_of(settings, item["id"]) == 2


async def test_group_state_never_regresses_and_awaiting_is_not_frozen(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """The provider settles a 3-D Secure checkout: a retry with the key sees it completed (no
    stale ``awaiting_payment`` answer), and a late decline changes nothing."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 34), "group-state")
    item = await mk.listing(api, seller.access_token, stock=2)
    buyer = await api.signup("group-state-buyer")
    ws = await api.connect(buyer)
    await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
    key = uuid.uuid4().hex
    first = await ws.ok("checkout", {"payment": mk.ACTION}, key=key)
    assert first["payment"]["status"] == "requires_action"
    group_id = first["orders"][0]["group_id"]
    conn = await mk.db(settings)
    try:  # the provider's webhook: captured
        await conn.execute("UPDATE payments SET status = 'captured' WHERE group_id = $1", group_id)
        checkout = server.app[SERVICES].checkout
        await checkout.settle(group_id, "captured", "hook1#")
        again = await ws.ok("checkout", {"payment": mk.ACTION}, key=key)
        assert again["payment"]["status"] == "captured"
        assert [o["status"] for o in again["orders"]] == ["paid"]
        await checkout.settle(group_id, "declined", "hook2#")  # late, after success
        group = await conn.fetchval("SELECT status FROM order_groups WHERE id = $1", group_id)
        assert group == "completed"
        assert await conn.fetchval(
            "SELECT status FROM orders WHERE group_id = $1", group_id
        ) == "paid"  # fmt: skip
    finally:
        await conn.close()
    await ws.close()


async def test_a_refund_already_recorded_for_the_order_is_the_one_run(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """An orphaned capture's refund row already there: its id is returned and executed, not a
    fresh one. And a step into ``refunded`` after a partial refund refunds only what is left,
    as a refund of its own (several rows per order)."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 37), "refund-conflict")
    item = await mk.listing(api, seller.access_token, stock=4, price=300)
    buyer = await api.signup("refund-conflict-buyer")
    ws = await api.connect(buyer)
    paid = (await mk.buy(ws, item["id"], 1, mk.APPROVE))["data"]["orders"][0]
    orphan = (await mk.buy(ws, item["id"], 1, mk.APPROVE))["data"]["orders"][0]
    await ws.close()
    market = server.app[SERVICES].market
    conn = await mk.db(settings)
    try:
        await conn.execute(
            "INSERT INTO refunds (id, order_id, payment_id, amount, status)"
            " SELECT $1, o.id, p.id, o.total, 'pending' FROM orders o"
            " JOIN payments p ON p.group_id = o.group_id WHERE o.id = $2",
            "pre-" + orphan["id"],
            orphan["id"],
        )
        part = await market.refund(Actor(SYSTEM, uuid.uuid4().hex), paid["id"], "admin", 100)
        assert part["order"]["status"] == "paid" and part["order"]["refunded"] == 100
        who = Actor(buyer.id, uuid.uuid4().hex)
        done = await market.act(who, paid["id"], "cancel", "buyer")
        assert done["refund_id"] != part["refund_id"]
        assert done["order"]["status"] == "refunded" and done["order"]["refunded"] == 300
        await server.app[SERVICES].checkout._refund_orphan(orphan["id"])
        states = await conn.fetch(
            "SELECT amount, status FROM refunds WHERE order_id = ANY($1::text[])"
            " ORDER BY order_id = $2, created_at",
            [paid["id"], orphan["id"]],
            orphan["id"],
        )
    finally:
        await conn.close()
    assert [(r["amount"], r["status"]) for r in states] == [
        (100, "succeeded"), (200, "succeeded"), (300, "succeeded"),
    ]  # fmt: skip


async def test_reserve_refuses_a_listing_whose_currency_changed(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """Same price, other currency since the cart was snapshotted: a conflict, stock kept."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 38), "currency-swap")
    item = await mk.listing(api, seller.access_token, stock=3, price=500, currency="eur")
    buyer = await api.signup("currency-swap-buyer")
    line = {"listing_id": item["id"], "title": item["title"], "qty": 1, "unit_price": 500}
    command = OrderReserve(user_id=buyer.id, key=uuid.uuid4().hex, vendor_id=item["vendor_id"],
                           items=(line,), total=500, group_id=uuid.uuid4().hex, currency="usd",
                           ttl_s=60)  # fmt: skip
    with pytest.raises(Conflict):
        await server.app[SERVICES].market.mutate(command)
    assert await mk.stock_of(settings, item["id"]) == 3


async def test_a_deleted_listing_leaves_carts_alone_and_is_skipped(
    api: Api, settings: Settings
) -> None:
    """The listing's cell owner does not touch buyers' carts (owned by their keys): a deleted
    listing is left out of the cart and of checkout instead."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 40), "delete-in-cart")
    gone = await mk.listing(api, seller.access_token, stock=3, price=100)
    kept = await mk.listing(api, seller.access_token, stock=3, price=200)
    buyer = await api.signup("delete-in-cart-buyer")
    ws = await api.connect(buyer)
    for listing in (gone, kept):
        await ws.mutate("cart.add", {"listing_id": listing["id"], "qty": 1})
    path = f"/api/v1/vendor/listings/{gone['id']}"
    status, _ = await mk.rest(api, "DELETE", path, None, seller.access_token)
    assert status in (200, 204)
    cart = await ws.ok("cart.get")
    assert [x["listing_id"] for x in cart["items"]] == [kept["id"]]
    paid = await ws.ok("checkout", {"payment": mk.APPROVE}, key=uuid.uuid4().hex)
    assert [line["listing_id"] for line in paid["orders"][0]["items"]] == [kept["id"]]
    await ws.close()


async def test_refund_rows_are_written_by_the_orders_owner_shard(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """Rule 2: an orphaned capture's refund is recorded (``refund.record``) and settled
    (``refund.settle``) by the order's owner shard, under the system's idempotency keys; the
    same commands routed to another cell are refused and change nothing."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 41), "refund-owner")
    item = await mk.listing(api, seller.access_token, stock=3, price=450)
    buyer = await api.signup("refund-owner-buyer")
    ws = await api.connect(buyer)
    order = (await mk.buy(ws, item["id"], 1, mk.APPROVE))["data"]["orders"][0]
    await ws.close()
    market = server.app[SERVICES].market
    other_cell = h3.latlng_to_cell(*mk.spot(settings, 42), settings.h3_resolution)
    assert cell_key(other_cell) != cell_key(item["cell"])
    stray = Actor(SYSTEM, f"stray:{uuid.uuid4().hex}")
    # A command's route is its order's cell (from the id): the same order id homed in another
    # cell reaches that cell's owner, which has no such order: nothing written.
    forged = f"{other_cell}.{order['id'].split('.', 1)[1]}"
    with pytest.raises(NotFound):
        await market.mutate(RefundRecord(user_id=SYSTEM, key=stray.key, order_id=forged))

    await server.app[SERVICES].checkout._refund_orphan(order["id"])
    refund = await mk.refund_of(settings, order["id"])
    conn = await mk.db(settings)
    try:
        keys = await conn.fetch(
            "SELECT key, op FROM idempotency WHERE user_id = $1 AND key = ANY($2::text[])"
            " ORDER BY op",
            SYSTEM,
            [f"orphan:{order['id']}", f"refund:{refund['id']}", stray.key],
        )
        with pytest.raises(NotFound):  # a settle sent to a shard of another cell
            await market.mutate(RefundSettle(user_id=SYSTEM, key=stray.key, cell=other_cell,
                                             refund_id=refund["id"], outcome="failed",
                                             reason="stray"))  # fmt: skip
        after = await conn.fetchrow("SELECT status, error FROM refunds WHERE id = $1", refund["id"])
    finally:
        await conn.close()
    assert refund["status"] == "succeeded" and refund["refunded_amount"] == 450
    assert [(r["key"], r["op"]) for r in keys] == [
        (f"orphan:{order['id']}", "refund.record"),
        (f"refund:{refund['id']}", "refund.settle"),
    ]
    assert after["status"] == "succeeded" and after["error"] is None
