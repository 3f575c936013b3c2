"""UPI through the Razorpay provider against a local stand-in of Razorpay's API (tests/
integration/razorpay_standin.py): the intent URI and QR code, a collect request to the
buyer's VPA, captures and failures by verified webhook (duplicate, out of order, bad
signature), timeouts, a second order of one checkout refunded, and refunds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from tests.integration import market_kit as mk
from tests.integration.client import Api, Ws
from tests.integration.razorpay_standin import KEY_ID, KEY_SECRET, WEBHOOK_SECRET, FakeRazorpay

pytestmark = pytest.mark.integration

UPI = {"provider": "upi"}
Env = tuple[FakeRazorpay, Api]
SELLERS: dict[str, str] = {}


@pytest.fixture(scope="module")
async def upi_env(settings: Settings) -> AsyncIterator[Env]:
    fake = FakeRazorpay()
    fake_server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await fake_server.start_server()
    configured = settings.model_copy(
        update={
            "upi_key_id": KEY_ID,
            "upi_key_secret": KEY_SECRET,
            "upi_api_base": str(fake_server.make_url("")).rstrip("/"),
            "upi_webhook_secret": WEBHOOK_SECRET,
            "upi_payee_vpa": "hyperlocal@razorpay",
            "upi_payee_name": "Hyperlocal Market",
            "upi_timeout_s": 2.0,
        }
    )
    gateway = TestServer(build_app(configured), host="127.0.0.1", port=0)
    await gateway.start_server()
    async with ClientSession() as http:
        yield fake, Api(str(gateway.make_url("")), http)
    await gateway.close()
    await fake_server.close()


async def send(api: Api, fake: FakeRazorpay, event: dict[str, Any], **kw: Any) -> tuple[int, Any]:
    body, headers = fake.signed(event, **kw)
    async with api.http.post(
        api.base + "/api/v1/payments/upi/webhook", data=body, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def pending(
    settings: Settings, env: Env, i: int, price: int = 24900, payment: dict[str, Any] = UPI
) -> tuple[Ws, Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A new shop's listing checked out with UPI: the buyer's socket and user, the checkout
    reply's data, its order and the Razorpay order at the stand-in."""
    fake, api = env
    seller, shop = await mk.vendor(api, mk.spot(settings, i), f"upi-shop-{i}")
    SELLERS[shop["id"]] = seller.access_token
    item = await mk.listing(api, seller.access_token, stock=3, price=price, currency="inr")
    buyer = await api.signup(f"upi-buyer-{i}")
    ws = await api.connect(buyer)
    reply = await mk.buy(ws, item["id"], 1, payment)
    assert reply["ok"], reply
    data = reply["data"]
    return ws, buyer, data, data["orders"][0], fake.last_order()


async def paid_events(settings: Settings, user_id: str, order_id: str) -> int:
    conn = await mk.db(settings)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM stream_events WHERE stream = $1 AND ev = 'order.updated'"
            " AND data->'order'->>'id' = $2 AND data->'order'->>'status' = 'paid'",
            f"user:{user_id}", order_id,
        ))  # fmt: skip
    finally:
        await conn.close()


async def test_intent_uri_qr_and_captured_once(settings: Settings, upi_env: Env):
    fake, api = upi_env
    ws, buyer, data, order, rzp = await pending(settings, upi_env, 121)
    payment = data["payment"]
    assert payment["status"] == "requires_action" and order["status"] == "pending_payment"
    assert rzp["receipt"] == payment["id"] and rzp["amount"] == 24900
    uri = urlsplit(payment["upi_uri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("upi", "pay", "")
    assert dict(parse_qsl(uri.query)) == {
        "pa": "hyperlocal@razorpay", "pn": "Hyperlocal Market", "am": "249.00", "cu": "INR",
        "tr": rzp["id"], "tn": f"Order {rzp['id']}",
    }  # fmt: skip
    assert payment["qr_svg"].startswith("<svg") and payment["qr_svg"].rstrip().endswith("</svg>")

    paid = fake.pay(rzp["id"])
    captured = fake.event("payment.captured", paid)
    status, reply = await send(api, fake, captured, event_id="evt_cap_121")
    assert status == 200 and reply == {"received": True, "duplicate": False}
    assert await mk.order_status(settings, order["id"]) == "paid"
    status, reply = await send(api, fake, captured, event_id="evt_cap_121")  # redelivered
    assert status == 200 and reply["duplicate"] is True
    status, reply = await send(api, fake, fake.event("order.paid", paid))  # the same money
    assert status == 200 and reply["duplicate"] is False
    assert await paid_events(settings, buyer.id, order["id"]) == 1
    again = await ws.ok("order.get", {"order_id": order["id"]})
    assert again["order"]["status"] == "paid"
    await ws.close()


async def test_collect_request_to_the_buyers_vpa(settings: Settings, upi_env: Env):
    fake, _ = upi_env
    ws, _, _, _, rzp = await pending(
        settings, upi_env, 122, payment={"provider": "upi", "vpa": "buyer@okbank"}
    )
    assert [c["upi"] for c in fake.collects if c["order_id"] == rzp["id"]] == [
        {"flow": "collect", "vpa": "buyer@okbank", "expiry_time": "10"}
    ]
    await ws.close()


async def test_a_malformed_vpa_is_refused_before_anything(settings: Settings, upi_env: Env):
    fake, api = upi_env
    seller, _ = await mk.vendor(api, mk.spot(settings, 123), "upi-vpa-shop")
    item = await mk.listing(api, seller.access_token, stock=3, price=500, currency="inr")
    ws = await api.connect(await api.signup("upi-vpa-buyer"))
    before = len(fake.orders)
    reply = await mk.buy(ws, item["id"], 1, {"provider": "upi", "vpa": "not a vpa"})
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert len(fake.orders) == before and await mk.stock_of(settings, item["id"]) == 3
    refused = await mk.buy(ws, item["id"], 1, {"provider": "upi", "vpa": "invalid@okbank"})
    assert refused["error"]["code"] == "payment_failed"  # the PSP refused the collect
    assert await mk.stock_of(settings, item["id"]) == 3
    other = await mk.listing(api, seller.access_token, stock=3, price=500, currency="eur")
    ws2 = await api.connect(await api.signup("upi-eur-buyer"))
    euros = await mk.buy(ws2, other["id"], 1, UPI)
    assert euros["error"]["code"] == "payment_failed", euros  # UPI moves rupees only
    assert await mk.stock_of(settings, other["id"]) == 3
    await ws.close()
    await ws2.close()


async def test_failure_releases_and_a_late_capture_is_refunded(settings: Settings, upi_env: Env):
    """payment.failed releases the orders (stock back); the buyer then pays the same
    Razorpay order anyway: its capture finds the order ended and gives the money back."""
    fake, api = upi_env
    ws, _, _, order, rzp = await pending(settings, upi_env, 124, price=1500)
    failed = fake.pay(rzp["id"], status="failed")
    assert (await send(api, fake, fake.event("payment.failed", failed)))[0] == 200
    assert await mk.order_status(settings, order["id"]) == "cancelled"
    assert await mk.stock_of(settings, order["items"][0]["listing_id"]) == 3
    late = fake.pay(rzp["id"])
    assert (await send(api, fake, fake.event("payment.captured", late)))[0] == 200
    assert await mk.order_status(settings, order["id"]) in ("cancelled", "refunded")
    assert late["amount_refunded"] == 1500
    await ws.close()


async def test_out_of_order_failure_after_capture_changes_nothing(settings: Settings, upi_env: Env):
    fake, api = upi_env
    ws, buyer, _, order, rzp = await pending(settings, upi_env, 125)
    paid = fake.pay(rzp["id"])
    earlier_attempt = {**paid, "id": "pay_earlier", "status": "failed"}
    assert (await send(api, fake, fake.event("payment.captured", paid)))[0] == 200
    assert (await send(api, fake, fake.event("payment.failed", earlier_attempt)))[0] == 200
    assert await mk.order_status(settings, order["id"]) == "paid"
    assert await paid_events(settings, buyer.id, order["id"]) == 1
    await ws.close()


async def test_bad_signature_refused_nothing_changed(settings: Settings, upi_env: Env):
    fake, api = upi_env
    ws, _, _, order, rzp = await pending(settings, upi_env, 126)
    captured = fake.event("payment.captured", fake.pay(rzp["id"]))
    url = api.base + "/api/v1/payments/upi/webhook"
    body, headers = fake.signed(captured, secret="someone-else", event_id="evt_forged_126")
    async with api.http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
    good, headers = fake.signed(captured, event_id="evt_forged_126")
    async with api.http.post(url, data=good + b"\n", headers=headers) as resp:
        assert resp.status == 400  # the body changed after signing
    unsigned = {k: v for k, v in headers.items() if k != "X-Razorpay-Signature"}
    async with api.http.post(url, data=good, headers=unsigned) as resp:
        assert resp.status == 401
    assert await mk.order_status(settings, order["id"]) == "pending_payment"
    conn = await mk.db(settings)
    try:
        assert not await conn.fetchval("SELECT 1 FROM provider_events WHERE id = 'evt_forged_126'")
    finally:
        await conn.close()
    assert (await send(api, fake, captured, event_id="evt_forged_126"))[0] == 200
    assert await mk.order_status(settings, order["id"]) == "paid"
    await ws.close()


async def test_a_timed_out_order_is_found_by_its_receipt(settings: Settings, upi_env: Env):
    fake, api = upi_env
    seller, _ = await mk.vendor(api, mk.spot(settings, 127), "upi-slow")
    item = await mk.listing(api, seller.access_token, stock=3, price=900, currency="inr")
    ws = await api.connect(await api.signup("upi-slow-buyer"))
    await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
    key = uuid.uuid4().hex
    fake.delays["/v1/orders"] = 3.0  # Razorpay makes the order, answers too late
    first = await ws.request("checkout", {"payment": UPI}, key=key, timeout=30)
    assert first["ok"] is False and first["error"]["code"] == "unavailable", first
    retry = await ws.request("checkout", {"payment": UPI}, key=key, timeout=30)
    assert retry["ok"], retry
    payment = retry["data"]["payment"]
    made = fake.orders_with_receipt(payment["id"])
    assert len(made) == 1 and f"tr={made[0]['id']}" in payment["upi_uri"]
    await ws.close()


async def test_money_on_a_second_order_of_one_checkout_goes_back(settings: Settings, upi_env: Env):
    """Two first attempts raced and each made a Razorpay order (no idempotency key there):
    a payment on the one our row does not hold is refunded in full; ours pays the order."""
    fake, api = upi_env
    ws, _, data, order, rzp = await pending(settings, upi_env, 128, price=2000)
    twin = {**rzp, "id": f"order_twin{uuid.uuid4().hex[:8]}", "status": "created"}
    fake.orders[twin["id"]] = twin
    stray = fake.pay(twin["id"])
    assert (await send(api, fake, fake.event("payment.captured", stray)))[0] == 200
    assert stray["amount_refunded"] == 2000
    assert await mk.order_status(settings, order["id"]) == "pending_payment"
    assert (await send(api, fake, fake.event("payment.captured", fake.pay(rzp["id"]))))[0] == 200
    assert await mk.order_status(settings, order["id"]) == "paid"
    assert data["payment"]["id"] == twin["receipt"]
    await ws.close()


async def test_refunds_full_and_partial(settings: Settings, upi_env: Env):
    fake, api = upi_env
    ws, _, _, order, rzp = await pending(settings, upi_env, 129, price=800)
    paid = fake.pay(rzp["id"])
    assert (await send(api, fake, fake.event("payment.captured", paid)))[0] == 200
    dispute = (
        await ws.mutate("dispute.open", {"order_id": order["id"], "reason": "other", "text": "x"})
    )["dispute"]
    status, reply = await mk.rest(
        api, "POST", f"/api/v1/vendor/disputes/{dispute['id']}/respond",
        {"text": "part of it", "refund": True, "amount": 300}, SELLERS[order["vendor_id"]],
    )  # fmt: skip
    assert status == 200, reply
    cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    assert cancelled["order"]["status"] == "refunded" and cancelled["order"]["refunded"] == 800
    assert paid["amount_refunded"] == 800
    assert sorted(r["amount"] for r in fake.refunds.values() if r["payment_id"] == paid["id"]) == [
        300, 500,
    ]  # fmt: skip
    row = await mk.refund_of(settings, order["id"])
    assert row["status"] == "succeeded" and row["refunded_amount"] == 800
    await ws.close()


async def test_malformed_webhook_bodies_are_a_typed_400_and_change_nothing(
    settings: Settings, upi_env: Env
):
    """Signed (so past the signature) but the wrong shape: keys gone, wrong types, nested
    nulls, a small fuzz of each level the handler reads; each a 400, nothing recorded."""
    fake, api = upi_env
    ws, _, _, order, rzp = await pending(settings, upi_env, 167)
    paid = fake.pay(rzp["id"])
    captured = fake.event("payment.captured", paid)
    payload = captured["payload"]
    broken: list[Any] = [
        ["payment.captured"],
        {**captured, "event": None},
        {**captured, "event": 7},
        {**captured, "payload": "payment"},
        {**captured, "payload": [payload]},
        {**captured, "payload": {"payment": "entity"}},
        {**captured, "payload": {"payment": {"entity": [paid]}}},
        {**captured, "payload": {"payment": {"entity": {**paid, "order_id": 5}}}},
        {**captured, "payload": {"payment": {"entity": {**paid, "amount": "249"}}}},
        {**captured, "payload": {"payment": None, "order": {"entity": {"id": ["x"]}}}},
        {**captured, "payload": {"payment": None, "order": "order"}},
    ]
    refund = fake.refund_in_dashboard(paid, 100)
    for entity in ({"id": 5, "amount": 100}, {"id": "rfnd_x"}, {"id": "rfnd_x", "amount": "1"},
                   "refund", None):  # fmt: skip
        body = {**refund["payload"], "refund": {"entity": entity}}
        broken.append({**refund, "payload": body})
    for i, event in enumerate(broken):
        status, reply = await send(api, fake, event, event_id=f"evt_bad_167_{i}")
        assert status == 400 and reply["error"]["code"] == "bad_request", (event, reply)
    assert await mk.order_status(settings, order["id"]) == "pending_payment"
    conn = await mk.db(settings)
    try:
        assert not await conn.fetchval(
            "SELECT 1 FROM provider_events WHERE id LIKE 'evt_bad_167_%'"
        )
    finally:
        await conn.close()
    assert (await send(api, fake, captured))[0] == 200  # the well-formed event still works
    assert await mk.order_status(settings, order["id"]) == "paid"
    await ws.close()
