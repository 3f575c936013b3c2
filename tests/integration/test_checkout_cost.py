"""What a checkout costs (issue 20): a reservation is one statement that writes nothing unless
every line can be taken, a system confirmation one conditional write with the purchases in the
batch, and the checkout's answer names its vendors from the shards' memory (no vendor read at
the gateway); a plain step of an order the owner remembers is decided from memory, and
from SQL when the row was not as remembered. Real websockets, shards, Postgres and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from models.errors import Conflict, Unavailable
from models.market import OrderReserve, StockProbe
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
        # the first attempt stored no answer (the payment's outcome completed the group): the
        # first retry derives it again from the steps' records, which name the vendors, and
        # stores it; a replay of the stored answer reads them
        again = await ws.request("checkout", body, key=key, timeout=60)
        assert again["ok"] and again["data"]["orders"] == reply["data"]["orders"]
        assert reads == []
        replayed = await ws.request("checkout", body, key=key, timeout=60)
        assert replayed["ok"] and replayed["data"]["orders"] == reply["data"]["orders"]
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


async def _reserved(api: Api, settings: Settings, server: TestServer, i: int) -> dict[str, Any]:
    """A pending order reserved straight at its owner (no checkout around it)."""
    seller, _ = await mk.vendor(api, mk.spot(settings, i), f"cost-memory-{i}")
    item = await mk.listing(api, seller.access_token, title="Jar", stock=3, price=500)
    buyer = await api.signup(f"cost-memory-buyer-{i}")
    group = await mk.open_group(settings, buyer.id, item["currency"], 500)
    line = {"listing_id": item["id"], "title": item["title"], "qty": 1, "unit_price": 500}
    command = OrderReserve(user_id=buyer.id, key=uuid.uuid4().hex, vendor_id=item["vendor_id"],
                           group_id=group, items=(line,), total=500, currency=item["currency"],
                           ttl_s=60)  # fmt: skip
    return dict((await server.app[SERVICES].market.mutate(command))["order"])


async def test_a_confirmation_from_memory_is_what_postgres_then_holds(
    api: Api, settings: Settings, server: TestServer
) -> None:
    order = await _reserved(api, settings, server, 35)
    slow = await mk.slow_batches(settings)
    who = Actor(SYSTEM, f"test-confirm-{uuid.uuid4().hex}")
    done = await server.app[SERVICES].market.step(who, order["id"], "confirm", SYSTEM, "paid")
    assert done["order"]["status"] == "paid" and done["order"]["reserved_until"] is None
    conn = await mk.db(settings)
    try:
        row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", order["id"])
    finally:
        await conn.close()
    assert row is not None and row["status"] == "paid" and row["reserved_until"] is None
    assert row["updated_at"].isoformat() == done["order"]["updated_at"]  # the same instant
    assert row["reason"] == "paid"
    assert await mk.slow_batches(settings) == slow  # the fast path: the row was as remembered


async def test_a_remembered_order_moved_behind_the_owner_is_decided_from_sql(
    api: Api, settings: Settings, server: TestServer
) -> None:
    order = await _reserved(api, settings, server, 36)
    conn = await mk.db(settings)
    try:  # what the shard remembers is now stale (no op does this: only a test can)
        await conn.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", order["id"])
        slow = await mk.slow_batches(settings)
        who = Actor(SYSTEM, f"test-confirm-{uuid.uuid4().hex}")
        with pytest.raises(Conflict):  # a cancelled order cannot be confirmed
            await server.app[SERVICES].market.step(who, order["id"], "confirm", SYSTEM, "paid")
        # the compare-and-set refused the remembered step: the batch ran carefully, from SQL
        assert await mk.slow_batches(settings) == slow + 1
        status = await conn.fetchval("SELECT status FROM orders WHERE id = $1", order["id"])
        bought = await conn.fetchval(
            "SELECT count(*) FROM interactions WHERE item_id = $1 AND kind = 'purchase'",
            order["items"][0]["listing_id"],
        )
        recorded = await conn.fetchval(
            "SELECT count(*) FROM idempotency WHERE user_id = $1 AND key = $2", SYSTEM, who.key
        )
    finally:
        await conn.close()
    assert status == "cancelled" and bought == 0
    assert recorded == 0  # the refused fast path wrote nothing, not even its record


async def test_a_system_confirmation_keeps_no_record_and_its_repeat_changes_nothing(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """The system's ``confirm`` and ``release`` write no idempotency record (a repeat is
    answered by the order's state: ``OrderAct.recorded``); its ``hold`` and a reservation do."""
    order = await _reserved(api, settings, server, 37)
    market = server.app[SERVICES].market
    who = Actor(SYSTEM, f"test-confirm-{uuid.uuid4().hex}")
    done = await market.step(who, order["id"], "confirm", SYSTEM, "paid")
    assert done["changed"] is True and done["order"]["status"] == "paid"
    again = await market.step(who, order["id"], "confirm", SYSTEM, "paid")  # same key: a retry
    assert again["changed"] is False and again["order"]["status"] == "paid"
    conn = await mk.db(settings)
    try:
        records = await conn.fetchval(
            "SELECT count(*) FROM idempotency WHERE user_id = $1 AND key = $2", SYSTEM, who.key
        )
        bought = await conn.fetchval(
            "SELECT count(*) FROM interactions WHERE item_id = $1 AND kind = 'purchase'",
            order["items"][0]["listing_id"],
        )
        paid = await conn.fetchval(
            "SELECT count(*) FROM stream_events WHERE ev = 'order.updated'"
            " AND data -> 'order' ->> 'id' = $1 AND data -> 'order' ->> 'status' = 'paid'",
            order["id"],
        )
        # refunded later: a confirmation repeated then still took effect long ago
        await conn.execute("UPDATE orders SET status = 'refunded' WHERE id = $1", order["id"])
        late = await market.step(who, order["id"], "confirm", SYSTEM, "paid")
        assert late["changed"] is False and late["order"]["status"] == "refunded"

        held = await _reserved(api, settings, server, 38)
        hold = Actor(SYSTEM, f"test-hold-{uuid.uuid4().hex}")
        await market.step(hold, held["id"], "hold", SYSTEM, "review")
        kept = await conn.fetchval(
            "SELECT count(*) FROM idempotency WHERE user_id = $1 AND key = $2", SYSTEM, hold.key
        )
        release = Actor(SYSTEM, f"test-release-{uuid.uuid4().hex}")
        gone = await market.step(release, held["id"], "release", SYSTEM, "rejected")
        assert gone["order"]["status"] == "cancelled"
        twice = await market.step(release, held["id"], "release", SYSTEM, "rejected")
        assert twice["changed"] is False and twice["order"]["status"] == "cancelled"
        released = await conn.fetchval(
            "SELECT count(*) FROM idempotency WHERE user_id = $1 AND key = $2", SYSTEM,
            release.key,
        )  # fmt: skip
        stock = await conn.fetchval(
            "SELECT stock FROM listings WHERE id = $1", held["items"][0]["listing_id"]
        )
    finally:
        await conn.close()
    assert records == 0 and bought == 1 and paid == 2  # buyer and vendor, once
    assert kept == 1 and released == 0
    assert stock == 3  # released once: its one unit back, not two


_PLANS = "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1"


async def test_the_coalesced_statements_are_planned_once(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """The fraud facts of a buy-now are one ``unnest`` statement (a Coalescer's) that Postgres
    would re-plan at every call by default; on the checkout's pool of generic plans it is
    planned once per connection, and a plain connection shows what that saves."""
    from services.checkout_reads import FACTS_MANY

    seller, _ = await mk.vendor(api, mk.spot(settings, 39), "cost-plans")
    item = await mk.listing(api, seller.access_token, title="Plan", stock=20, price=100)
    buyer = await api.signup("cost-plans-buyer")
    ws = await api.connect(buyer)
    try:
        body = {"payment": mk.APPROVE, "lines": [{"listing_id": item["id"], "qty": 1}]}
        for _ in range(7):  # buy-now: the facts are read by the coalesced statement
            reply = await ws.request("checkout", body, key=uuid.uuid4().hex, timeout=60)
            assert reply["ok"], reply
    finally:
        await ws.close()
    batches = server.app[SERVICES].checkout.batches
    assert batches is not server.app[SERVICES].db
    held = [await batches.acquire() for _ in range(batches.get_size())]
    try:
        generic = custom = 0
        for conn in held:
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            for row in await conn.fetch(_PLANS, FACTS_MANY):
                generic, custom = generic + row["generic_plans"], custom + row["custom_plans"]
    finally:
        for conn in held:
            await batches.release(conn)
    assert generic >= 1 and custom == 0, (generic, custom)
    # the same statement on a connection of the default setting: a custom plan every call
    conn = await mk.db(settings)
    try:
        args = [[buyer.id], [buyer.id], ["fp"], ["127.0.0.1"], ["dev"]]
        statement = await conn.prepare(FACTS_MANY)
        for _ in range(8):
            await statement.fetch(*args)
        row = await conn.fetchrow(_PLANS, FACTS_MANY)
        assert (row["generic_plans"], row["custom_plans"]) == (0, 8), dict(row)
    finally:
        await conn.close()


async def test_a_sold_out_listing_refuses_the_next_checkouts_before_other_parts_reserve(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """Once a reservation found a listing out of stock, a checkout with a line of it asks
    that listing's owner first (``listing.stock_probe``): refused there, nothing is written
    anywhere, no group and no reservation at the other vendors' shards (the first such
    checkout, before anyone knew, reserved and released its other part). A retry of a key that
    bought before resumes; a restock clears the hint."""
    _, plenty, seller_b, last = await mk.two_shops(api, settings, 153, "scarce", 50, 1)
    both = [{"listing_id": plenty["id"], "qty": 1}, {"listing_id": last["id"], "qty": 1}]
    buyers = [await api.signup(f"scarce-buyer-{i}") for i in range(3)]
    sockets = [await api.connect(buyer) for buyer in buyers]
    try:
        first_key = uuid.uuid4().hex
        first = await sockets[0].ok("checkout", {"payment": mk.APPROVE, "lines": both[1:]},
                                    key=first_key)  # fmt: skip
        assert first["orders"][0]["status"] == "paid"  # the last cake
        for ws in sockets[1:]:
            reply = await ws.request("checkout", {"payment": mk.APPROVE, "lines": both},
                                     key=uuid.uuid4().hex, timeout=60)  # fmt: skip
            assert not reply["ok"] and reply["error"]["code"] == "out_of_stock", reply
        made = [
            await mk.fetch(settings, "SELECT status FROM orders WHERE buyer_id = $1", b.id)
            for b in buyers[1:]
        ]
        assert [r["status"] for r in made[0]] == ["cancelled"]  # reserved, then released
        assert made[1] == []  # the cake was known sold out: refused before the buns' shard
        assert await mk.stock_of(settings, plenty["id"]) == 50
        groups = [
            await mk.fetch(settings, "SELECT status FROM order_groups WHERE buyer_id = $1", b.id)
            for b in buyers[1:]
        ]
        assert [r["status"] for r in groups[0]] == ["failed"]
        assert groups[1] == []  # its owner's probe refused it: no group, no payment row
        # the first buyer's retry of the key that bought the cake resumes: no probe refusal
        again = await sockets[0].ok("checkout", {"payment": mk.APPROVE, "lines": both[1:]},
                                    key=first_key)  # fmt: skip
        assert again["orders"][0]["id"] == first["orders"][0]["id"]
        assert again["orders"][0]["status"] == "paid"
        # a refusal first asks whether its key made a group (a retry's): those lookups are
        # read together, one statement for all that arrive while one is in flight
        checkout = server.app[SERVICES].checkout
        asks = [(buyers[0].id, first_key)] + [(b.id, uuid.uuid4().hex) for b in buyers] * 8
        statements = checkout._groups_read.statements
        found = await asyncio.gather(*(checkout._find(user, key) for user, key in asks))
        assert found[0] is not None and found[0]["idem_key"] == first_key
        assert found[0]["buyer_id"] == buyers[0].id and found[0]["status"] == "completed"
        assert all(group is None for group in found[1:])
        assert checkout._groups_read.statements - statements <= 2  # not one per lookup
        # restocked by its vendor (through this gateway): the hint is gone, the next one buys
        status, _ = await mk.rest(api, "POST", f"/api/v1/vendor/listings/{last['id']}/stock",
                                  {"delta": 1}, seller_b.access_token)  # fmt: skip
        assert status == 200
        bought = await sockets[2].ok("checkout", {"payment": mk.APPROVE, "lines": both},
                                     key=uuid.uuid4().hex)  # fmt: skip
        assert sorted(o["status"] for o in bought["orders"]) == ["paid", "paid"]
    finally:
        for ws in sockets:
            await ws.close()


async def test_a_probe_that_fails_untyped_is_a_fault_and_one_that_fails_typed_says_nothing(
    api: Api, settings: Settings, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scarce line's probe answered with a typed error (its shard away or moving) says
    nothing: the reservation decides and the checkout buys. Any other exception from the probe
    is a fault, raised rather than read as "not short": the checkout answers ``unavailable``
    (retry with the same key) and writes nothing."""
    _, buns, _, cake = await mk.two_shops(api, settings, 157, "probe-fault", 50, 5)
    checkout = server.app[SERVICES].checkout
    router = checkout.market.router
    real_read = router.read
    failure: list[BaseException] = []

    async def read(command: Any) -> dict[str, Any]:
        if isinstance(command, StockProbe) and failure:
            raise failure[0]
        return await real_read(command)

    monkeypatch.setattr(router, "read", read)
    buyer = await api.signup("probe-fault-buyer")
    ws = await api.connect(buyer)
    lines = [{"listing_id": buns["id"], "qty": 1}, {"listing_id": cake["id"], "qty": 1}]
    try:
        checkout.scarce.mark(cake["id"])
        failure[:] = [RuntimeError("the probe broke")]
        faulted = await ws.request("checkout", {"payment": mk.APPROVE, "lines": lines},
                                   key=uuid.uuid4().hex, timeout=60)  # fmt: skip
        assert not faulted["ok"] and faulted["error"]["code"] == "unavailable", faulted
        groups = "SELECT id FROM order_groups WHERE buyer_id = $1"
        assert await mk.fetch(settings, groups, buyer.id) == []  # refused before any write
        assert await mk.stock_of(settings, cake["id"]) == 5
        checkout.scarce.mark(cake["id"])
        failure[:] = [Unavailable("the owner is moving")]
        bought = await ws.ok("checkout", {"payment": mk.APPROVE, "lines": lines},
                             key=uuid.uuid4().hex)  # fmt: skip
        assert sorted(o["status"] for o in bought["orders"]) == ["paid", "paid"]
        assert await mk.stock_of(settings, cake["id"]) == 4
    finally:
        await ws.close()
