"""The money side of admins over real REST, websockets, the control actor (Ray), owner shards,
Postgres and Redis: partial refunds (several, up to the total; over-refund and currency are
typed errors that change nothing; idempotent by key), a dispute on a completed order refunded
by an admin, and payout holds (a dispute's, an admin's) with ``payout_blocked``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cluster.config import Settings
from services.payout_holds import payout_blocked
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, User, Ws

pytestmark = pytest.mark.integration


async def _paid(api: Api, settings: Settings, i: int, qty: int = 2) -> tuple[User, Ws, User, dict]:
    where = mk.spot(settings, 80 + i)
    seller, _ = await mk.vendor(api, where, f"mv{i}")
    item = await mk.listing(api, seller.access_token, stock=5, price=500)
    buyer = await api.signup(f"mb{i}")
    ws = await api.connect(buyer)
    reply = await mk.buy(ws, item["id"], qty, mk.APPROVE)
    assert reply["ok"], reply
    return buyer, ws, seller, reply["data"]["orders"][0]


async def _refunds(settings: Settings, order_id: str) -> list[Any]:
    conn = await mk.db(settings)
    try:
        return list(
            await conn.fetch(
                "SELECT amount, status FROM refunds WHERE order_id = $1 ORDER BY created_at",
                order_id,
            )
        )
    finally:
        await conn.close()


async def _order(settings: Settings, order_id: str) -> Any:
    conn = await mk.db(settings)
    try:
        return await conn.fetchrow(
            "SELECT o.status, o.refunded, p.refunded_amount FROM orders o"
            " JOIN payments p ON p.group_id = o.group_id WHERE o.id = $1",
            order_id,
        )
    finally:
        await conn.close()


async def _refunded_event(ws: Ws, refunded: int) -> dict[str, Any]:
    while True:
        order = (await ws.next_event("order.updated", timeout=10))["data"]["order"]
        if order["refunded"] == refunded:
            return dict(order)


async def test_partial_refunds_sum_to_the_total_with_typed_errors(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    _, ws, seller, order = await _paid(api, settings, 0)
    assert order["total"] == 1000 and order["refunded"] == 0
    path = f"/api/v1/admin/orders/{order['id']}/refund"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    token = admin.access_token
    status, reply = await mk.rest(api, "POST", path, {"amount": 300, "reason": "late"}, token, key)
    assert status == 200, reply
    assert reply["amount"] == 300 and reply["order"]["refunded"] == 300
    assert reply["order"]["status"] == "paid"  # a partial refund leaves the state
    seen = await _refunded_event(ws, 300)
    assert seen["status"] == "paid"
    # the same key: the same refund, not a second one
    status, again = await mk.rest(api, "POST", path, {"amount": 300, "reason": "late"}, token, key)
    assert status == 200 and again["refund_id"] == reply["refund_id"], again
    assert [(r["amount"], r["status"]) for r in await _refunds(settings, order["id"])] == [
        (300, "succeeded")
    ]
    # bad input: typed, nothing changes
    for body, code, code_status in (
        ({"amount": 701, "reason": "x"}, "conflict", 409),
        ({"amount": 100, "currency": "jpy", "reason": "x"}, "bad_request", 400),
        ({"amount": 0, "reason": "x"}, "bad_request", 400),
        ({"amount": 100}, "bad_request", 400),
    ):
        status, err = await mk.rest(api, "POST", path, body, token)
        assert status == code_status and err["error"]["code"] == code, (body, err)
    status, err = await mk.rest(api, "POST", path, {"amount": 701, "reason": "x"}, token)
    assert err["error"]["details"] == {
        "reason": "over_refund", "refundable": 700, "currency": order["currency"],
    }  # fmt: skip
    status, err = await mk.rest(
        api, "POST", "/api/v1/admin/orders/nope/refund", {"reason": "x"}, token
    )
    assert status == 404, err
    status, err = await mk.rest(api, "POST", path, {"reason": "x"}, seller.access_token)
    assert status == 403, err
    row = await _order(settings, order["id"])
    assert (row["status"], row["refunded"], row["refunded_amount"]) == ("paid", 300, 300)

    # a second partial one, then the rest: the last moves the order to refunded
    upper = order["currency"].upper()
    body = {"amount": 200, "currency": upper, "reason": "dent"}
    status, reply = await mk.rest(api, "POST", path, body, token)
    assert status == 200 and reply["order"]["refunded"] == 500, reply
    status, reply = await mk.rest(api, "POST", path, {"reason": "all of it"}, token)
    assert status == 200, reply
    assert reply["amount"] == 500 and reply["order"]["status"] == "refunded"
    assert (await _refunded_event(ws, 1000))["status"] == "refunded"
    row = await _order(settings, order["id"])
    assert (row["status"], row["refunded"], row["refunded_amount"]) == ("refunded", 1000, 1000)
    assert [r["amount"] for r in await _refunds(settings, order["id"])] == [300, 200, 500]
    status, err = await mk.rest(api, "POST", path, {"amount": 1, "reason": "more"}, token)
    assert status == 409, err  # refunded: nothing is left
    status, audit = await api.get(f"/api/v1/admin/audit?target=order:{order['id']}", token=token)
    changes = [e for e in audit["items"] if e["action"] == "order.refund"]
    assert [e["result"]["amount"] for e in changes] == [500, 200, 300]
    assert all(e["actor_id"] == admin.id for e in changes)
    await ws.close()


async def test_dispute_on_a_completed_order_partly_refunded_by_an_admin(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    _, ws, seller, order = await _paid(api, settings, 1)
    base = f"/api/v1/vendor/orders/{order['id']}"
    for step in ("accept", "fulfil"):
        status, reply = await mk.rest(api, "POST", f"{base}/{step}", None, seller.access_token)
        assert status == 200, reply
    await ws.mutate("order.complete", {"order_id": order["id"]})
    dispute = (
        await ws.mutate(
            "dispute.open",
            {"order_id": order["id"], "reason": "not_as_described", "text": "one was stale"},
        )
    )["dispute"]
    vendor_id = order["vendor_id"]
    assert database_holds(await _blocked(settings, vendor_id, order["id"])) == [dispute["id"]]
    resolve = f"/api/v1/admin/disputes/{dispute['id']}/resolve"
    status, err = await api.post(
        resolve, {"outcome": "refund", "amount": 5000}, token=admin.access_token
    )
    assert status == 409 and err["error"]["details"]["reason"] == "over_refund", err
    status, err = await api.post(
        resolve, {"outcome": "reject", "amount": 5}, token=admin.access_token
    )
    assert status == 400, err
    status, reply = await api.post(
        resolve, {"outcome": "refund", "amount": 400, "note": "half a loaf"},
        token=admin.access_token,
    )  # fmt: skip
    assert status == 200, reply
    assert reply["dispute"]["status"] == "refunded" and reply["dispute"]["amount"] == 400
    assert (await _refunded_event(ws, 400))["status"] == "completed"
    row = await _order(settings, order["id"])
    assert (row["status"], row["refunded"], row["refunded_amount"]) == ("completed", 400, 400)
    assert await _blocked(settings, vendor_id, order["id"]) == []  # closed: hold released
    await ws.close()


def database_holds(blocked: list[dict[str, Any]]) -> list[str]:
    return [b["hold"]["dispute_id"] for b in blocked if b["reason"] == "hold"]


async def _blocked(settings: Settings, vendor_id: str, order_id: str) -> list[dict[str, Any]]:
    conn = await mk.db(settings)
    try:
        return await payout_blocked(conn, vendor_id, [order_id])
    finally:
        await conn.close()


async def test_vendor_refunds_part_of_a_disputed_order(api: Api, settings: Settings) -> None:
    _, ws, seller, order = await _paid(api, settings, 2)
    dispute = (
        await ws.mutate("dispute.open", {"order_id": order["id"], "reason": "other", "text": "x"})
    )["dispute"]
    path = f"/api/v1/vendor/disputes/{dispute['id']}/respond"
    status, err = await mk.rest(api, "POST", path, {"text": "x", "amount": 10},
                                seller.access_token)  # fmt: skip
    assert status == 400, err  # an amount without refund
    status, reply = await mk.rest(
        api, "POST", path, {"text": "sorry", "refund": True, "amount": 250}, seller.access_token
    )
    assert status == 200 and reply["dispute"]["amount"] == 250, reply
    row = await _order(settings, order["id"])
    assert (row["status"], row["refunded"]) == ("paid", 250)
    await ws.close()


async def _vendor_holds(api: Api, vendor: User) -> list[dict[str, Any]]:
    status, balance = await api.get("/api/v1/vendor/balance", token=vendor.access_token)
    assert status == 200 and balance["payouts_suspended"] is False, balance
    return list(balance["holds"])


async def test_payout_holds_by_an_admin(api: Api, settings: Settings) -> None:
    admin = await staff(api, settings, "admin")
    mod = await staff(api, settings, "moderator", "holdmod")
    _, ws, seller, order = await _paid(api, settings, 3)
    vendor_id = order["vendor_id"]
    token = admin.access_token
    assert await _blocked(settings, vendor_id, order["id"]) == []
    assert await _vendor_holds(api, seller) == []
    body = {"vendor_id": vendor_id, "reason": "chargebacks under review"}
    status, err = await api.post("/api/v1/admin/payouts/holds", body, token=mod.access_token)
    assert status == 403, err
    status, reply = await api.post("/api/v1/admin/payouts/holds", body, token=token)
    assert status == 201, reply
    hold = reply["hold"]
    assert hold["status"] == "open" and hold["order_id"] is None and hold["actor_id"] == admin.id
    status, err = await api.post("/api/v1/admin/payouts/holds", body, token=token)
    assert status == 409, err  # one open vendor-wide hold
    for bad, code in (
        ({"vendor_id": "nope", "reason": "x"}, 404),
        ({"vendor_id": vendor_id, "order_id": "nope", "reason": "x"}, 404),
        ({"vendor_id": vendor_id}, 400),
    ):
        status, err = await api.post("/api/v1/admin/payouts/holds", bad, token=token)
        assert status == code, (bad, err)
    blocked = await _blocked(settings, vendor_id, order["id"])
    assert [b["hold"]["id"] for b in blocked] == [hold["id"]]
    (seen,) = await _vendor_holds(api, seller)  # the vendor's balance says why, not who
    assert seen == {"id": hold["id"], "order_id": None, "dispute_id": None,
                    "reason": body["reason"], "created_at": hold["created_at"]}  # fmt: skip
    status, page = await api.get(
        f"/api/v1/admin/payouts/holds?vendor_id={vendor_id}&status=open", token=token
    )
    assert status == 200 and [h["id"] for h in page["items"]] == [hold["id"]]
    release = f"/api/v1/admin/payouts/holds/{hold['id']}/release"
    status, reply = await api.post(release, {"note": "cleared"}, token=token)
    assert status == 200 and reply["hold"]["status"] == "released", reply
    status, err = await api.post(release, {}, token=token)
    assert status == 409, err
    assert await _blocked(settings, vendor_id, order["id"]) == []
    assert await _vendor_holds(api, seller) == []
    # a dispute's hold is not released by hand
    dispute = (
        await ws.mutate("dispute.open", {"order_id": order["id"], "reason": "other", "text": "x"})
    )["dispute"]
    status, page = await api.get(
        f"/api/v1/admin/payouts/holds?vendor_id={vendor_id}&status=open", token=token
    )
    dispute_hold = page["items"][0]
    assert dispute_hold["dispute_id"] == dispute["id"]
    seen_now = [(h["id"], h["order_id"], h["dispute_id"]) for h in await _vendor_holds(api, seller)]
    assert seen_now == [(dispute_hold["id"], order["id"], dispute["id"])]
    status, err = await api.post(
        f"/api/v1/admin/payouts/holds/{dispute_hold['id']}/release", {}, token=token
    )
    assert status == 409, err
    status, audit = await api.get(f"/api/v1/admin/audit?target=vendor:{vendor_id}", token=token)
    actions = [(e["action"], e["result"].get("error")) for e in audit["items"]]
    assert ("payout.hold", None) in actions and ("payout.release", None) in actions
    assert ("payouts.hold", "forbidden") in actions  # the moderator's try, audited too
    await ws.close()
