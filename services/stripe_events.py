"""Stripe's webhook events, applied once each (their REST endpoint: gateway/payments_api.py).

The body is verified with the SDK against ``Stripe-Signature`` (a bad one is 400 and changes
nothing). Each event takes effect once: its order steps are commands keyed by the event id (a
repeat returns the first result), and the event id is recorded in ``stripe_events`` in the same
transaction as its payment-row effect; a redelivered event already recorded is acknowledged
without effect. Handled: ``payment_intent.succeeded`` (confirm the orders),
``payment_intent.canceled`` (release them, unless captured),
``payment_intent.amount_capturable_updated`` (a checkout held for review finished customer
action: its payment is authorised, its orders are held), refunds made at Stripe (its
dashboard): ``refund.created`` / ``refund.updated`` / ``charge.refund.updated`` once the
refund has ``succeeded``, and each succeeded refund a ``charge.refunded`` lists, mirrored by
services/provider_refunds.py (whole or partial, once per Stripe refund id, never one of our own:
those carry ``metadata.hl_refund``); a ``charge.refunded`` without its refund list that says
the charge is refunded in full refunds the orders not already refunded. ``refunded_amount``
takes Stripe's cumulative figure without counting our own refunds twice. Others, including
``payment_intent.payment_failed`` (not final: the customer may retry), are acknowledged.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from models.errors import BadRequest, NotFound
from models.refund_mirror import ProviderRefund
from payments.stripe_provider import StripeProvider
from services.checkout import Checkout
from services.market import Actor
from services.provider_refunds import RefundMirror
from store import market_store as ms

log = logging.getLogger("hyperlocal.stripe")

# ``payment_intent.payment_failed`` is not final at Stripe (the intent goes back to
# ``requires_payment_method`` and the client may confirm again with its client_secret): it is
# acknowledged only; the orders stay reserved until ``canceled`` or their reservation expires.
_STATUS = {
    "payment_intent.succeeded": "captured",
    "payment_intent.canceled": "declined",
}
_AUTHORIZED = "payment_intent.amount_capturable_updated"
"""Only a manual-capture PaymentIntent (a checkout held for review) becomes capturable."""
_REFUND = frozenset({"refund.created", "refund.updated", "charge.refund.updated"})
"""Events whose object is one refund (mirrored once it has succeeded)."""


class StripeEvents:
    """Verifies and applies Stripe's webhook events; each takes effect once."""

    def __init__(self, checkout: Checkout) -> None:
        self.checkout = checkout
        self.db = checkout.db

    async def handle(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        provider = self.checkout.market.providers.get("stripe")
        if not isinstance(provider, StripeProvider):
            raise NotFound("stripe is not configured here")
        event = provider.verify_webhook(payload, signature)
        event_id, kind = str(event.get("id", "")), str(event.get("type", ""))
        if not event_id:
            raise BadRequest("the event has no id")
        if await self.db.fetchval("SELECT 1 FROM stripe_events WHERE id = $1", event_id):
            return {"received": True, "duplicate": True}
        obj = (event.get("data") or {}).get("object") or {}
        payment = await _payment_of(self.db, obj, kind)
        if payment is not None:
            await _apply(self.checkout, event_id, kind, obj, payment)
        first = await _record(self.db, event_id, kind, obj, payment)
        log.info("stripe event %s (%s) applied=%s", event_id, kind, first)
        return {"received": True, "duplicate": not first}


async def _payment_of(db: asyncpg.Pool, obj: dict[str, Any], kind: str) -> asyncpg.Record | None:
    by_intent = kind.startswith(("charge.", "refund."))
    intent = obj.get("payment_intent") if by_intent else obj.get("id")
    if not isinstance(intent, str):
        return None
    found = await db.fetchrow(
        "SELECT * FROM payments WHERE provider = 'stripe' AND provider_ref = $1", intent
    )
    group_id = (obj.get("metadata") or {}).get("group_id")
    if found is None and kind.startswith("payment_intent.") and isinstance(group_id, str):
        # We crashed before storing Stripe's answer: find the payment by our metadata.
        found = await db.fetchrow(
            "UPDATE payments SET provider_ref = $2, updated_at = now() WHERE group_id = $1"
            " AND provider = 'stripe' AND provider_ref IS NULL RETURNING *",
            group_id,
            intent,
        )
    return found


async def _apply(
    checkout: Checkout, event_id: str, kind: str, obj: dict[str, Any], payment: asyncpg.Record
) -> None:
    """The order effects, each keyed by the event id (safe if Stripe redelivers)."""
    key_base = f"stripe:{event_id}#"
    if kind in _STATUS:
        if _STATUS[kind] == "captured":  # idempotent; lets an orphaned capture be refunded
            await checkout.db.execute(
                "UPDATE payments SET status = 'captured', updated_at = now() WHERE id = $1",
                payment["id"],
            )
        await checkout.settle(payment["group_id"], _STATUS[kind], key_base)
    elif kind == _AUTHORIZED and obj.get("status") == "requires_capture":
        await checkout.db.execute(
            "UPDATE payments SET status = 'authorized', updated_at = now() WHERE id = $1"
            " AND status IN ('pending', 'requires_action')",
            payment["id"],
        )
        await checkout.hold(payment["group_id"], key_base)
    elif kind in _REFUND or (kind == "charge.refunded" and _listed(obj) is not None):
        mirror = RefundMirror(checkout.market)
        for refund in [obj] if kind in _REFUND else _listed(obj) or []:
            if isinstance(refund, dict) and refund.get("status") == "succeeded":
                await mirror.mirror(payment, _refund_of(refund))
    elif kind == "charge.refunded" and obj.get("refunded"):
        market = checkout.market
        for order in await checkout.db.fetch(
            "SELECT id FROM orders WHERE group_id = $1 AND status NOT IN"
            " ('pending_payment', 'cancelled', 'refunded')",
            payment["group_id"],
        ):
            who = Actor("stripe", f"{key_base}refund:{order['id']}")
            await market.act(who, order["id"], "refund", "provider", "refunded at stripe")


def _listed(charge: dict[str, Any]) -> list[Any] | None:
    """The refunds a ``charge.refunded`` lists, when it lists them all (None otherwise: newer
    API versions leave the list out)."""
    refunds = charge.get("refunds")
    if not isinstance(refunds, dict) or refunds.get("has_more"):
        return None
    data = refunds.get("data")
    return data if isinstance(data, list) and data else None


def _refund_of(refund: dict[str, Any]) -> ProviderRefund:
    try:
        ref, amount = str(refund["id"]), int(refund["amount"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("a refund without an id or an amount") from None
    tag = (refund.get("metadata") or {}).get("hl_refund")
    return ProviderRefund("stripe", ref, amount, tag if isinstance(tag, str) else None)


async def _record(
    db: asyncpg.Pool,
    event_id: str,
    kind: str,
    obj: dict[str, Any],
    payment: asyncpg.Record | None,
) -> bool:
    """Record the event with its payment-row effect, in one transaction; False if repeated."""
    async with db.acquire() as conn, conn.transaction():
        first = await conn.fetchval(
            "INSERT INTO stripe_events (id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            " RETURNING id",
            event_id,
            kind,
        )
        if first is None or payment is None:
            return first is not None
        if kind in _STATUS:
            status = "captured" if _STATUS[kind] == "captured" else "declined"
            await conn.execute(
                "UPDATE payments SET status = $2, updated_at = now() WHERE id = $1"
                " AND status <> 'captured'",
                payment["id"],
                status,
            )
        elif kind == "charge.refunded" or kind in _REFUND:
            # Stripe's cumulative figure, maxed with our own refund rows: the event our own
            # refund triggers is not counted again (see ms.sync_refunded).
            await ms.sync_refunded(conn, payment["id"], int(obj.get("amount_refunded") or 0))
    return True
