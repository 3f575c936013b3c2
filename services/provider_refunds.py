"""Refunds made at the provider, mirrored into our orders and the ledger (docs/payments.md,
"Refunds made at the provider"; the rules: models/refund_mirror.py).

A refund made in Stripe's, PayPal's or Razorpay's dashboard reaches us only as a webhook
(services/stripe_events.py, services/provider_events.py parse it into a ``ProviderRefund``).
``RefundMirror.mirror`` records it as ``external`` refunds of the payment's orders, through each
order's owner shard (``order.refund`` by the ``provider``: the refund row, the order's
``refunded``, its step to ``refunded`` when nothing is left, restock, events and hooks), and the
ledger's triggers post it as for any refund: the buyer's money back out of the provider's
clearing account, the commission given back in proportion.

**Once, whatever reports it.** Each order's part is a command keyed by the provider's refund id
and the order (``<provider>-refund:<ref>:<order>``), and its row keeps the refund id
(``provider_ref``; a unique index backs it): a replayed event, the same refund reported by two
kinds of event, or a crash half-way mirror it once. **Never our own twice**: a refund we made
carries our key back (metadata, custom_id, notes: ``is_ours``) or has our row's
``provider_ref``; either way it is not mirrored. A refund larger than what is left of the orders
is mirrored up to their totals; the rest is logged for an admin (the ledger never refunds more
than an order's total).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from models import refund_mirror as rm
from models.errors import AppError
from services.market import Actor, MarketService
from store import market_store as ms

log = logging.getLogger("hyperlocal.payments")

_REFUNDABLE = ("paid", "accepted", "fulfilled", "completed")
"""Order states whose money may be refunded by the provider (models/market.py)."""


class RefundMirror:
    """Mirrors a provider-side refund of one payment into its orders (see the module
    docstring); keeps no state."""

    def __init__(self, market: MarketService) -> None:
        self.market = market
        self.db = market.db

    async def mirror(self, payment: asyncpg.Record, refund: rm.ProviderRefund) -> dict[str, Any]:
        """Record ``refund`` of ``payment`` unless it is ours; what was recorded per order."""
        if refund.is_ours() or await self._ours(payment["id"], refund):
            return {"ours": True, "mirrored": {}}
        orders = await self._orders(payment, refund.ref)
        plan = rm.allocate(orders, refund.amount)
        done: dict[str, int] = {}
        for order_id, amount in plan.still_to_mirror(orders).items():
            who = Actor(refund.provider, f"{refund.provider}-refund:{refund.ref}:{order_id}")
            try:
                await self.market.refund(
                    who, order_id, "provider", amount=amount,
                    reason=f"refunded at {refund.provider} ({refund.ref})",
                    provider_ref=refund.ref,
                )  # fmt: skip
            except AppError as err:  # e.g. refunded meanwhile: what is left is less now
                log.warning("refund %s of %s at %s: order %s not mirrored: %s", refund.ref,
                            payment["id"], refund.provider, order_id, err.message)  # fmt: skip
                continue
            done[order_id] = amount
        if plan.excess:
            log.error("refund %s at %s of payment %s: %d more than its orders had left, not"
                      " mirrored (an admin settles it)", refund.ref, refund.provider,
                      payment["id"], plan.excess)  # fmt: skip
        await ms.sync_refunded(self.db, payment["id"])
        return {"ours": False, "mirrored": done, "excess": plan.excess}

    async def _ours(self, payment_id: str, refund: rm.ProviderRefund) -> bool:
        """A refund row of ours has its id, or (an untagged refund: one made before our refunds
        carried their key) one of ours of that amount is still in flight, its id not yet
        stored: taken as ours, since mirroring it would refund the same money twice."""
        found = await self.db.fetchrow(
            "SELECT bool_or(provider_ref = $2) AS by_ref,"
            " bool_or(status = 'pending' AND provider_ref IS NULL AND amount = $3) AS in_flight"
            " FROM refunds WHERE payment_id = $1 AND status <> 'external'",
            payment_id,
            refund.ref,
            refund.amount,
        )
        if found is not None and found["in_flight"] and not refund.tag and not found["by_ref"]:
            log.warning("refund %s at %s of payment %s: untagged, taken as our refund in flight"
                        " of the same amount", refund.ref, refund.provider, payment_id)  # fmt: skip
        return found is not None and bool(
            found["by_ref"] or (found["in_flight"] and not refund.tag)
        )

    async def _orders(self, payment: asyncpg.Record, ref: str) -> list[rm.OrderMoney]:
        """The group's orders in their fixed order, what each has left and what ``ref`` has
        mirrored into it already."""
        rows = await self.db.fetch(
            "SELECT o.id, o.status, o.total - o.refunded AS left_now,"
            " (SELECT coalesce(sum(r.amount), 0) FROM refunds r WHERE r.order_id = o.id"
            "   AND r.provider_ref = $2 AND r.status = 'external')::bigint AS mirrored"
            " FROM orders o WHERE o.group_id = $1 ORDER BY o.created_at, o.id",
            payment["group_id"],
            ref,
        )
        return [
            rm.OrderMoney(r["id"], int(r["left_now"]) if r["status"] in _REFUNDABLE else 0,
                          int(r["mirrored"]))
            for r in rows
        ]  # fmt: skip
