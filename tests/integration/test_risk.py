"""Fraud scoring end to end (issue 14, item 3): every order carries its checkout's risk; a
checkout over the threshold is held (payment authorised, not captured; buyer and vendor told
live), listed in the admin review queue, and released (captured, paid) or rejected (voided,
stock back) through the control actor with audit and roles; a hold nobody reviews is
rejected by the sweeper. The signals come from the checkout's one facts statement over real
Postgres: shared cards, declines, addresses and devices, distance and impossible travel.

The session's gateway holds nothing (``risk_hold_score=101``, conftest.py); these tests run a
gateway of their own with the default threshold, behind one trusted proxy (addresses from
``X-Forwarded-For``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, User, Ws

pytestmark = pytest.mark.integration

PARIS = (48.8566, 2.3522)


@pytest.fixture(scope="module")
async def risky_server(settings: Settings) -> AsyncIterator[TestServer]:
    held = settings.model_copy(update={"risk_hold_score": 60, "trusted_proxy_hops": 1})
    srv = TestServer(build_app(held), host="127.0.0.1", port=0)
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
def risky(risky_server: TestServer, http: ClientSession) -> Api:
    return Api(str(risky_server.make_url("")), http)


def _card(card_id: str, card: dict[str, str] = mk.APPROVE) -> dict[str, str]:
    return {**card, "card_id": card_id}


async def _buyer(
    api: Api, where: tuple[float, float], name: str, **headers: str
) -> tuple[User, Ws]:
    user = await api.signup(name)
    ws = await api.connect(user, headers=headers)
    await ws.ok("locate", {"lat": where[0], "lng": where[1]})
    return user, ws


async def _order_event(ws: Ws, order_id: str, status: str) -> dict[str, Any]:
    while True:
        event = await ws.next_event("order.updated", timeout=15)
        order = event["data"]["order"]
        if order["id"] == order_id and order["status"] == status:
            return dict(order)


async def _fetch(settings: Settings, sql: str, *args: Any) -> list[Any]:
    conn = await mk.db(settings)
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _queue(api: Api, token: str) -> list[dict[str, Any]]:
    status, page = await mk.rest(api, "GET", "/api/v1/admin/risk/orders", token=token)
    assert status == 200, page
    return list(page["items"])


async def _held_by_shared_card(
    risky: Api, settings: Settings, i: int
) -> tuple[User, Ws, User, Ws, dict[str, Any], dict[str, Any]]:
    """Three new accounts pay with one card; a fourth is held (new account, card shared by
    three other accounts, three checkouts with it in the hour: 20 + 40 + 15). The fourth
    buyer and their socket, the vendor and theirs, the listing and the held checkout's reply."""
    where = mk.spot(settings, 60 + i)
    seller, _ = await mk.vendor(risky, where, f"rv{i}")
    item = await mk.listing(risky, seller.access_token, stock=20)
    card = _card(f"stolen-{uuid.uuid4().hex}")
    for n in range(3):
        _, ws = await _buyer(risky, where, f"mule{i}{n}")
        reply = await mk.buy(ws, item["id"], 1, card)
        assert reply["ok"], reply
        order = reply["data"]["orders"][0]
        assert order["status"] == "paid", order  # 20, then 40, 40: under 60
        assert order["risk"]["score"] < 60 and "new_account" in order["risk"]["reasons"]
        await ws.close()
    vws = await risky.connect(seller)
    buyer, ws = await _buyer(risky, where, f"held{i}")
    reply = await mk.buy(ws, item["id"], 2, card)
    assert reply["ok"], reply
    return buyer, ws, seller, vws, item, reply["data"]


async def test_a_held_checkout_waits_for_review_and_is_released_live(
    risky: Api, api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    moderator = await staff(api, settings, "moderator")
    buyer, ws, seller, vws, item, held = await _held_by_shared_card(risky, settings, 0)
    order = held["orders"][0]
    assert order["status"] == "held"
    assert order["risk"]["score"] >= 60
    assert set(order["risk"]["reasons"]) == {"new_account", "card_shared", "card_velocity"}
    assert held["payment"]["status"] == "authorized"  # nothing captured
    # buyer and vendor see the hold live; the stock is reserved, the cart empty
    assert (await _order_event(ws, order["id"], "held"))["risk"] == order["risk"]
    await _order_event(vws, order["id"], "held")
    assert await mk.stock_of(settings, item["id"]) == 20 - 3 - 2
    assert (await ws.ok("cart.get", {}))["items"] == []
    # neither can move it meanwhile
    refused = await ws.request("order.cancel", {"order_id": order["id"]}, key=uuid.uuid4().hex)
    assert refused["error"]["code"] == "conflict", refused
    seller_token = seller.access_token
    status, out = await mk.rest(
        risky, "POST", f"/api/v1/vendor/orders/{order['id']}/accept", token=seller_token
    )
    assert status == 409, out
    # the review queue: admins only, with every signal explained
    status, out = await mk.rest(
        api, "GET", "/api/v1/admin/risk/orders", token=moderator.access_token
    )
    assert status == 403 and out["error"]["code"] == "forbidden"
    entry = next(
        e for e in await _queue(api, admin.access_token) if e["order"]["id"] == order["id"]
    )
    assert entry["buyer"]["id"] == buyer.id and entry["payment"]["status"] == "authorized"
    signals = {s["code"]: s for s in entry["risk"]["signals"]}
    assert (
        signals["card_shared"]["points"] == 40
        and "3 other accounts" in signals["card_shared"]["detail"]
    )
    assert entry["risk"]["score"] == order["risk"]["score"]
    # a moderator cannot release; an admin does: captured, paid, told live, audited
    path = f"/api/v1/admin/risk/orders/{order['id']}/release"
    status, out = await mk.rest(api, "POST", path, {"note": "x"}, moderator.access_token)
    assert status == 403, out
    status, out = await mk.rest(api, "POST", path, {"note": "called the buyer"}, admin.access_token)
    assert status == 200, out
    assert out["orders"][0]["status"] == "paid" and out["payment"]["status"] == "captured"
    await _order_event(ws, order["id"], "paid")
    await _order_event(vws, order["id"], "paid")
    rows = await _fetch(
        settings, "SELECT p.status, p.provider_ref, g.status AS g FROM payments p"
        " JOIN order_groups g ON g.id = p.group_id WHERE g.id = $1", order["group_id"]
    )  # fmt: skip
    assert rows[0]["status"] == "captured" and rows[0]["provider_ref"].startswith("sbx_captured_")
    assert rows[0]["g"] == "completed"
    audit = await _fetch(
        settings, "SELECT actor_id, reason, result FROM audit_log WHERE action = 'risk.release'"
        " AND target = $1 ORDER BY at", f"order:{order['id']}"
    )  # fmt: skip
    done = [a for a in audit if "outcome" in a["result"]]
    assert [(a["actor_id"], a["reason"]) for a in done] == [(admin.id, "called the buyer")]
    assert done[0]["result"]["payment"] == "captured"
    refused = [a for a in audit if "outcome" not in a["result"]]  # the moderator's try
    assert [(a["actor_id"], a["result"]["error"]) for a in refused] == [(moderator.id, "forbidden")]
    # decided once: out of the queue, a second decision is a conflict (and audited as refused)
    assert order["id"] not in [e["order"]["id"] for e in await _queue(api, admin.access_token)]
    status, out = await mk.rest(api, "POST", path, token=admin.access_token)
    assert status == 409, out
    reject = f"/api/v1/admin/risk/orders/{order['id']}/reject"
    status, out = await mk.rest(api, "POST", reject, token=admin.access_token)
    assert status == 409, out
    # the vendor ships it now
    status, out = await mk.rest(
        risky, "POST", f"/api/v1/vendor/orders/{order['id']}/accept", token=seller_token
    )
    assert status == 200 and out["order"]["status"] == "accepted", out


async def test_card_testing_is_held_and_rejected_with_the_stock_back(
    risky: Api, api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    where = mk.spot(settings, 64)
    seller, _ = await mk.vendor(risky, where, "rv4")
    item = await mk.listing(risky, seller.access_token, stock=5)
    _, ws = await _buyer(risky, where, "tester")
    for _ in range(5):  # five declined cards within the hour
        reply = await mk.buy(ws, item["id"], 1, _card(uuid.uuid4().hex, mk.DECLINE))
        assert reply["error"]["code"] == "payment_failed", reply
        await ws.mutate("cart.remove", {"listing_id": item["id"]})
    reply = await mk.buy(ws, item["id"], 2, _card(uuid.uuid4().hex))
    order = reply["data"]["orders"][0]
    assert order["status"] == "held" and "declines" in order["risk"]["reasons"], order
    assert await mk.stock_of(settings, item["id"]) == 3
    path = f"/api/v1/admin/risk/orders/{order['id']}/reject"
    status, out = await mk.rest(api, "POST", path, {"note": "card testing"}, admin.access_token)
    assert status == 200, out
    assert out["orders"][0]["status"] == "cancelled" and out["payment"]["status"] == "cancelled"
    assert out["orders"][0]["reason"] == "rejected by review"
    await _order_event(ws, order["id"], "cancelled")
    assert await mk.stock_of(settings, item["id"]) == 5
    audit = await _fetch(
        settings,
        "SELECT actor_id FROM audit_log WHERE action = 'risk.reject' AND target = $1",
        f"order:{order['id']}",
    )
    assert [a["actor_id"] for a in audit] == [admin.id]


async def test_address_device_distance_and_travel_signals(
    risky: Api, api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    where = mk.spot(settings, 65)
    seller, _ = await mk.vendor(risky, where, "rv5")
    item = await mk.listing(risky, seller.access_token, stock=50)
    device = f"install-{uuid.uuid4().hex}"
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    headers = {"X-Forwarded-For": address, "X-Device-Id": device}
    reasons: list[set[str]] = []
    for n in range(4):  # four accounts from one device and one address
        _, ws = await _buyer(risky, where, f"dev{n}", **headers)
        reply = await mk.buy(ws, item["id"], 1, _card(uuid.uuid4().hex))
        assert reply["ok"], reply
        reasons.append(set(reply["data"]["orders"][0]["risk"]["reasons"]))
        await ws.close()
    assert reasons[0] == {"new_account"}
    assert "device_shared" in reasons[2] and "device_shared" in reasons[3]  # 2, 3 others
    assert "address_shared" in reasons[3]  # 3 other accounts from the address
    rows = await _fetch(
        settings, "SELECT DISTINCT client_addr, device FROM order_groups g"
        " JOIN orders o ON o.group_id = g.id WHERE o.vendor_id = $1", item["vendor_id"]
    )  # fmt: skip
    assert len(rows) == 1 and rows[0]["client_addr"] == address and device not in rows[0]["device"]
    # located in Berlin, then in Paris a moment later, buying from a Berlin vendor
    _, ws = await _buyer(risky, where, "jetset")
    await ws.ok("locate", {"lat": PARIS[0], "lng": PARIS[1]})
    reply = await mk.buy(ws, item["id"], 1, _card(uuid.uuid4().hex))
    order = reply["data"]["orders"][0]
    assert order["status"] == "held", order
    assert {"impossible_travel", "far_from_vendor"} <= set(order["risk"]["reasons"])
    path = f"/api/v1/admin/risk/orders/{order['id']}/reject"
    status, out = await mk.rest(api, "POST", path, token=admin.access_token)
    assert status == 200, out


async def test_a_hold_nobody_reviews_is_rejected_by_the_sweeper(
    risky: Api, settings: Settings
) -> None:
    where = mk.spot(settings, 66)
    seller, _ = await mk.vendor(risky, where, "rv6")
    item = await mk.listing(risky, seller.access_token, stock=4)
    _, ws = await _buyer(risky, where, "forgotten")
    await ws.ok("locate", {"lat": PARIS[0], "lng": PARIS[1]})
    order = (await mk.buy(ws, item["id"], 1, _card(uuid.uuid4().hex)))["data"]["orders"][0]
    assert order["status"] == "held"
    await _fetch(
        settings,
        "UPDATE orders SET updated_at = now() - interval '4 days' WHERE id = $1",
        order["id"],
    )
    await _order_event(ws, order["id"], "cancelled")  # the sweeper, past risk_hold_s (3 days)
    assert await mk.stock_of(settings, item["id"]) == 4
    audit: list[Any] = []
    for _ in range(100):  # written once the rejection took effect: just after the event
        audit = await _fetch(
            settings, "SELECT actor_id, reason FROM audit_log WHERE action = 'risk.reject'"
            " AND target = $1", f"order:{order['id']}"
        )  # fmt: skip
        if audit:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # both gateways' sweepers ran: still one entry
    audit = await _fetch(
        settings, "SELECT actor_id, reason FROM audit_log WHERE action = 'risk.reject'"
        " AND target = $1", f"order:{order['id']}"
    )  # fmt: skip
    assert [(a["actor_id"], a["reason"]) for a in audit] == [(None, "not reviewed in time")]
    payment = await _fetch(settings, "SELECT status FROM payments WHERE group_id = $1",
                           order["group_id"])  # fmt: skip
    assert payment[0]["status"] == "cancelled"


async def test_orders_carry_risk_and_a_checkout_key_compares_the_payment(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    where = mk.spot(settings, 67)
    seller, _ = await mk.vendor(api, where, "rv7")
    item = await mk.listing(api, seller.access_token, stock=5)
    _, ws = await _buyer(api, where, "keyed")
    await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
    bad = await ws.request("checkout", {"payment": {**mk.APPROVE, "card_id": "x" * 65}},
                           key=uuid.uuid4().hex)  # fmt: skip
    assert bad["error"]["code"] == "bad_request", bad
    assert len((await ws.ok("cart.get", {}))["items"]) == 1  # nothing changed
    key = uuid.uuid4().hex
    first = await ws.request("checkout", {"payment": mk.APPROVE}, key=key, timeout=60)
    assert first["ok"], first
    order = first["data"]["orders"][0]
    assert order["status"] == "paid" and order["risk"] == {"score": 20, "reasons": ["new_account"]}
    again = await ws.request("checkout", {"payment": mk.APPROVE}, key=key, timeout=60)
    assert again["data"] == first["data"]
    other = await ws.request("checkout", {"payment": mk.DECLINE}, key=key, timeout=60)
    assert other["error"]["code"] == "conflict", other
    # the review refuses what is not held, and what does not exist
    for target, code in [(order["id"], 409), ("nope", 404)]:
        path = f"/api/v1/admin/risk/orders/{target}/release"
        status, out = await mk.rest(api, "POST", path, token=admin.access_token)
        assert status == code, out
    status, out = await mk.rest(
        api,
        "POST",
        f"/api/v1/admin/risk/orders/{order['id']}/reject",
        {"bogus": 1},
        admin.access_token,
    )
    assert status == 400, out
