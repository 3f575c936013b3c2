"""Refunds made at the provider (its dashboard, its support), as our orders must mirror them
(docs/payments.md, "Refunds made at the provider"). Pure, no I/O.

A provider reports a refund of one payment; a payment pays a checkout's group of orders (one
per vendor). ``allocate`` spreads the refund over the group's orders in a fixed order (oldest
first, then by id), each taking at most what was left of it *before this refund*, so applying
the same refund again, whole or after a crash half-way, computes the same shares; what is left
of the refund when every order is whole is ``excess`` (reported, never posted: the ledger never
refunds more than an order's total). A refund we made ourselves carries the key we sent with
it (``refund-<id>``, ``dup-<order>``: ``is_ours``) and is never mirrored a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OUR_TAGS = ("refund-", "dup-")
"""The idempotency keys our own refunds carry to the provider (services/market.py
``run_refund``, services/provider_events.py's duplicate order), echoed in its refund object."""


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    """One refund as the provider reports it."""

    provider: str
    ref: str
    """The provider's refund id (Stripe ``re_...``, PayPal's refund id, Razorpay ``rfnd_...``):
    the key of its mirror, whichever event (or how many) reports it."""
    amount: int
    """Minor units of the payment's currency."""
    tag: str | None = None
    """The key we sent with the refund, when the provider echoes one back (metadata, custom_id,
    notes): only our own refunds have one."""

    def is_ours(self) -> bool:
        return bool(self.tag) and str(self.tag).startswith(OUR_TAGS)


@dataclass(frozen=True, slots=True)
class OrderMoney:
    """What one order of the payment's group has to give back."""

    order_id: str
    left: int
    """Its total less what has been refunded, now (whatever refunded it)."""
    mirrored: int = 0
    """What this very provider refund has already been mirrored into it."""


@dataclass(frozen=True, slots=True)
class Allocation:
    shares: dict[str, int]
    """order id -> the part of the refund that is this order's (mirrored already or not)."""
    excess: int
    """What the refund holds beyond every order's total: not mirrored."""

    def still_to_mirror(self, orders: Sequence[OrderMoney]) -> dict[str, int]:
        """order id -> what is still to be recorded for it (share less what already is)."""
        done = {o.order_id: o.mirrored for o in orders}
        return {oid: share - done.get(oid, 0) for oid, share in self.shares.items()
                if share > done.get(oid, 0)}  # fmt: skip


def allocate(orders: Sequence[OrderMoney], amount: int) -> Allocation:
    """``amount`` spread over ``orders`` (already in their fixed order), each taking up to what
    it had left before this refund (``left + mirrored``)."""
    if amount < 0:
        raise ValueError("a refund amount is not negative")
    remaining, shares = amount, {}
    for order in orders:
        room = max(order.left, 0) + order.mirrored
        share = min(room, remaining)
        if share > 0:
            shares[order.order_id] = share
            remaining -= share
    return Allocation(shares, remaining)
