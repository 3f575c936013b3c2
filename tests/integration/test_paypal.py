"""The PayPal provider against a local stand-in of PayPal's REST API (tests/integration/
paypal_standin.py): checkout -> approve -> capture by the buyer's return or by PayPal's verified
webhook, declines, timeouts, duplicate and out-of-order events, the return/webhook race, and
refunds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from models.errors import PaymentFailed, Unavailable
from payments.base import RefundRefused
from payments.paypal import PayPalProvider
from tests.integration import market_kit as mk
from tests.integration.client import Api, Ws
from tests.integration.paypal_standin import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, FakePayPal

pytestmark = pytest.mark.integration

PAYPAL = {"provider": "paypal"}
Env = tuple[FakePayPal, Api]
SELLERS: dict[str, str] = {}


@pytest.fixture(scope="module")
async def paypal_env(settings: Settings) -> AsyncIterator[Env]:
    fake = FakePayPal()
    fake_server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await fake_server.start_server()
    fake.base = str(fake_server.make_url("")).rstrip("/")
    configured = settings.model_copy(
        update={
            "paypal_client_id": CLIENT_ID,
            "paypal_client_secret": CLIENT_SECRET,
            "paypal_api_base": fake.base,
            "paypal_webhook_id": WEBHOOK_ID,
            "paypal_cert_hosts": ("127.0.0.1",),
            "paypal_timeout_s": 2.0,
        }
    )
    gateway = TestServer(build_app(configured), host="127.0.0.1", port=0)
    await gateway.start_server()
    async with ClientSession() as http:
        yield fake, Api(str(gateway.make_url("")), http)
    await gateway.close()
    await fake_server.close()


async def send(api: Api, fake: FakePayPal, event: dict[str, Any], **kw: Any) -> tuple[int, Any]:
    body, headers = fake.signed(event, **kw)
    async with api.http.post(
        api.base + "/api/v1/payments/paypal/webhook", data=body, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def back(api: Api, token: str, order_id: str) -> tuple[int, Any]:
    return await mk.rest(api, "POST", "/api/v1/payments/paypal/return", {"order_id": order_id},
                         token)  # fmt: skip


async def pending(
    settings: Settings, env: Env, i: int, price: int = 1250
) -> tuple[Ws, Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A new shop's listing checked out with PayPal: the buyer's socket and user, the checkout
    reply's data, its order and the PayPal order at the stand-in (the seller's token is kept
    in ``SELLERS`` by vendor id)."""
    fake, api = env
    seller, shop = await mk.vendor(api, mk.spot(settings, i), f"paypal-shop-{i}")
    SELLERS[shop["id"]] = seller.access_token
    item = await mk.listing(api, seller.access_token, stock=3, price=price, currency="eur")
    buyer = await api.signup(f"paypal-buyer-{i}")
    ws = await api.connect(buyer)
    reply = await mk.buy(ws, item["id"], 1, PAYPAL)
    assert reply["ok"], reply
    data = reply["data"]
    return ws, buyer, data, data["orders"][0], fake.last_order()


async def test_checkout_approve_and_return_captures_once(settings: Settings, paypal_env: Env):
    fake, api = paypal_env
    ws, buyer, data, order, pp = await pending(settings, paypal_env, 101)
    payment = data["payment"]
    assert payment["status"] == "requires_action" and order["status"] == "pending_payment"
    assert payment["approve_url"] == f"{fake.base}/checkoutnow?token={pp['id']}"
    unit = pp["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "EUR", "value": "12.50"}
    assert unit["custom_id"] == payment["id"]
    assert fake.requests[-1][2] == payment["id"]  # PayPal-Request-Id: our payment id

    status, body = await back(api, buyer.access_token, pp["id"])
    assert status == 200 and body["payment"]["status"] == "requires_action"  # not approved yet
    fake.approve(pp["id"])
    stranger = await api.signup("paypal-stranger")
    status, body = await back(api, stranger.access_token, pp["id"])
    assert status == 404 and body["error"]["code"] == "not_found"
    assert await mk.order_status(settings, order["id"]) == "pending_payment"

    status, body = await back(api, buyer.access_token, order["id"])  # our order id works too
    assert status == 200, body
    assert body["payment"]["status"] == "captured" and body["orders"][0]["status"] == "paid"
    status, again = await back(api, buyer.access_token, pp["id"])
    assert status == 200 and again["orders"][0]["status"] == "paid"
    assert len(fake.captures_of(pp["id"])) == 1
    await ws.close()


async def test_decline_releases_the_orders(settings: Settings, paypal_env: Env):
    fake, api = paypal_env
    ws, buyer, _, order, pp = await pending(settings, paypal_env, 102)
    fake.approve(pp["id"])
    fake.declines.add(pp["id"])
    status, body = await back(api, buyer.access_token, pp["id"])
    assert status == 402 and body["error"]["code"] == "payment_failed"
    assert await mk.order_status(settings, order["id"]) == "cancelled"
    assert await mk.stock_of(settings, order["items"][0]["listing_id"]) == 3
    status, _ = await back(api, buyer.access_token, pp["id"])  # nothing to capture any more
    assert status == 402
    assert len(fake.captures_of(pp["id"])) == 1  # the one declined attempt
    await ws.close()


async def test_webhook_verification_refuses_and_changes_nothing(
    settings: Settings, paypal_env: Env
):
    fake, api = paypal_env
    ws, _, _, order, pp = await pending(settings, paypal_env, 103)
    fake.approve(pp["id"])
    approved = fake.order_event("CHECKOUT.ORDER.APPROVED", pp["id"])
    body, headers = fake.signed(approved)
    url = api.base + "/api/v1/payments/paypal/webhook"
    cases = [
        (body + b" ", headers),  # the body changed: its CRC32 differs
        (body, {**headers, "PAYPAL-TRANSMISSION-ID": str(uuid.uuid4())}),
        (*fake.signed(approved, webhook_id="WH-SOMEONE-ELSE"),),
        (*fake.signed(approved, cert_url="https://evil.example/certs/x"),),
        (body, {**headers, "PAYPAL-AUTH-ALGO": "SHA1withRSA"}),
    ]
    for payload, hdrs in cases:
        async with api.http.post(url, data=payload, headers=hdrs) as resp:
            assert resp.status == 400, await resp.text()
            assert (await resp.json())["error"]["code"] == "bad_request"
    missing = {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}
    async with api.http.post(url, data=body, headers=missing) as resp:
        assert resp.status == 401
    assert await mk.order_status(settings, order["id"]) == "pending_payment"
    assert fake.captures_of(pp["id"]) == []
    conn = await mk.db(settings)
    try:
        assert not await conn.fetchval(
            "SELECT 1 FROM provider_events WHERE id = $1", approved["id"]
        )
        status, reply = await send(api, fake, approved)
        assert status == 200 and reply == {"received": True, "duplicate": False}
        status, reply = await send(api, fake, approved)  # PayPal redelivers
        assert status == 200 and reply["duplicate"] is True
        assert await mk.order_status(settings, order["id"]) == "paid"
        assert len(fake.captures_of(pp["id"])) == 1
    finally:
        await conn.close()
    await ws.close()


async def test_out_of_order_events(settings: Settings, paypal_env: Env):
    """The capture's COMPLETED first (captured by a return whose gateway died), APPROVED after
    it, a stray DECLINED last: paid once, nothing captured twice, nothing regressed."""
    fake, api = paypal_env
    ws, buyer, _, order, pp = await pending(settings, paypal_env, 104)
    fake.approve(pp["id"])
    fake.capture_directly(pp["id"])
    completed = fake.capture_event("PAYMENT.CAPTURE.COMPLETED", pp["id"])
    assert (await send(api, fake, completed))[0] == 200
    assert await mk.order_status(settings, order["id"]) == "paid"
    status, reply = await send(api, fake, fake.order_event("CHECKOUT.ORDER.APPROVED", pp["id"]))
    assert status == 200 and reply["duplicate"] is False
    declined = fake.capture_event("PAYMENT.CAPTURE.DECLINED", pp["id"])
    assert (await send(api, fake, declined))[0] == 200
    assert await mk.order_status(settings, order["id"]) == "paid"
    assert len(fake.captures_of(pp["id"])) == 1
    conn = await mk.db(settings)
    try:
        paid = await conn.fetchval(
            "SELECT count(*) FROM stream_events WHERE stream = $1 AND ev = 'order.updated'"
            " AND data->'order'->>'id' = $2 AND data->'order'->>'status' = 'paid'",
            f"user:{buyer.id}",
            order["id"],
        )
    finally:
        await conn.close()
    assert paid == 1
    await ws.close()


async def test_return_and_webhook_race_capture_once(settings: Settings, paypal_env: Env):
    fake, api = paypal_env
    ws, buyer, _, order, pp = await pending(settings, paypal_env, 105)
    fake.approve(pp["id"])
    approved = fake.order_event("CHECKOUT.ORDER.APPROVED", pp["id"])
    hook, ret, ret2 = await asyncio.gather(
        send(api, fake, approved),
        back(api, buyer.access_token, pp["id"]),
        back(api, buyer.access_token, order["id"]),
    )
    assert hook[0] == 200 and ret[0] == 200 and ret2[0] == 200, (hook, ret, ret2)
    assert await mk.order_status(settings, order["id"]) == "paid"
    captures = fake.orders[pp["id"]]["purchase_units"][0]["payments"]["captures"]
    assert len(captures) == 1  # every capture call carried one PayPal-Request-Id
    assert {rid for p, _, rid in fake.requests if p.endswith(f"{pp['id']}/capture")} == {
        f"{ret[1]['payment']['id']}:approve"
    }
    await ws.close()


async def test_timeouts_are_retried_with_the_same_request_id(settings: Settings, paypal_env: Env):
    fake, api = paypal_env
    seller, _ = await mk.vendor(api, mk.spot(settings, 106), "paypal-slow")
    item = await mk.listing(api, seller.access_token, stock=3, price=700, currency="eur")
    buyer = await api.signup("paypal-slow-buyer")
    ws = await api.connect(buyer)
    await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
    key = uuid.uuid4().hex
    fake.delays["/v2/checkout/orders"] = 3.0  # PayPal makes the order, answers too late
    first = await ws.request("checkout", {"payment": PAYPAL}, key=key, timeout=30)
    assert first["ok"] is False and first["error"]["code"] == "unavailable", first
    retry = await ws.request("checkout", {"payment": PAYPAL}, key=key, timeout=30)
    assert retry["ok"], retry
    payment_id = retry["data"]["payment"]["id"]
    made = [o for o in fake.orders.values() if o["purchase_units"][0]["custom_id"] == payment_id]
    assert len(made) == 1 and retry["data"]["payment"]["approve_url"].endswith(made[0]["id"])

    fake.approve(made[0]["id"])
    fake.delays["/capture"] = 3.0
    status, body = await back(api, buyer.access_token, made[0]["id"])
    assert status == 503 and body["error"]["code"] == "unavailable"
    status, body = await back(api, buyer.access_token, made[0]["id"])
    assert status == 200 and body["orders"][0]["status"] == "paid"
    assert len(made[0]["purchase_units"][0]["payments"]["captures"]) == 1
    await ws.close()


async def test_refunds_full_and_partial(settings: Settings, paypal_env: Env):
    """A dispute's partial refund, then the rest when the order is cancelled: two PayPal
    refunds of the order's capture, each under its own PayPal-Request-Id."""
    fake, api = paypal_env
    ws, buyer, _, order, pp = await pending(settings, paypal_env, 107, price=800)
    fake.approve(pp["id"])
    assert (await back(api, buyer.access_token, pp["id"]))[0] == 200
    seller_token = SELLERS[order["vendor_id"]]
    dispute = (
        await ws.mutate("dispute.open", {"order_id": order["id"], "reason": "other", "text": "x"})
    )["dispute"]
    status, reply = await mk.rest(
        api, "POST", f"/api/v1/vendor/disputes/{dispute['id']}/respond",
        {"text": "part of it", "refund": True, "amount": 300}, seller_token,
    )  # fmt: skip
    assert status == 200, reply
    cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    assert cancelled["order"]["status"] == "refunded" and cancelled["order"]["refunded"] == 800
    capture = fake.orders[pp["id"]]["purchase_units"][0]["payments"]["captures"][0]
    assert fake.refunds[capture["id"]] == 800
    keys = [rid for p, _, rid in fake.requests if p.endswith(f"{capture['id']}/refund")]
    assert len(keys) == 2 and len(set(keys)) == 2
    row = await mk.refund_of(settings, order["id"])
    assert row["status"] == "succeeded" and row["refunded_amount"] == 800
    await ws.close()


async def test_paypal_refusing_an_order_is_a_typed_error_and_only_an_outage_unavailable(
    settings: Settings, paypal_env: Env
):
    """A 4xx reading the order is PayPal's verdict (payment_failed / bad_request), a 5xx an
    outage (unavailable, retry); either way nothing changes, and once PayPal answers again the
    return captures. A refund of an order PayPal does not know is refused for good."""
    fake, api = paypal_env
    ws, buyer, _, order, pp = await pending(settings, paypal_env, 165)
    fake.approve(pp["id"])
    cases = [
        (422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "ORDER_EXPIRED"}]},
         402, "payment_failed"),
        (404, {"name": "RESOURCE_NOT_FOUND"}, 402, "payment_failed"),
        (400, {"name": "INVALID_REQUEST"}, 400, "bad_request"),
        (403, {"name": "NOT_AUTHORIZED"}, 400, "bad_request"),
        (500, {"name": "INTERNAL_SERVER_ERROR"}, 503, "unavailable"),
    ]  # fmt: skip
    for answer, body, want, code in cases:
        fake.answers[pp["id"]] = (answer, body)
        status, reply = await back(api, buyer.access_token, pp["id"])
        assert (status, reply["error"]["code"]) == (want, code), (answer, reply)
        assert await mk.order_status(settings, order["id"]) == "pending_payment"
    assert fake.captures_of(pp["id"]) == []
    status, reply = await back(api, buyer.access_token, pp["id"])
    assert status == 200 and reply["payment"]["status"] == "captured", reply

    provider = PayPalProvider(
        CLIENT_ID, CLIENT_SECRET, fake.base, webhook_id=WEBHOOK_ID, cert_hosts=("127.0.0.1",),
        return_url="https://app.example/return", cancel_url="https://app.example/cancel",
        timeout_s=2.0,
    )  # fmt: skip
    try:
        with pytest.raises(PaymentFailed):
            await provider.status("NO-SUCH-ORDER")
        with pytest.raises(RefundRefused):  # a refund the stand-in cannot find: never retried
            await provider.refund("NO-SUCH-ORDER", 100, "refund-x")
        fake.answers["NO-SUCH-ORDER"] = (503, {})
        with pytest.raises(Unavailable):
            await provider.status("NO-SUCH-ORDER")
    finally:
        await provider.close()
    await ws.close()


def _malformed(event: dict[str, Any]) -> list[dict[str, Any]]:
    """``event`` broken in the ways a fuzzer would: keys gone, wrong types, nested nulls."""
    resource = event["resource"]
    broken: list[dict[str, Any]] = [
        {k: v for k, v in event.items() if k != "id"},
        {**event, "id": 12345},
        {**event, "event_type": ["CHECKOUT.ORDER.APPROVED"]},
        {**event, "resource": "an order"},
        {**event, "resource": [resource]},
    ]
    for key, junk in (("purchase_units", {"0": {}}), ("purchase_units", "unit"),
                      ("purchase_units", [None, 7]), ("purchase_units", [{"custom_id": 5}]),
                      ("id", {"nested": None}), ("id", 42)):  # fmt: skip
        broken.append({**event, "resource": {**resource, key: junk}})
    captured = {**event, "event_type": "PAYMENT.CAPTURE.COMPLETED"}
    for junk in ("related", {"related_ids": "x"}, {"related_ids": {"order_id": 9}}, [None]):
        broken.append({**captured, "resource": {**resource, "supplementary_data": junk}})
    refunded = {**event, "event_type": "PAYMENT.CAPTURE.REFUNDED"}
    for part in ({"links": {"rel": "up"}}, {"links": [1, 2]}, {"links": [{"href": 3}]},
                 {"status": "COMPLETED", "amount": None, "id": "RF1"},
                 {"status": "COMPLETED", "amount": {"value": "x", "currency_code": "EUR"}},
                 {"status": "COMPLETED", "amount": {"value": "1.00"}, "id": "RF1"}):  # fmt: skip
        broken.append({**refunded, "resource": {**resource, **part}})
    return broken


async def test_malformed_webhook_bodies_are_a_typed_400_and_change_nothing(
    settings: Settings, paypal_env: Env
):
    fake, api = paypal_env
    ws, _, _, order, pp = await pending(settings, paypal_env, 166)
    fake.approve(pp["id"])
    approved = fake.order_event("CHECKOUT.ORDER.APPROVED", pp["id"])
    for event in _malformed(approved):
        status, reply = await send(api, fake, event)
        assert status == 400 and reply["error"]["code"] == "bad_request", (event, reply)
    assert await mk.order_status(settings, order["id"]) == "pending_payment"
    assert fake.captures_of(pp["id"]) == []
    conn = await mk.db(settings)
    try:
        assert not await conn.fetchval("SELECT 1 FROM provider_events WHERE id = $1",
                                       approved["id"])  # fmt: skip
    finally:
        await conn.close()
    status, reply = await send(api, fake, approved)  # the well-formed one still works
    assert status == 200 and reply["duplicate"] is False
    assert await mk.order_status(settings, order["id"]) == "paid"
    await ws.close()
