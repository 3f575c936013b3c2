"""PayPal's and Razorpay's (UPI) webhook events and PayPal's buyer return, applied once each
(their REST endpoints: gateway/provider_payments_api.py; Stripe's: services/stripe_events.py).

A payment moves through the same steps Stripe's does, so whatever hangs off them (the orders'
confirmation by their owner shards, the ledger's postings) happens alike for every provider:
captured -> the payment row ``captured`` and ``Checkout.settle(.., "captured")``; declined ->
the row ``declined`` (only from ``pending`` / ``requires_action``: a captured payment never
regresses) and ``settle(.., "declined")`` (which ignores a decline once captured); authorised
(a checkout held for review) -> the row ``authorized`` and ``Checkout.hold``.

**Never twice.** PayPal: the buyer's return and PayPal's ``CHECKOUT.ORDER.APPROVED`` both
capture with ``PayPal-Request-Id`` ``<payment id>:approve``: whichever comes second gets the
first's answer, one capture. A payment our sweeper has already voided (reservation expired) is
not captured by a late return. Every order step is keyed (a repeat changes nothing) and each
event id is recorded in ``provider_events`` once it has taken effect: a redelivery is
acknowledged without effect, an event that failed half-way is applied again on redelivery.
Out-of-order events are safe: a decline after a capture changes nothing, a capture after a
decline confirms what is still pending and refunds an order that ended meanwhile
(services/checkout.py ``_confirm_one``).

**Refunds made at the provider** (``PAYMENT.CAPTURE.REFUNDED``, Razorpay's
``refund.processed``) are mirrored by services/provider_refunds.py: whole or partial, once per
provider refund id, never one of our own (they carry our key back: ``custom_id``, ``notes``).

**UPI duplicates.** Razorpay keeps no idempotency key for orders; two concurrent first attempts
of one checkout could each make an order. A payment captured on a Razorpay order that is not
the one our payment row holds (its receipt is ours) is refunded in full at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import asyncpg

from models import webhook_shapes as shape
from models.errors import BadRequest, NotFound, PaymentFailed
from models.refund_mirror import ProviderRefund
from payments.amounts import minor_units
from payments.paypal import PayPalProvider
from payments.upi import UpiProvider, signature_of
from services.checkout import Checkout, payment_public
from services.provider_refunds import RefundMirror
from store import market_store as ms

log = logging.getLogger("hyperlocal.payments")

P = TypeVar("P", PayPalProvider, UpiProvider)

_PAYPAL_CAPTURED = frozenset({"PAYMENT.CAPTURE.COMPLETED"})
_PAYPAL_DECLINED = frozenset({"PAYMENT.CAPTURE.DECLINED", "PAYMENT.CAPTURE.DENIED",
                              "PAYMENT.AUTHORIZATION.VOIDED", "CHECKOUT.ORDER.VOIDED"})  # fmt: skip
_UPI_CAPTURED = frozenset({"payment.captured", "order.paid"})
_PAYPAL_REFUNDED = "PAYMENT.CAPTURE.REFUNDED"
_UPI_REFUNDED = "refund.processed"


class ProviderEvents:
    """Verifies and applies PayPal and UPI events and PayPal returns; each takes effect once."""

    def __init__(self, checkout: Checkout) -> None:
        self.checkout = checkout
        self.db = checkout.db
        self.refunds = RefundMirror(checkout.market)

    # -- PayPal ---------------------------------------------------------------------------------
    async def paypal_webhook(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        provider = self._provider("paypal", PayPalProvider)
        event = await provider.webhooks.verify(body, headers)
        event_id = shape.text(event, "id", required=True) or ""
        kind = shape.text(event, "event_type") or ""
        resource = shape.obj(event, "resource")
        _paypal_shape(resource, kind)  # a malformed body: bad_request before anything changes
        if await self._seen("paypal", event_id):
            return {"received": True, "duplicate": True}
        if kind == _PAYPAL_REFUNDED:
            payment = await self._paypal_refunded(provider, resource)
        else:
            payment = await self._paypal_payment(resource, kind)
        key_base = f"paypal:{event_id}#"
        if payment is not None:
            if kind == _PAYPAL_REFUNDED and resource.get("status") == "COMPLETED":
                await self.refunds.mirror(payment, _paypal_refund(resource))
            elif kind == "CHECKOUT.ORDER.APPROVED":
                await self._approve(provider, payment, key_base)
            elif kind in _PAYPAL_CAPTURED:
                await self.captured(payment, key_base)
            elif kind in _PAYPAL_DECLINED:
                await self.declined(payment, key_base)
            elif kind == "PAYMENT.AUTHORIZATION.CREATED":
                await self.authorized(payment, key_base)
        first = await self._record("paypal", event_id, kind)
        log.info("paypal event %s (%s) applied=%s", event_id, kind, first)
        return {"received": True, "duplicate": not first}

    async def paypal_return(self, user_id: str, order_id: str) -> dict[str, Any]:
        """The buyer is back from approving at PayPal: capture now (or authorise, if held).
        ``order_id`` is PayPal's (the return URL's ``token``) or one of our orders of the
        checkout; only the buyer's own payment is found (``not_found`` otherwise)."""
        provider = self._provider("paypal", PayPalProvider)
        payment = await self.db.fetchrow(
            "SELECT p.* FROM payments p JOIN order_groups g ON g.id = p.group_id"
            " WHERE p.provider = 'paypal' AND g.buyer_id = $2 AND (p.provider_ref = $1"
            " OR p.group_id = (SELECT group_id FROM orders WHERE id = $1))",
            order_id,
            user_id,
        )
        if payment is None or not payment["provider_ref"]:
            raise NotFound("no such PayPal payment of yours")
        await self._approve(provider, payment, f"paypal-return:{payment['id']}#")
        row = await self.db.fetchrow("SELECT * FROM payments WHERE id = $1", payment["id"])
        assert row is not None
        if row["status"] in ("declined", "cancelled"):
            raise PaymentFailed("the PayPal payment was declined", payment_id=row["id"])
        orders = await ms.orders_of_group(self.db, row["group_id"])
        return {"orders": await self.checkout.market.with_vendors(orders),
                "payment": payment_public(row)}  # fmt: skip

    async def _approve(
        self, provider: PayPalProvider, payment: asyncpg.Record, key_base: str
    ) -> None:
        if payment["status"] == "captured":  # finish what a crash may have left: idempotent
            await self.checkout.settle(payment["group_id"], "captured", key_base)
            return
        if payment["status"] not in ("pending", "requires_action"):
            return  # voided (expired), declined, or authorised already: nothing to take
        result = await provider.approve(payment["provider_ref"], payment["id"])
        if result.status == "captured":
            await self.captured(payment, key_base)
        elif result.status == "authorized":
            await self.authorized(payment, key_base)
        elif result.status == "declined":
            await self.declined(payment, key_base)

    async def _paypal_payment(self, resource: dict[str, Any], kind: str) -> asyncpg.Record | None:
        """Our payment of the event's PayPal order; attached by our ``custom_id`` when we
        crashed before storing PayPal's answer."""
        if kind.startswith("CHECKOUT.ORDER."):
            order_id = shape.text(resource, "id")
            custom = shape.text(shape.first(resource, "purchase_units"), "custom_id")
        else:
            order_id, custom = _related_order(resource), shape.text(resource, "custom_id")
        if order_id is None:
            return None
        return await self._payment_of("paypal", order_id, custom)

    async def _paypal_refunded(
        self, provider: PayPalProvider, resource: dict[str, Any]
    ) -> asyncpg.Record | None:
        """Our payment of a refund's PayPal order: named by the event, or by its capture (the
        refund's ``up`` link) read at PayPal."""
        order_id = _related_order(resource)
        if order_id is None:
            up = next((shape.text(link, "href") for link in shape.objects(resource, "links")
                       if link.get("rel") == "up"), None)  # fmt: skip
            capture_id = up.rstrip("/").rsplit("/", 1)[-1] if up else None
            order_id = await provider.order_of_capture(capture_id) if capture_id else None
        if order_id is None:
            return None
        return await self.db.fetchrow(
            "SELECT * FROM payments WHERE provider = 'paypal' AND provider_ref = $1", order_id
        )

    # -- UPI (Razorpay) -------------------------------------------------------------------------
    async def upi_webhook(
        self, body: bytes, signature: str, event_id: str | None
    ) -> dict[str, Any]:
        provider = self._provider("upi", UpiProvider)
        if not provider.webhook_secret:
            raise NotFound("upi webhooks are not configured")
        if not hmac.compare_digest(signature_of(body, provider.webhook_secret), signature):
            raise BadRequest("X-Razorpay-Signature does not verify")
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("webhook body is not a Razorpay event") from None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise BadRequest("webhook body is not a Razorpay event")
        kind = str(event["event"])
        paid, ref = _upi_entities(event)  # a malformed body: bad_request, nothing changed
        refund = _upi_refund(event) if kind == _UPI_REFUNDED and ref else None
        event_id = event_id or hashlib.sha256(body).hexdigest()  # Razorpay sends the header
        if await self._seen("upi", event_id):
            return {"received": True, "duplicate": True}
        payment = await self._upi_payment(provider, ref, kind, paid) if ref else None
        key_base = f"upi:{event_id}#"
        if payment is not None and ref is not None:
            if kind in _UPI_CAPTURED:
                await self.captured(payment, key_base)
            elif kind == "payment.failed":
                await self.declined(payment, key_base)
            elif kind == "payment.authorized" and await provider.status(ref) == "authorized":
                await self.authorized(payment, key_base)
            elif refund is not None:
                await self.refunds.mirror(payment, refund)
        first = await self._record("upi", event_id, kind)
        log.info("upi event %s (%s) applied=%s", event_id, kind, first)
        return {"received": True, "duplicate": not first}

    async def _upi_payment(
        self, provider: UpiProvider, ref: str, kind: str, paid: dict[str, Any]
    ) -> asyncpg.Record | None:
        found = await self.db.fetchrow(
            "SELECT * FROM payments WHERE provider = 'upi' AND provider_ref = $1", ref
        )
        if found is not None:
            return found
        receipt = await provider.receipt_of(ref)
        if receipt is None:
            return None
        attached = await self._payment_of("upi", ref, receipt)
        if attached is None and kind in _UPI_CAPTURED:
            mine = await self.db.fetchrow(
                "SELECT * FROM payments WHERE id = $1 AND provider = 'upi'", receipt
            )
            if mine is not None:  # money on a second order of one checkout: give it back
                amount = shape.whole(paid, "amount") or int(mine["amount"])
                log.warning("upi payment %s paid twice (order %s): refunding", receipt, ref)
                await provider.refund(ref, amount, f"dup-{ref}")
        return attached

    # -- shared steps (the same as Stripe's) ----------------------------------------------------
    async def captured(self, payment: asyncpg.Record, key_base: str) -> None:
        """Captured at the provider: the row says so (whatever it said: a capture the sweeper
        thought void is refunded by ``settle``), then the orders are confirmed."""
        await self.db.execute(
            "UPDATE payments SET status = 'captured', updated_at = now() WHERE id = $1",
            payment["id"],
        )
        await self.checkout.settle(payment["group_id"], "captured", key_base)

    async def declined(self, payment: asyncpg.Record, key_base: str) -> None:
        await self.db.execute(
            "UPDATE payments SET status = 'declined', updated_at = now() WHERE id = $1"
            " AND status IN ('pending', 'requires_action')",
            payment["id"],
        )
        await self.checkout.settle(payment["group_id"], "declined", key_base)

    async def authorized(self, payment: asyncpg.Record, key_base: str) -> None:
        await self.db.execute(
            "UPDATE payments SET status = 'authorized', updated_at = now() WHERE id = $1"
            " AND status IN ('pending', 'requires_action')",
            payment["id"],
        )
        await self.checkout.hold(payment["group_id"], key_base)

    # -- plumbing -------------------------------------------------------------------------------
    def _provider(self, name: str, kind: type[P]) -> P:
        provider = self.checkout.market.providers.get(name)
        if not isinstance(provider, kind):
            raise NotFound(f"{name} is not configured here")
        return provider

    async def _payment_of(
        self, provider: str, ref: str, payment_id: str | None
    ) -> asyncpg.Record | None:
        found = await self.db.fetchrow(
            "SELECT * FROM payments WHERE provider = $1 AND provider_ref = $2", provider, ref
        )
        if found is None and payment_id:  # we crashed before storing the provider's answer
            found = await self.db.fetchrow(
                "UPDATE payments SET provider_ref = $3, updated_at = now() WHERE id = $1"
                " AND provider = $2 AND provider_ref IS NULL RETURNING *",
                payment_id,
                provider,
                ref,
            )
        return found

    async def _seen(self, provider: str, event_id: str) -> bool:
        return bool(await self.db.fetchval(
            "SELECT 1 FROM provider_events WHERE provider = $1 AND id = $2", provider, event_id
        ))  # fmt: skip

    async def _record(self, provider: str, event_id: str, kind: str) -> bool:
        """Record the event once it has taken effect; False if it was recorded already."""
        first = await self.db.fetchval(
            "INSERT INTO provider_events (provider, id, type) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING id",
            provider,
            event_id,
            kind[:100],
        )
        return first is not None


def _related_order(resource: dict[str, Any]) -> str | None:
    """The PayPal order a capture's (or a refund's) event names, if it names one."""
    return shape.text(shape.obj(resource, "supplementary_data", "related_ids"), "order_id")


def _paypal_shape(resource: dict[str, Any], kind: str) -> None:
    """Refuse (``bad_request``) a PayPal event whose parts we read have the wrong shape."""
    if kind.startswith("CHECKOUT.ORDER."):
        shape.text(resource, "id")
        shape.text(shape.first(resource, "purchase_units"), "custom_id")
        return
    _related_order(resource)
    shape.text(resource, "custom_id")
    if kind == _PAYPAL_REFUNDED:
        for link in shape.objects(resource, "links"):
            shape.text(link, "href")
        if resource.get("status") == "COMPLETED":
            _paypal_refund(resource)


def _upi_entities(event: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The event's payment entity and the Razorpay order id it concerns."""
    paid = shape.obj(event, "payload", "payment", "entity")
    order = shape.obj(event, "payload", "order", "entity")
    shape.whole(paid, "amount")
    return paid, shape.text(paid, "order_id") or shape.text(order, "id")


def _paypal_refund(resource: dict[str, Any]) -> ProviderRefund:
    amount = shape.obj(resource, "amount")
    try:
        value = minor_units(str(amount["value"]), str(amount["currency_code"]))
        ref = shape.text(resource, "id", required=True) or ""
    except (KeyError, TypeError, ValueError):
        raise BadRequest("a PayPal refund without an id or an amount") from None
    return ProviderRefund("paypal", ref, value, shape.text(resource, "custom_id"))


def _upi_refund(event: dict[str, Any]) -> ProviderRefund:
    entity = shape.obj(event, "payload", "refund", "entity")
    ref, amount = shape.text(entity, "id"), shape.whole(entity, "amount")
    if ref is None or amount is None:
        raise BadRequest("a Razorpay refund without an id or an amount")
    notes = entity.get("notes")  # Razorpay sends [] for no notes
    tag = notes.get("refund") if isinstance(notes, dict) else None
    return ProviderRefund("upi", ref, amount, tag if isinstance(tag, str) else None)
