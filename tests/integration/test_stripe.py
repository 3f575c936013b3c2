"""The Stripe provider against a local stand-in of the Stripe API (the SDK's api base points at
it), and the webhook endpoint with events signed by the SDK's own signature helper."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from payments.base import Charge
from payments.stripe_provider import StripeProvider
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = "whsec_test_hyperlocal"


class FakeStripe:
    """Just enough of the Stripe API: PaymentIntents and Refunds, honouring idempotency keys."""

    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str | None, dict[str, str]]] = []
        self.on_refund: Any = None
        self.complete_on_read: set[str] = set()
        """Intents whose customer finishes 3-D Secure right after the next read of them."""
        self.refunded_elsewhere: set[str] = set()
        """Intents already fully refunded (e.g. from the dashboard): refunds are refused."""
        """Intents whose customer finishes 3-D Secure right after the next read of them."""
        """An async callable run with each new refund before it is answered (a webhook race)."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self.create_intent)
        app.router.add_get("/v1/payment_intents/search", self.search_intents)
        app.router.add_get("/v1/payment_intents/{id}", self.get_intent)
        app.router.add_post("/v1/payment_intents/{id}/cancel", self.cancel_intent)
        app.router.add_post("/v1/payment_intents/{id}/capture", self.capture_intent)
        app.router.add_post("/v1/refunds", self.create_refund)
        return app

    async def _form(self, request: web.Request) -> dict[str, str]:
        assert request.headers["Authorization"] == "Bearer sk_test_hyperlocal"
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((request.path, request.headers.get("Idempotency-Key"), form))
        return form

    def _once(self, request: web.Request, make: Any) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key and key in self.by_key:
            status, body = self.by_key[key]
        else:
            status, body = make()
            if key:
                self.by_key[key] = (status, body)
        return web.json_response(body, status=status)

    async def create_intent(self, request: web.Request) -> web.Response:
        form = await self._form(request)

        def make() -> tuple[int, dict[str, Any]]:
            ident = f"pi_{uuid.uuid4().hex[:16]}"
            method = form["payment_method"]
            status = {"pm_card_visa": "succeeded", "pm_card_threeDSecure2Required":
                      "requires_action"}.get(method, "requires_payment_method")  # fmt: skip
            if status == "succeeded" and form.get("capture_method") == "manual":
                status = "requires_capture"  # authorised, held for capture
            intent = {
                "id": ident,
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "status": status,
                "client_secret": f"{ident}_secret_x",
                "metadata": {"group_id": form.get("metadata[group_id]")},
            }
            self.intents[ident] = intent
            if method == "pm_card_chargeDeclined":
                error = {
                    "type": "card_error",
                    "code": "card_declined",
                    "message": "Your card was declined.",
                    "payment_intent": intent,
                }
                return 402, {"error": error}
            return 200, intent

        return self._once(request, make)

    async def get_intent(self, request: web.Request) -> web.Response:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return web.json_response({"error": {"type": "invalid_request_error"}}, status=404)
        response = web.json_response(intent)
        if intent["id"] in self.complete_on_read:
            self.complete_on_read.discard(intent["id"])
            intent["status"] = "succeeded"
        return response

    async def search_intents(self, request: web.Request) -> web.Response:
        match = re.fullmatch(r"metadata\['group_id'\]:'([^']*)'", request.query["query"])
        assert match, request.query
        found = [x for x in self.intents.values() if x["metadata"]["group_id"] == match[1]]
        body = {"object": "search_result", "url": "/v1/payment_intents/search",
                "has_more": False, "data": found}  # fmt: skip
        return web.json_response(body)

    async def cancel_intent(self, request: web.Request) -> web.Response:
        await self._form(request)
        intent = self.intents[request.match_info["id"]]
        if intent["status"] in ("succeeded", "canceled"):
            message = f"You cannot cancel this PaymentIntent: its status is {intent['status']}."
            error = {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                     "message": message}  # fmt: skip
            return web.json_response({"error": error}, status=400)
        intent["status"] = "canceled"
        return web.json_response(intent)

    async def capture_intent(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        intent = self.intents[request.match_info["id"]]

        def make() -> tuple[int, dict[str, Any]]:
            if intent["status"] != "requires_capture":
                message = f"This PaymentIntent could not be captured: it is {intent['status']}."
                error = {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                         "message": message}  # fmt: skip
                return 400, {"error": error}
            assert int(form["amount_to_capture"]) == intent["amount"]
            intent["status"] = "succeeded"
            return 200, intent

        return self._once(request, make)

    async def create_refund(self, request: web.Request) -> web.Response:
        form = await self._form(request)

        def make() -> tuple[int, dict[str, Any]]:
            if form["payment_intent"] in self.refunded_elsewhere:
                error = {"type": "invalid_request_error", "code": "charge_already_refunded",
                         "message": "Charge has already been refunded."}  # fmt: skip
                return 400, {"error": error}
            body = {
                "id": f"re_{uuid.uuid4().hex[:16]}",
                "object": "refund",
                "status": "succeeded",
                "amount": int(form["amount"]),
                "payment_intent": form["payment_intent"],
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            }
            return 200, body

        key = request.headers.get("Idempotency-Key")
        if self.on_refund is not None and not (key and key in self.by_key):
            response = self._once(request, make)
            await self.on_refund(self.by_key[key][1] if key else None)
            return response
        return self._once(request, make)


def with_stripe(settings: Settings, fake_server: TestServer, **more: Any) -> Settings:
    """The session's settings with Stripe configured against the stand-in at
    ``fake_server`` (its API key, webhook secret and base URL), and ``more``."""
    stripe_keys = {
        "stripe_api_key": "sk_test_hyperlocal",
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": str(fake_server.make_url("")).rstrip("/"),
    }
    return settings.model_copy(update={**stripe_keys, **more})


@pytest.fixture(scope="module")
async def stripe_env(settings: Settings) -> AsyncIterator[tuple[FakeStripe, Api]]:
    fake = FakeStripe()
    fake_server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await fake_server.start_server()
    configured = with_stripe(settings, fake_server)
    gateway = TestServer(build_app(configured), host="127.0.0.1", port=0)
    await gateway.start_server()
    async with ClientSession() as http:
        yield fake, Api(str(gateway.make_url("")), http)
    await gateway.close()
    await fake_server.close()


async def send_event(api: Api, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> Any:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    async with api.http.post(
        api.base + "/api/v1/payments/stripe/webhook",
        data=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    ) as resp:
        return resp.status, await resp.json()


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": kind,
            "data": {"object": obj}}  # fmt: skip


async def paid_by_card(
    settings: Settings, stripe_env: tuple[FakeStripe, Api], spot: int, shop: str, price: int
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A new shop's listing bought once by a new buyer with a test card: the buyer's socket,
    the paid order and its payment intent at the fake Stripe."""
    fake, api = stripe_env
    seller, _ = await mk.vendor(api, mk.spot(settings, spot), shop)
    item = await mk.listing(api, seller.access_token, stock=3, price=price)
    ws = await api.connect(await api.signup(f"{shop}-buyer"))
    paid = await mk.buy(ws, item["id"], 1, {"provider": "stripe", "payment_method": "pm_card_visa"})
    assert paid["ok"], paid
    return ws, paid["data"]["orders"][0], fake.intents[next(reversed(fake.intents))]


async def test_stripe_checkout_capture_decline_and_refund(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    fake, api = stripe_env
    seller, _ = await mk.vendor(api, mk.spot(settings, 7), "stripe-shop")
    item = await mk.listing(api, seller.access_token, stock=5, price=1250, currency="eur")
    buyer = await api.signup("stripe-buyer")
    ws = await api.connect(buyer)

    paid = await mk.buy(ws, item["id"], 2, {"provider": "stripe", "payment_method": "pm_card_visa"})
    assert paid["ok"], paid
    order = paid["data"]["orders"][0]
    assert order["status"] == "paid" and paid["data"]["payment"]["status"] == "captured"
    path, key, form = fake.requests[-1]
    assert path == "/v1/payment_intents" and key == paid["data"]["payment"]["id"]
    assert form["amount"] == "2500" and form["currency"] == "eur" and form["confirm"] == "true"

    declined = await mk.buy(
        ws, item["id"], 1, {"provider": "stripe", "payment_method": "pm_card_chargeDeclined"}
    )
    assert declined["error"]["code"] == "payment_failed"
    assert await mk.stock_of(settings, item["id"]) == 3

    cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    assert cancelled["order"]["status"] == "refunded"
    path, key, form = fake.requests[-1]
    assert path == "/v1/refunds" and key and form["amount"] == "2500"
    assert await mk.stock_of(settings, item["id"]) == 5
    await ws.close()


async def test_stripe_webhook_signature_and_once_only(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    fake, api = stripe_env
    seller, _ = await mk.vendor(api, mk.spot(settings, 8), "stripe-3ds")
    item = await mk.listing(api, seller.access_token, stock=5, price=900)
    buyer = await api.signup("stripe-3ds-buyer")
    ws = await api.connect(buyer)
    pending = await mk.buy(
        ws, item["id"], 1, {"provider": "stripe", "payment_method": "pm_card_threeDSecure2Required"}
    )
    assert pending["data"]["payment"]["status"] == "requires_action"
    assert pending["data"]["payment"]["client_secret"]
    order = pending["data"]["orders"][0]
    intent = fake.intents[next(reversed(fake.intents))]
    intent["status"] = "succeeded"
    succeeded = event("payment_intent.succeeded", intent)

    status, body = await send_event(api, succeeded, secret="whsec_wrong")
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert (await ws.ok("order.get", {"order_id": order["id"]}))["order"]["status"] == (
        "pending_payment"
    )
    conn = await mk.db(settings)
    try:
        assert not await conn.fetchval("SELECT 1 FROM stripe_events WHERE id = $1", succeeded["id"])
        for _ in range(2):
            status, body = await send_event(api, succeeded)
            assert status == 200 and body["received"]
        assert body["duplicate"] is True
        assert (await ws.ok("order.get", {"order_id": order["id"]}))["order"]["status"] == "paid"
        paid_events = await conn.fetchval(
            "SELECT count(*) FROM stream_events WHERE stream = $1 AND ev = 'order.updated'"
            " AND data->'order'->>'id' = $2 AND data->'order'->>'status' = 'paid'",
            f"user:{buyer.id}",
            order["id"],
        )
        assert paid_events == 1

        refunded = event("charge.refunded", {"id": "ch_1", "object": "charge",
                         "payment_intent": intent["id"], "refunded": True,
                         "amount_refunded": 900})  # fmt: skip
        for _ in range(2):
            status, body = await send_event(api, refunded)
            assert status == 200
        final = (await ws.ok("order.get", {"order_id": order["id"]}))["order"]
        assert final["status"] == "refunded"
        assert await mk.stock_of(settings, item["id"]) == 5
        refunds = await conn.fetchval(
            "SELECT count(*) FROM refunds WHERE order_id = $1 AND status = 'external'", order["id"]
        )
        assert refunds == 1
    finally:
        await conn.close()
    status, _ = await send_event(api, {"garbage": True}, secret="whsec_wrong")
    assert status == 400
    await ws.close()


async def test_own_refund_and_its_webhook_count_once(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    """Stripe's ``charge.refunded`` for our own refund lands before we record it: not 2x."""
    fake, api = stripe_env
    ws, order, intent = await paid_by_card(settings, stripe_env, 30, "stripe-refund-race", 800)

    async def webhook_first(refund: dict[str, Any] | None) -> None:
        charge = {"id": "ch_race", "object": "charge", "payment_intent": intent["id"],
                  "refunded": True, "amount_refunded": 800}  # fmt: skip
        status, _ = await send_event(api, event("charge.refunded", charge))
        landed.append(status)

    landed: list[int] = []
    fake.on_refund = webhook_first
    try:
        cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    finally:
        fake.on_refund = None
    assert cancelled["order"]["status"] == "refunded" and landed == [200]
    row = await mk.refund_of(settings, order["id"])
    assert row["status"] == "succeeded" and row["refunded_amount"] == 800
    await ws.close()


async def _expire_and_wait(settings: Settings, order_id: str) -> str:
    """Run the order's reservation out; its status once the sweeper has settled it."""
    conn = await mk.db(settings)
    try:
        await conn.execute(
            "UPDATE orders SET reserved_until = now() - interval '1 second' WHERE id = $1",
            order_id,
        )
        for _ in range(300):
            status = await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
            if status != "pending_payment":
                return str(status)
            await asyncio.sleep(0.1)
        return "pending_payment"
    finally:
        await conn.close()


async def _three_ds(
    settings: Settings, fake: FakeStripe, api: Api, i: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    seller, _ = await mk.vendor(api, mk.spot(settings, i), f"stripe-sweep-{i}")
    item = await mk.listing(api, seller.access_token, stock=2, price=600)
    buyer = await api.signup(f"stripe-sweep-buyer-{i}")
    ws = await api.connect(buyer)
    pay = {"provider": "stripe", "payment_method": "pm_card_threeDSecure2Required"}
    pending = (await mk.buy(ws, item["id"], 1, pay))["data"]
    await ws.close()
    intent = next(x for x in fake.intents.values() if x["metadata"]["group_id"] == (
        pending["orders"][0]["group_id"]))  # fmt: skip
    return pending["orders"][0], pending["payment"], intent


async def test_sweeper_settles_a_3ds_finished_during_its_cancel_as_captured(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    """Read ``requires_action``, then the customer finishes: Stripe refuses the cancel, so the
    payment is captured and the order paid, not cancelled with the money kept."""
    fake, api = stripe_env
    order, payment, intent = await _three_ds(settings, fake, api, 31)
    fake.complete_on_read.add(intent["id"])
    assert await _expire_and_wait(settings, order["id"]) == "paid"
    conn = await mk.db(settings)
    try:
        row = await conn.fetchrow("SELECT status FROM payments WHERE id = $1", payment["id"])
    finally:
        await conn.close()
    assert row["status"] == "captured"


async def test_sweeper_finds_a_charge_whose_answer_was_never_stored(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    """A crash after Stripe captured but before we stored its answer: the sweeper finds the
    PaymentIntent by our metadata and settles the order by it instead of assuming void."""
    fake, api = stripe_env
    order, payment, intent = await _three_ds(settings, fake, api, 32)
    intent["status"] = "succeeded"
    conn = await mk.db(settings)
    try:
        await conn.execute(
            "UPDATE payments SET status = 'pending', provider_ref = NULL WHERE id = $1",
            payment["id"],
        )
    finally:
        await conn.close()
    assert await _expire_and_wait(settings, order["id"]) == "paid"
    conn = await mk.db(settings)
    try:
        row = await conn.fetchrow("SELECT * FROM payments WHERE id = $1", payment["id"])
    finally:
        await conn.close()
    assert row["status"] == "captured" and row["provider_ref"] == intent["id"]


async def test_payment_failed_is_not_final_only_canceled_releases(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    """After ``payment_intent.payment_failed`` the customer may confirm again: the order stays
    reserved and a later success pays it; ``canceled`` releases."""
    fake, api = stripe_env
    order, _, intent = await _three_ds(settings, fake, api, 35)
    intent["status"] = "requires_payment_method"
    status, _ = await send_event(api, event("payment_intent.payment_failed", intent))
    assert status == 200
    conn = await mk.db(settings)
    try:
        assert await conn.fetchval(
            "SELECT status FROM orders WHERE id = $1", order["id"]
        ) == "pending_payment"  # fmt: skip
        intent["status"] = "succeeded"
        await send_event(api, event("payment_intent.succeeded", intent))
        assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order["id"]) == "paid"
    finally:
        await conn.close()
    other, _, intent2 = await _three_ds(settings, fake, api, 36)
    intent2["status"] = "canceled"
    await send_event(api, event("payment_intent.canceled", intent2))
    conn = await mk.db(settings)
    try:
        status = await conn.fetchval("SELECT status FROM orders WHERE id = $1", other["id"])
    finally:
        await conn.close()
    assert status == "cancelled"


async def test_a_refund_stripe_refuses_for_good_is_failed_not_retried(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    fake, _ = stripe_env
    ws, order, intent = await paid_by_card(settings, stripe_env, 39, "stripe-refused", 700)
    fake.refunded_elsewhere.add(intent["id"])
    cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    await ws.close()
    assert cancelled["order"]["status"] == "refunded"
    row = await mk.refund_of(settings, order["id"])
    assert row["status"] == "failed" and "charge_already_refunded" in row["error"]


async def test_a_held_payment_is_authorised_then_captured_or_voided(settings: Settings) -> None:
    """What the fraud review asks of Stripe (services/risk.py): authorise only
    (``capture_method: manual``), capture in full (idempotent by key), void; a capture of a
    voided authorisation is a decline, not an error."""
    fake = FakeStripe()
    server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await server.start_server()
    provider = StripeProvider("sk_test_hyperlocal", str(server.make_url("")).rstrip("/"), None)
    try:
        details = {"provider": "stripe", "payment_method": "pm_card_visa"}
        assert provider.instrument(details) == "pm_card_visa"
        held = await provider.charge(Charge("pay-held-1", 900, "eur", details, capture=False))
        assert held.status == "authorized" and held.provider_ref
        assert fake.requests[-1][2]["capture_method"] == "manual"
        assert await provider.status(held.provider_ref) == "authorized"
        captured = await provider.capture(held.provider_ref, 900, "capture:pay-held-1")
        assert captured.status == "captured"
        again = await provider.capture(held.provider_ref, 900, "capture:pay-held-1")
        assert again.status == "captured"  # the same key: Stripe's first answer
        assert await provider.status(held.provider_ref) == "captured"
        other = await provider.charge(Charge("pay-held-2", 500, "eur", details, capture=False))
        assert other.provider_ref and await provider.cancel(other.provider_ref)
        late = await provider.capture(other.provider_ref, 500, "capture:pay-held-2")
        assert late.status == "declined"
    finally:
        await provider.close()
        await server.close()


async def test_a_held_checkout_needing_3ds_is_held_once_authorised(settings: Settings) -> None:
    """A risky checkout whose card needs 3-D Secure: authorise-only PaymentIntent, orders
    pending while the customer acts; Stripe's amount_capturable_updated holds them (the
    buyer hears it), the payment authorised and nothing captured; a redelivery changes
    nothing; without the event the sweeper finds the authorisation at expiry and holds."""
    fake = FakeStripe()
    fake_server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await fake_server.start_server()
    configured = with_stripe(settings, fake_server, risk_hold_score=60)
    gateway = TestServer(build_app(configured), host="127.0.0.1", port=0)
    await gateway.start_server()
    try:
        async with ClientSession() as http:
            api = Api(str(gateway.make_url("")), http)
            where = mk.spot(settings, 68)
            seller, _ = await mk.vendor(api, where, "held-3ds")
            item = await mk.listing(api, seller.access_token, stock=3, price=700)
            ws = await api.connect(await api.signup("held-3ds-buyer"))
            await ws.ok("locate", {"lat": where[0], "lng": where[1]})
            await ws.ok("locate", {"lat": 48.8566, "lng": 2.3522})  # Paris, a moment later
            card = {"provider": "stripe", "payment_method": "pm_card_threeDSecure2Required"}
            reply = await mk.buy(ws, item["id"], 1, card)
            assert reply["ok"], reply
            order = reply["data"]["orders"][0]
            assert order["status"] == "pending_payment" and order["risk"]["score"] >= 60
            assert reply["data"]["payment"]["status"] == "requires_action"
            path, _, form = fake.requests[-1]
            assert path == "/v1/payment_intents" and form["capture_method"] == "manual"
            intent = fake.intents[next(reversed(fake.intents))]
            intent["status"] = "requires_capture"  # the customer finished 3-D Secure
            capturable = event("payment_intent.amount_capturable_updated", intent)
            for _ in range(2):  # a redelivery is acknowledged, nothing more
                status, _body = await send_event(api, capturable)
                assert status == 200
            while True:
                ev = await ws.next_event("order.updated", timeout=15)
                if ev["data"]["order"]["status"] == "held":
                    break
            conn = await mk.db(settings)
            try:
                row = await conn.fetchrow(
                    "SELECT p.status, g.status AS g FROM payments p JOIN order_groups g"
                    " ON g.id = p.group_id WHERE g.id = $1",
                    order["group_id"],
                )
            finally:
                await conn.close()
            assert row is not None and (row["status"], row["g"]) == ("authorized", "held")
            # the same, its webhook lost: the sweeper asks Stripe at expiry and holds it
            await ws.ok("locate", {"lat": where[0], "lng": where[1]})  # and back: travel
            lost = await mk.buy(ws, item["id"], 1, card)
            assert lost["ok"] and lost["data"]["orders"][0]["status"] == "pending_payment", lost
            fake.intents[next(reversed(fake.intents))]["status"] = "requires_capture"
            order_id = lost["data"]["orders"][0]["id"]
            assert await _expire_and_wait(settings, order_id) == "held"
            assert not any(p.endswith("/capture") for p, _, _ in fake.requests)
            await ws.close()
    finally:
        await gateway.close()
        await fake_server.close()


async def test_partial_refunds_through_stripe_each_with_its_own_key(
    settings: Settings, stripe_env: tuple[FakeStripe, Api]
) -> None:
    """A dispute's partial refund, then the rest when the order is cancelled: two Stripe
    Refunds of one PaymentIntent, each under its refund's own idempotency key."""
    fake, api = stripe_env
    seller, _ = await mk.vendor(api, mk.spot(settings, 84), "stripe-partial")
    item = await mk.listing(api, seller.access_token, stock=3, price=800)
    ws = await api.connect(await api.signup("stripe-partial-buyer"))
    paid = await mk.buy(ws, item["id"], 1, {"provider": "stripe", "payment_method": "pm_card_visa"})
    assert paid["ok"], paid
    order, intent = paid["data"]["orders"][0], fake.intents[next(reversed(fake.intents))]
    dispute = (
        await ws.mutate("dispute.open", {"order_id": order["id"], "reason": "other", "text": "x"})
    )["dispute"]
    status, reply = await mk.rest(
        api, "POST", f"/api/v1/vendor/disputes/{dispute['id']}/respond",
        {"text": "part of it", "refund": True, "amount": 300}, seller.access_token,
    )  # fmt: skip
    assert status == 200 and reply["dispute"]["amount"] == 300, reply
    cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    assert cancelled["order"]["status"] == "refunded" and cancelled["order"]["refunded"] == 800
    refunds = [(key, form) for path, key, form in fake.requests if path == "/v1/refunds"
               and form["payment_intent"] == intent["id"]]  # fmt: skip
    assert [form["amount"] for _, form in refunds] == ["300", "500"]
    assert len({key for key, _ in refunds}) == 2
    conn = await mk.db(settings)
    try:
        rows = await conn.fetch(
            "SELECT r.status, p.refunded_amount FROM refunds r JOIN payments p"
            " ON p.id = r.payment_id WHERE r.order_id = $1",
            order["id"],
        )
    finally:
        await conn.close()
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"]
    assert rows[0]["refunded_amount"] == 800
    await ws.close()
