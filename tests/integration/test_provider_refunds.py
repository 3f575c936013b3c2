"""Refunds made in the provider's dashboard, mirrored into orders and the ledger (docs/
payments.md, "Refunds made at the provider"), against the loopback stand-ins of Stripe, PayPal
and Razorpay, through the real gateway, owner shards, Postgres and Redis.

Partial and then whole refunds made at each provider reach the order (its ``refunded``, its
step to ``refunded`` with the stock back), its refund rows and the ledger (the commission
given back in proportion); the same refund replayed or reported by another kind of event is
mirrored once; our own refund's events (even one landing while our call is in flight) are not
mirrored again; a refund of a group's payment is spread over its orders, never beyond them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.test_money_ledger import _entries, _fetch
from tests.integration.test_paypal import back
from tests.integration.test_paypal import paypal_env as paypal_env
from tests.integration.test_paypal import pending as paypal_pending
from tests.integration.test_paypal import send as paypal_send
from tests.integration.test_stripe import FakeStripe, event, paid_by_card, send_event
from tests.integration.test_stripe import stripe_env as stripe_env
from tests.integration.test_upi import pending as upi_pending
from tests.integration.test_upi import send as upi_send
from tests.integration.test_upi import upi_env as upi_env

pytestmark = pytest.mark.integration


async def _refunds(settings: Settings, order_id: str) -> list[tuple[str, int, str | None]]:
    rows = await _fetch(
        settings,
        "SELECT status, amount, provider_ref FROM refunds WHERE order_id = $1 ORDER BY created_at",
        order_id,
    )
    return [(r["status"], int(r["amount"]), r["provider_ref"]) for r in rows]


async def _order(settings: Settings, order_id: str) -> tuple[str, int]:
    (row,) = await _fetch(settings, "SELECT status, refunded FROM orders WHERE id = $1", order_id)
    return str(row["status"]), int(row["refunded"])


def _stripe_refund(intent: dict[str, Any], amount: int, **more: Any) -> dict[str, Any]:
    return {"id": f"re_{uuid.uuid4().hex[:14]}", "object": "refund", "amount": amount,
            "payment_intent": intent["id"], "status": "succeeded", "metadata": {},
            **more}  # fmt: skip


async def test_stripe_dashboard_refunds_partial_then_the_rest_mirrored_once(
    settings: Settings, stripe_env: tuple[FakeStripe, Any]
) -> None:
    _, api = stripe_env
    ws, order, intent = await paid_by_card(settings, stripe_env, 150, "stripe-dash", 1000)
    first = _stripe_refund(intent, 300)
    created = event("refund.created", first)
    for evt in (created, created, event("charge.refund.updated", first)):  # replayed, re-told
        status, _ = await send_event(api, evt)
        assert status == 200
    charge = {"id": "ch_dash", "object": "charge", "payment_intent": intent["id"],
              "refunded": False, "amount_refunded": 300,
              "refunds": {"object": "list", "data": [first], "has_more": False}}  # fmt: skip
    assert (await send_event(api, event("charge.refunded", charge)))[0] == 200
    assert await _order(settings, order["id"]) == ("paid", 300)
    assert await _refunds(settings, order["id"]) == [("external", 300, first["id"])]
    entries = await _entries(settings, order["id"])
    assert entries[("refund", "platform_commission")] == 30  # 10 % of it, in proportion
    assert entries[("refund", "vendor_pending")] == 270
    assert entries[("refund", "refunds_payable")] == -300
    assert entries[("refund_paid", "provider_clearing")] == -300  # the money left already

    # the rest, told only by a charge.refunded listing both refunds: the order is refunded
    rest = _stripe_refund(intent, 700)
    charge = {**charge, "refunded": True, "amount_refunded": 1000,
              "refunds": {"object": "list", "data": [rest, first], "has_more": False}}  # fmt: skip
    for _ in range(2):
        assert (await send_event(api, event("charge.refunded", charge)))[0] == 200
    assert await _order(settings, order["id"]) == ("refunded", 1000)
    assert [r[1] for r in await _refunds(settings, order["id"])] == [300, 700]
    entries = await _entries(settings, order["id"])
    assert entries[("refund", "platform_commission")] == 100  # the whole fee back, no more
    assert entries[("refund", "refunds_payable")] == -1000
    assert entries[("capture", "vendor_pending")] + entries[("refund", "vendor_pending")] == 0
    (payment,) = await _fetch(
        settings, "SELECT refunded_amount FROM payments WHERE provider_ref = $1", intent["id"]
    )
    assert payment["refunded_amount"] == 1000
    # more than is left (a third refund of money already back): nothing beyond the total
    extra = event("refund.created", _stripe_refund(intent, 500))
    assert (await send_event(api, extra))[0] == 200
    assert await _order(settings, order["id"]) == ("refunded", 1000)
    assert len(await _refunds(settings, order["id"])) == 2
    await ws.close()


async def test_stripe_events_of_our_own_refund_are_not_mirrored(
    settings: Settings, stripe_env: tuple[FakeStripe, Any]
) -> None:
    fake, api = stripe_env
    ws, order, intent = await paid_by_card(settings, stripe_env, 151, "stripe-own", 800)
    cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    assert cancelled["order"]["status"] == "refunded"
    (ours,) = [body for key, (_, body) in fake.by_key.items() if key.startswith("refund-")
               and body.get("payment_intent") == intent["id"]]  # fmt: skip
    assert ours["metadata"]["hl_refund"].startswith("refund-")
    untagged = {**ours, "metadata": {}}  # known by our row's provider_ref instead
    for obj in (ours, untagged):
        assert (await send_event(api, event("refund.created", obj)))[0] == 200
    assert await _refunds(settings, order["id"]) == [("succeeded", 800, ours["id"])]
    assert (await _entries(settings, order["id"]))[("refund", "refunds_payable")] == -800
    await ws.close()


async def test_an_untagged_event_of_our_refund_in_flight_is_not_mirrored(
    settings: Settings, stripe_env: tuple[FakeStripe, Any]
) -> None:
    """A refund event without our key (made before our refunds carried one) landing while our
    refund of that amount is in flight: taken as ours, never the same money twice."""
    fake, api = stripe_env
    ws, order, _ = await paid_by_card(settings, stripe_env, 157, "stripe-untagged", 900)
    landed: list[int] = []

    async def webhook_first(refund: dict[str, Any] | None) -> None:
        assert refund is not None
        untagged = {**refund, "metadata": {}}
        landed.append((await send_event(api, event("refund.created", untagged)))[0])

    fake.on_refund = webhook_first
    try:
        cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    finally:
        fake.on_refund = None
    assert landed == [200] and cancelled["order"]["refunded"] == 900
    assert [r[0] for r in await _refunds(settings, order["id"])] == ["succeeded"]
    assert (await _entries(settings, order["id"]))[("refund", "refunds_payable")] == -900
    await ws.close()


async def test_a_group_refund_is_spread_over_its_orders_oldest_first(
    settings: Settings, stripe_env: tuple[FakeStripe, Any]
) -> None:
    fake, api = stripe_env
    items = []
    for i, price in ((152, 600), (153, 400)):
        seller, _ = await mk.vendor(api, mk.spot(settings, i), f"stripe-group-{i}")
        items.append(await mk.listing(api, seller.access_token, stock=3, price=price))
    ws = await api.connect(await api.signup("stripe-group-buyer"))
    for item in items:
        await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
    pay = {"provider": "stripe", "payment_method": "pm_card_visa"}
    reply = await ws.request("checkout", {"payment": pay}, key=uuid.uuid4().hex, timeout=60)
    assert reply["ok"], reply
    orders = sorted(reply["data"]["orders"], key=lambda o: (o["created_at"], o["id"]))
    intent = fake.intents[next(reversed(fake.intents))]
    first, second = orders
    refund = _stripe_refund(intent, first["total"] + 100)
    assert (await send_event(api, event("refund.created", refund)))[0] == 200
    assert await _order(settings, first["id"]) == ("refunded", first["total"])
    assert await _order(settings, second["id"]) == ("paid", 100)
    assert (await send_event(api, event("refund.updated", refund)))[0] == 200  # once
    assert await _order(settings, second["id"]) == ("paid", 100)
    for order in orders:
        (row,) = await _refunds(settings, order["id"])
        assert row[0] == "external" and row[2] == refund["id"]
    await ws.close()


async def test_paypal_dashboard_refund_mirrored_and_our_in_flight_refund_not_twice(
    settings: Settings, paypal_env: Any
) -> None:
    fake, api = paypal_env
    ws, buyer, _, order, pp = await paypal_pending(settings, paypal_env, 154, price=800)
    fake.approve(pp["id"])
    assert (await back(api, buyer.access_token, pp["id"]))[0] == 200
    dashboard = fake.refund_in_dashboard(pp["id"], 200)  # names only its capture
    for _ in range(2):
        status, _ = await paypal_send(api, fake, dashboard)
        assert status == 200
    ref = dashboard["resource"]["id"]
    assert (await paypal_send(api, fake, fake.refund_event(dashboard["resource"])))[0] == 200
    assert await _order(settings, order["id"]) == ("paid", 200)
    assert await _refunds(settings, order["id"]) == [("external", 200, ref)]
    assert (await _entries(settings, order["id"]))[("refund", "platform_commission")] == 20

    landed: list[int] = []

    async def webhook_first(refund: dict[str, Any]) -> None:  # our refund's event, early
        landed.append((await paypal_send(api, fake, fake.refund_event(refund)))[0])

    fake.on_refund = webhook_first
    try:
        cancelled = await ws.mutate("order.cancel", {"order_id": order["id"]})
    finally:
        fake.on_refund = None
    assert landed == [200] and cancelled["order"]["refunded"] == 800
    rows = await _refunds(settings, order["id"])
    assert [(s, a) for s, a, _ in rows] == [("external", 200), ("succeeded", 600)]
    entries = await _entries(settings, order["id"])
    assert entries[("refund", "refunds_payable")] == -800
    assert entries[("refund", "platform_commission")] == 80
    await ws.close()


async def test_razorpay_dashboard_refund_mirrored_and_our_own_not(
    settings: Settings, upi_env: Any
) -> None:
    fake, api = upi_env
    ws, _, _, order, rzp = await upi_pending(settings, upi_env, 155, price=800)
    paid = fake.pay(rzp["id"])
    assert (await upi_send(api, fake, fake.event("payment.captured", paid)))[0] == 200
    listing_id = order["items"][0]["listing_id"]
    stock = await mk.stock_of(settings, listing_id)
    processed = fake.refund_in_dashboard(paid, 800)
    for event_id in ("evt_rf_155", "evt_rf_155", "evt_rf_155_again"):  # replayed, re-sent
        status, _ = await upi_send(api, fake, processed, event_id=event_id)
        assert status == 200
    assert await _order(settings, order["id"]) == ("refunded", 800)
    assert await mk.stock_of(settings, listing_id) == stock + 1
    ref = processed["payload"]["refund"]["entity"]["id"]
    assert await _refunds(settings, order["id"]) == [("external", 800, ref)]

    # our own refund's refund.processed (notes.refund = our key) changes nothing
    ws2, _, _, order2, rzp2 = await upi_pending(settings, upi_env, 156, price=500)
    paid2 = fake.pay(rzp2["id"])
    assert (await upi_send(api, fake, fake.event("payment.captured", paid2)))[0] == 200
    await ws2.mutate("order.cancel", {"order_id": order2["id"]})
    (ours,) = [r for r in fake.refunds.values() if r["payment_id"] == paid2["id"]]
    assert ours["notes"]["refund"].startswith("refund-")
    assert (await upi_send(api, fake, fake.refund_event(ours)))[0] == 200
    assert [r[0] for r in await _refunds(settings, order2["id"])] == ["succeeded"]
    await ws.close()
    await ws2.close()


async def test_a_refund_event_for_no_payment_of_ours_changes_nothing(
    settings: Settings, stripe_env: tuple[FakeStripe, Any]
) -> None:
    _, api = stripe_env
    stray = _stripe_refund({"id": "pi_not_ours"}, 100)
    status, reply = await send_event(api, event("refund.created", stray))
    assert status == 200 and reply["received"] is True
    found = await _fetch(settings, "SELECT 1 FROM refunds WHERE provider_ref = $1", stray["id"])
    assert found == []
    status, reply = await send_event(
        api, event("refund.created", {"object": "refund", "payment_intent": "pi_x"}), "whsec_bad"
    )
    assert status == 400
