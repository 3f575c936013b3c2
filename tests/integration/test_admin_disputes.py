"""Disputes end to end: a buyer's paid order disputed over the websocket, the vendor responds
or refunds, an admin resolves through the order's provider on the owner-shard refund path;
both parties get dispute.updated; illegal steps are conflicts. And a suspended buyer's pending
order is released through its owner shard."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, User, Ws

pytestmark = pytest.mark.integration


async def _paid_order(api: Api, settings: Settings, i: int) -> tuple[User, Ws, User, Ws, dict]:
    where = mk.spot(settings, 40 + i)
    seller, _ = await mk.vendor(api, where, f"v{i}")
    item = await mk.listing(api, seller.access_token, stock=5)
    buyer = await api.signup(f"b{i}")
    ws = await api.connect(buyer)
    await ws.ok("locate", {"lat": where[0], "lng": where[1]})
    reply = await mk.buy(ws, item["id"], 1, mk.APPROVE)
    assert reply["ok"], reply
    order = reply["data"]["orders"][0]
    vws = await api.connect(seller)
    return buyer, ws, seller, vws, order


async def _dispute_event(ws: Ws, status: str) -> dict[str, Any]:
    while True:
        event = await ws.next_event("dispute.updated", timeout=10)
        if event["data"]["dispute"]["status"] == status:
            return dict(event["data"]["dispute"])


async def _order_status(settings: Settings, order_id: str) -> str:
    conn = await mk.db(settings)
    try:
        return str(await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id))
    finally:
        await conn.close()


async def test_dispute_respond_then_admin_refunds_through_the_provider(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    buyer, ws, seller, vws, order = await _paid_order(api, settings, 0)
    body = {"order_id": order["id"], "reason": "not_received", "text": "never came"}
    dispute = (await ws.mutate("dispute.open", body))["dispute"]
    assert dispute["status"] == "open"
    assert (await _dispute_event(ws, "open"))["id"] == dispute["id"]
    assert (await _dispute_event(vws, "open"))["id"] == dispute["id"]
    again = await ws.request("dispute.open", body, key=uuid.uuid4().hex)
    assert again["error"]["code"] == "conflict"

    status, page = await mk.rest(api, "GET", "/api/v1/vendor/disputes", None, seller.access_token)
    assert status == 200 and [d["id"] for d in page["items"]] == [dispute["id"]]
    path = f"/api/v1/vendor/disputes/{dispute['id']}/respond"
    status, reply = await mk.rest(
        api, "POST", path, {"text": "shipped on monday"}, seller.access_token
    )
    assert status == 200 and reply["dispute"]["status"] == "responded", reply
    status, reply = await mk.rest(api, "POST", path, {"text": "again"}, seller.access_token)
    assert status == 409  # responded is not open
    status, reply = await mk.rest(api, "POST", path, {"text": "x"}, buyer.access_token)
    assert status == 403  # the buyer is no vendor

    resolve = f"/api/v1/admin/disputes/{dispute['id']}/resolve"
    status, reply = await api.post(resolve, {"outcome": "refund"}, token=seller.access_token)
    assert status == 403
    status, reply = await api.post(
        resolve, {"outcome": "refund", "amount": order["total"] + 1}, token=admin.access_token
    )
    assert status == 409 and reply["error"]["details"]["reason"] == "over_refund", reply
    status, reply = await api.post(
        resolve, {"outcome": "refund", "note": "carrier lost it"}, token=admin.access_token
    )
    assert status == 200 and reply["dispute"]["status"] == "refunded", reply
    while True:  # money moved: order.updated from the order's owner, before the dispute's
        updated = (await ws.next_event("order.updated", timeout=10))["data"]["order"]
        if updated["status"] == "refunded":
            break
    assert updated["id"] == order["id"]
    assert (await _dispute_event(ws, "refunded"))["amount"] == order["total"]
    await _dispute_event(vws, "refunded")
    assert await _order_status(settings, order["id"]) == "refunded"
    conn = await mk.db(settings)
    try:
        refund = await conn.fetchrow(
            "SELECT status, amount FROM refunds WHERE order_id = $1", order["id"]
        )
    finally:
        await conn.close()
    assert refund["status"] == "succeeded" and refund["amount"] == order["total"]
    for step in ({"outcome": "refund"}, {"outcome": "reject"}):  # terminal
        status, reply = await api.post(resolve, step, token=admin.access_token)
        assert status == 409, reply
    status, audit = await api.get(
        f"/api/v1/admin/audit?target=dispute:{dispute['id']}", token=admin.access_token
    )
    entries = [(e["action"], e["result"].get("error")) for e in audit["items"]]
    assert entries == [
        ("disputes.resolve", "conflict"),
        ("disputes.resolve", "conflict"),
        ("dispute.resolve", None),
        ("disputes.resolve", "conflict"),
        ("disputes.resolve", "forbidden"),
    ]
    status, listed = await api.get(
        "/api/v1/admin/disputes?status=refunded", token=admin.access_token
    )
    assert dispute["id"] in [d["id"] for d in listed["items"]]
    await ws.close()
    await vws.close()


async def test_vendor_refunds_at_once_and_admin_rejects_another(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    _, ws, seller, vws, order = await _paid_order(api, settings, 1)
    d = (
        await ws.mutate(
            "dispute.open", {"order_id": order["id"], "reason": "other", "text": "wrong size"}
        )
    )["dispute"]
    path = f"/api/v1/vendor/disputes/{d['id']}/respond"
    status, reply = await mk.rest(
        api, "POST", path, {"text": "sorry", "refund": True}, seller.access_token
    )
    assert status == 200 and reply["dispute"]["status"] == "refunded", reply
    assert await _order_status(settings, order["id"]) == "refunded"

    _, ws2, _, vws2, order2 = await _paid_order(api, settings, 2)
    d2 = (
        await ws2.mutate(
            "dispute.open", {"order_id": order2["id"], "reason": "other", "text": "meh"}
        )
    )["dispute"]
    status, reply = await api.post(
        f"/api/v1/admin/disputes/{d2['id']}/resolve",
        {"outcome": "reject", "note": "as described"},
        token=admin.access_token,
    )
    assert status == 200 and reply["dispute"]["status"] == "rejected"
    assert await _order_status(settings, order2["id"]) == "paid"
    # not yours, not paid, made up
    other = await api.connect(await api.signup("nosy"))
    for data, code in (
        ({"order_id": order2["id"], "reason": "other", "text": "x"}, "not_found"),
        ({"order_id": "nope", "reason": "other", "text": "x"}, "not_found"),
        ({"order_id": order2["id"], "reason": "angry", "text": "x"}, "bad_request"),
    ):
        reply = await other.request("dispute.open", data, key=uuid.uuid4().hex)
        assert reply["error"]["code"] == code, (data, reply)
    for s in (ws, vws, ws2, vws2, other):
        await s.close()


async def test_suspension_releases_the_buyers_pending_orders(api: Api, settings: Settings) -> None:
    mod = await staff(api, settings, "moderator")
    where = mk.spot(settings, 43)
    seller, _ = await mk.vendor(api, where, "v-pending")
    item = await mk.listing(api, seller.access_token, stock=4)
    buyer = await api.signup("pending-buyer")
    ws = await api.connect(buyer)
    reply = await mk.buy(ws, item["id"], 3, mk.ACTION)  # needs 3-D Secure: stays pending
    assert reply["ok"], reply
    order = reply["data"]["orders"][0]
    assert order["status"] == "pending_payment"
    assert await mk.stock_of(settings, item["id"]) == 1
    status, reply = await api.post(
        f"/api/v1/admin/users/{buyer.id}/suspend", {"reason": "fraud"}, token=mod.access_token
    )
    assert status == 200, reply
    for _ in range(50):
        if await _order_status(settings, order["id"]) == "cancelled":
            break
        await asyncio.sleep(0.1)
    assert await _order_status(settings, order["id"]) == "cancelled"
    assert await mk.stock_of(settings, item["id"]) == 4
    await ws.closed.wait()
    assert ws.close_code == 4003
