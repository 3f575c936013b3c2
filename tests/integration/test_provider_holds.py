"""A checkout held for fraud review, paid by PayPal or UPI: only authorised at the provider
(PayPal intent ``AUTHORIZE``; a Razorpay order for manual capture), held once the buyer has
authorised, and what the review asks of the provider afterwards: capture in full (once) or
void. The review itself runs in the control actor (tests/integration/test_risk.py); here the
provider's side of it is called directly against the stand-ins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from payments import providers_from
from payments.paypal import PayPalProvider
from payments.upi import UpiProvider
from tests.integration import market_kit as mk
from tests.integration import paypal_standin as pps
from tests.integration import razorpay_standin as rzs
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration

Env = tuple[pps.FakePayPal, rzs.FakeRazorpay, Api, Settings]


@pytest.fixture(scope="module")
async def held_env(settings: Settings) -> AsyncIterator[Env]:
    paypal, razorpay = pps.FakePayPal(), rzs.FakeRazorpay()
    servers = [TestServer(paypal.app(), host="127.0.0.1", port=0),
               TestServer(razorpay.app(), host="127.0.0.1", port=0)]  # fmt: skip
    for server in servers:
        await server.start_server()
    paypal.base = str(servers[0].make_url("")).rstrip("/")
    configured = settings.model_copy(
        update={
            "risk_hold_score": 60,
            "paypal_client_id": pps.CLIENT_ID,
            "paypal_client_secret": pps.CLIENT_SECRET,
            "paypal_api_base": paypal.base,
            "paypal_webhook_id": pps.WEBHOOK_ID,
            "paypal_cert_hosts": ("127.0.0.1",),
            "upi_key_id": rzs.KEY_ID,
            "upi_key_secret": rzs.KEY_SECRET,
            "upi_api_base": str(servers[1].make_url("")).rstrip("/"),
            "upi_webhook_secret": rzs.WEBHOOK_SECRET,
        }
    )
    gateway = TestServer(build_app(configured), host="127.0.0.1", port=0)
    await gateway.start_server()
    async with ClientSession() as http:
        yield paypal, razorpay, Api(str(gateway.make_url("")), http), configured
    await gateway.close()
    for server in servers:
        await server.close()


async def risky_checkout(
    api: Api, settings: Settings, i: int, payment: dict[str, Any], currency: str
) -> tuple[Ws, dict[str, Any], str]:
    """A new account that jumps from Berlin to Paris and buys at once: scored over 60."""
    where = mk.spot(settings, i)
    seller, _ = await mk.vendor(api, where, f"held-{i}")
    item = await mk.listing(api, seller.access_token, stock=3, price=2500, currency=currency)
    buyer = await api.signup(f"held-buyer-{i}")
    ws = await api.connect(buyer)
    await ws.ok("locate", {"lat": where[0], "lng": where[1]})
    await ws.ok("locate", {"lat": 48.8566, "lng": 2.3522})
    reply = await mk.buy(ws, item["id"], 1, payment)
    assert reply["ok"], reply
    order = reply["data"]["orders"][0]
    assert order["risk"]["score"] >= 60 and order["status"] == "pending_payment", order
    assert reply["data"]["payment"]["status"] == "requires_action"
    return ws, reply["data"], buyer.access_token


async def _held(ws: Ws, order_id: str) -> None:
    while True:
        event = await ws.next_event("order.updated", timeout=15)
        if event["data"]["order"]["id"] == order_id and event["data"]["order"]["status"] == "held":
            return


async def test_paypal_held_checkout_is_authorised_then_captured_or_voided(held_env: Env):
    paypal, _, api, settings = held_env
    ws, data, token = await risky_checkout(api, settings, 141, {"provider": "paypal"}, "eur")
    order = paypal.last_order()
    assert order["intent"] == "AUTHORIZE"
    paypal.approve(order["id"])
    status, body = await mk.rest(api, "POST", "/api/v1/payments/paypal/return",
                                 {"order_id": order["id"]}, token)  # fmt: skip
    assert status == 200 and body["payment"]["status"] == "authorized", body
    await _held(ws, data["orders"][0]["id"])
    assert paypal.captures_of(order["id"]) == []  # authorised: nothing taken
    provider = providers_from(settings)["paypal"]
    assert isinstance(provider, PayPalProvider)
    try:
        assert await provider.status(order["id"]) == "authorized"
        first = await provider.capture(order["id"], 2500, f"capture:{data['payment']['id']}")
        again = await provider.capture(order["id"], 2500, f"capture:{data['payment']['id']}")
        assert first.status == again.status == "captured"
        auth = order["purchase_units"][0]["payments"]["authorizations"][0]
        assert auth["status"] == "CAPTURED" and await provider.status(order["id"]) == "captured"
        assert await provider.cancel(order["id"]) is False  # captured: not voidable

        ws2, data2, _ = await risky_checkout(api, settings, 142, {"provider": "paypal"}, "eur")
        other = paypal.last_order()
        paypal.approve(other["id"])
        assert (await provider.approve(other["id"], data2["payment"]["id"])).status == "authorized"
        assert await provider.cancel(other["id"]) is True
        late = await provider.capture(other["id"], 2500, "capture:late")
        assert late.status == "declined"
        await ws2.close()
    finally:
        await provider.close()
    await ws.close()


async def test_upi_held_checkout_is_authorised_then_captured(held_env: Env):
    _, razorpay, api, settings = held_env
    ws, data, _ = await risky_checkout(api, settings, 143, {"provider": "upi"}, "inr")
    order = razorpay.last_order()
    assert order["payment_capture"] == 0 and order["notes"]["capture"] == "manual"
    authorized = razorpay.pay(order["id"], status="authorized")
    body, headers = razorpay.signed(razorpay.event("payment.authorized", authorized))
    async with api.http.post(api.base + "/api/v1/payments/upi/webhook", data=body,
                             headers=headers) as resp:  # fmt: skip
        assert resp.status == 200
    await _held(ws, data["orders"][0]["id"])
    provider = providers_from(settings)["upi"]
    assert isinstance(provider, UpiProvider)
    try:
        assert await provider.status(order["id"]) == "authorized"
        assert await provider.cancel(order["id"]) is True  # Razorpay returns it by itself
        first = await provider.capture(order["id"], 2500, "capture:x")
        again = await provider.capture(order["id"], 2500, "capture:x")
        assert first.status == again.status == "captured"
        assert authorized["status"] == "captured"
        assert await provider.cancel(order["id"]) is False
    finally:
        await provider.close()
    await ws.close()
