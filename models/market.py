r"""Marketplace rules: the order state machine, cart and price math, reservation expiry, scopes
and browse cursors. Pure: no I/O, no Ray, no aiohttp (tests/unit/test_market_model.py).

Order states (docs/marketplace.md has the diagram)::

    pending_payment -> paid -> accepted -> fulfilled -> completed
          |   \         |         |           |            |
          |    held ----+ (released by review: confirm)    |
          v      |      v         v           v            v
      cancelled <+   refunded  refunded    refunded     refunded (provider, admin, vendor)
                 (rejected by review: release)

Who may take which step is part of the rule: a buyer cancels only before the vendor accepts, a
vendor accepts and fulfils, the system confirms payment, releases and expires reservations; a
completed order is refunded only by the payment provider's own refund (a Stripe dashboard
refund), an admin resolving a dispute, or its vendor refunding a dispute.
A checkout whose risk is over the review threshold (models/risk.py) is ``held``: reserved, its
payment authorised but not captured, until a review releases it (``confirm``) or rejects it
(``release``, stock back); neither buyer nor vendor can move it meanwhile.

Refunds may be partial (``refund_amount``): any amount from 1 to what is still refundable, in
the order's currency; several of them sum to at most the order's total. Only the refund that
brings the refunded amount to the total moves the order to ``refunded``; a partial one leaves
its state as it is and shows in its ``refunded`` amount.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from models.commands import RoutedBy, ShardCommand, ShardRead, command, entity
from models.errors import BadRequest, Conflict
from models.placement import cell_key, user_key

ActorKind = Literal["buyer", "vendor", "system", "provider", "admin"]

PENDING = "pending_payment"
HELD = "held"
PAID = "paid"
ACCEPTED = "accepted"
FULFILLED = "fulfilled"
COMPLETED = "completed"
CANCELLED = "cancelled"
REFUNDED = "refunded"
ORDER_STATES = (PENDING, HELD, PAID, ACCEPTED, FULFILLED, COMPLETED, CANCELLED, REFUNDED)
TERMINAL = frozenset({CANCELLED, REFUNDED})

CART_MAX_QTY = 999
"""The most of one listing in a cart, or on one line of a buy-now."""

_REFUNDERS = frozenset({"system", "provider", "admin", "vendor"})
"""Who may refund an order that was paid and not completed. The vendor's own ``refund`` is a
dispute's (services/disputes.py); its REST API offers ``cancel``, not ``refund``."""

# (from state, action) -> (to state, actors allowed to take it)
_TRANSITIONS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    (PENDING, "confirm"): (PAID, frozenset({"system", "provider"})),
    (PENDING, "cancel"): (CANCELLED, frozenset({"buyer", "vendor"})),
    (PENDING, "release"): (CANCELLED, frozenset({"system", "provider"})),
    (PENDING, "expire"): (CANCELLED, frozenset({"system"})),
    (PENDING, "hold"): (HELD, frozenset({"system"})),
    (HELD, "confirm"): (PAID, frozenset({"system", "provider"})),
    (HELD, "release"): (CANCELLED, frozenset({"system", "provider"})),
    (PAID, "accept"): (ACCEPTED, frozenset({"vendor"})),
    (PAID, "cancel"): (REFUNDED, frozenset({"buyer", "vendor"})),
    (PAID, "refund"): (REFUNDED, _REFUNDERS),
    (ACCEPTED, "fulfil"): (FULFILLED, frozenset({"vendor"})),
    (ACCEPTED, "cancel"): (REFUNDED, frozenset({"vendor"})),
    (ACCEPTED, "refund"): (REFUNDED, _REFUNDERS),
    (FULFILLED, "complete"): (COMPLETED, frozenset({"buyer", "system"})),
    (FULFILLED, "refund"): (REFUNDED, _REFUNDERS),
    (COMPLETED, "refund"): (REFUNDED, frozenset({"provider", "admin", "vendor"})),
}
ACTIONS = frozenset(action for _, action in _TRANSITIONS)
_UNRECORDED = frozenset({"confirm", "release"})
"""System steps whose repeat is answered by the order's state (``OrderAct.recorded``)."""


@dataclass(frozen=True)
class Step:
    """The outcome of one allowed transition and what it implies."""

    source: str
    target: str
    restock: bool
    """Reserved or sold units go back to stock (nothing was handed over yet)."""
    refund_owed: bool
    """Money was captured and must go back through the provider."""


def transition(status: str, action: str, actor: ActorKind) -> Step:
    """The step ``actor`` takes with ``action`` from ``status``, or ``conflict`` if illegal."""
    if action not in ACTIONS:
        raise BadRequest(f"unknown order action {action!r}")
    found = _TRANSITIONS.get((status, action))
    if found is None or actor not in found[1]:
        raise Conflict(f"an order that is {status} cannot be {action} by the {actor}")
    target = found[0]
    restock = target in TERMINAL and status in (PENDING, HELD, PAID, ACCEPTED)
    refund_owed = target == REFUNDED and actor != "provider"
    return Step(status, target, restock, refund_owed)


def plain_step(action: str, actor: ActorKind) -> tuple[frozenset[str], str] | None:
    """``(sources, target)`` when ``action`` by ``actor`` only moves the status: every state
    it is legal from leads to the same ``target``, with no stock to put back and no refund
    owed (the system's ``confirm`` and ``hold``). Such a step can be one conditional write
    from ``sources`` (store/order_writes.py ``step``), decided without reading the order
    first; None for any other step."""
    sources = frozenset(
        status for (status, act), (_, actors) in _TRANSITIONS.items()
        if act == action and actor in actors
    )  # fmt: skip
    steps = [transition(status, action, actor) for status in sources]
    targets = {s.target for s in steps}
    if not steps or len(targets) != 1 or any(s.restock or s.refund_owed for s in steps):
        return None
    return sources, targets.pop()


def refund_amount(
    status: str,
    actor: ActorKind,
    total: int,
    refunded: int,
    currency: str,
    amount: int | None,
    asked_currency: str | None,
) -> int:
    """The amount a refund of ``amount`` (None: all that is left) takes from an order in
    ``status`` that has ``refunded`` of its ``total`` back already; ``conflict`` when ``actor``
    may not refund it now or nothing (or less than asked) is left, ``bad_request`` for a
    wrong currency or an amount below 1."""
    if (status, "refund") not in _TRANSITIONS or actor not in _TRANSITIONS[(status, "refund")][1]:
        raise Conflict(f"an order that is {status} cannot be refunded by the {actor}")
    if asked_currency is not None and asked_currency.lower() != currency:
        raise BadRequest(f"currency: the order is in {currency}, not {asked_currency.lower()}")
    left = total - refunded
    if left <= 0:
        raise Conflict("this order has been refunded in full", reason="over_refund",
                       refundable=0, currency=currency)  # fmt: skip
    if amount is None:
        amount = left
    if amount < 1:
        raise BadRequest("amount: must be at least 1 (minor units)")
    if amount > left:
        raise Conflict(
            f"amount: only {left} {currency} of this order is left to refund",
            reason="over_refund", refundable=left, currency=currency,
        )  # fmt: skip
    return amount


# -- reservations -------------------------------------------------------------------------------
# -- carts and prices ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    listing_id: str
    vendor_id: str
    cell: str
    title: str
    qty: int
    unit_price: int
    currency: str

    @property
    def amount(self) -> int:
        return self.qty * self.unit_price


def split_by_vendor(lines: list[Line]) -> tuple[list[dict[str, Any]], int, str]:
    """One part per vendor (its cell, lines and total), the grand total and the currency.

    A checkout pays once, so every line must be in one currency.
    """
    if not lines:
        raise BadRequest("the cart is empty")
    currencies = {line.currency for line in lines}
    if len(currencies) != 1:
        raise BadRequest(f"a checkout takes one currency; the cart has {sorted(currencies)}")
    parts: dict[str, dict[str, Any]] = {}
    for line in sorted(lines, key=lambda x: (x.vendor_id, x.listing_id)):
        part = parts.setdefault(
            line.vendor_id,
            {"vendor_id": line.vendor_id, "cell": line.cell, "items": [], "total": 0},
        )
        part["items"].append(
            {
                "listing_id": line.listing_id,
                "title": line.title,
                "qty": line.qty,
                "unit_price": line.unit_price,
            }
        )
        part["total"] += line.amount
    total = sum(p["total"] for p in parts.values())
    return list(parts.values()), total, currencies.pop()


def reserve_waves(
    parts: list[dict[str, Any]], scarce: Container[str]
) -> list[list[dict[str, Any]]]:
    """A checkout's parts (``split_by_vendor``) in the order to reserve them: the parts that
    hold a ``scarce`` listing first, together, then the others, together (the second wave only
    if the first was taken, so a sold-out line refuses the checkout before any other shard
    reserves a part). One wave when no part, or every part, holds one."""
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for part in parts:
        holds = any(item["listing_id"] in scarce for item in part["items"])
        (first if holds else rest).append(part)
    return [first, rest] if first and rest else [list(parts)]


def cart_totals(items: list[dict[str, Any]]) -> dict[str, int]:
    """Sum per currency of ``{qty, listing: {price, currency}}`` cart items."""
    totals: dict[str, int] = {}
    for item in items:
        listing = item["listing"]
        totals[listing["currency"]] = totals.get(listing["currency"], 0) + (
            item["qty"] * listing["price"]
        )
    return totals


# -- vendor API scopes --------------------------------------------------------------------------
SCOPES = (
    "listings:read",
    "listings:write",
    "orders:read",
    "orders:write",
    "hooks:read",
    "hooks:write",
)


def parse_scopes(requested: str | None, allowed: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The scopes a token gets: the requested (space-separated) subset of ``allowed``."""
    if requested is None or not requested.strip():
        return tuple(allowed)
    wanted = tuple(dict.fromkeys(requested.split()))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise BadRequest(f"unknown scope {unknown[0]!r}")
    extra = [s for s in wanted if s not in allowed]
    if extra:
        raise BadRequest(f"scope {extra[0]!r} is not granted to this app")
    return wanted


# -- browse cursors -----------------------------------------------------------------------------
SORTS = ("distance", "newest", "price")


@dataclass(frozen=True)
class NearbyCursor:
    """Where a ``listings.nearby`` page ended: the sort, the last sort value and the last id."""

    sort: str
    value: float | str
    last_id: str

    def encode(self) -> str:
        raw = json.dumps([self.sort, self.value, self.last_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, sort: str) -> NearbyCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            kind, value, last_id = json.loads(raw)
        except (ValueError, TypeError):
            raise BadRequest("cursor is not valid") from None
        if kind != sort:
            raise BadRequest("cursor belongs to another sort order")
        if not isinstance(last_id, str) or not isinstance(value, int | float | str):
            raise BadRequest("cursor is not valid")
        if sort == "newest":
            try:
                datetime.fromisoformat(str(value))
            except ValueError:
                raise BadRequest("cursor is not valid") from None
        if sort != "newest" and isinstance(value, str):
            raise BadRequest("cursor is not valid")
        return cls(kind, value, last_id)


@dataclass(frozen=True)
class PageCursor:
    """Where a newest-first page (orders, a vendor's listings) ended."""

    created_at: str
    last_id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at, self.last_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None) -> PageCursor | None:
        if text is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            created_at, last_id = json.loads(raw)
            datetime.fromisoformat(created_at)
        except (ValueError, TypeError):
            raise BadRequest("cursor is not valid") from None
        if not isinstance(last_id, str):
            raise BadRequest("cursor is not valid")
        return cls(created_at, last_id)


# -- shard commands (models/commands.py) --------------------------------------------------------
@command
class VendorCreate(ShardCommand):
    """A vendor profile homed in ``cell`` (where the vendor said it is)."""

    op: ClassVar[str] = "vendor.create"
    cell: str
    fields: dict[str, Any]

    route_by: ClassVar[RoutedBy] = RoutedBy("cell", cell_key)


@command
class ListingCreate(ShardCommand):
    """A listing of ``vendor_id``, homed in the vendor's cell (from its id)."""

    op: ClassVar[str] = "listing.create"
    vendor_id: str
    fields: dict[str, Any]

    route_by: ClassVar[RoutedBy] = RoutedBy("vendor_id", entity("vendor"))


@command
class ListingCommand(ShardCommand):
    """A vendor's change to one of its listings: the owner checks the listing is theirs."""

    vendor_id: str
    listing_id: str

    route_by: ClassVar[RoutedBy] = RoutedBy("listing_id", entity("listing"))


@command
class ListingUpdate(ListingCommand):
    op: ClassVar[str] = "listing.update"
    fields: dict[str, Any]


@command
class ListingDelete(ListingCommand):
    op: ClassVar[str] = "listing.delete"


@command
class ListingStock(ListingCommand):
    """Set the stock (``set_to``) or move it by ``delta``."""

    op: ClassVar[str] = "listing.stock"
    delta: int | None = None
    set_to: int | None = None


@command
class CartCommand(ShardCommand):
    """A change to the caller's own cart, routed to the caller's user key."""

    route_by: ClassVar[RoutedBy] = RoutedBy("user_id", user_key)


@command
class CartAdd(CartCommand):
    op: ClassVar[str] = "cart.add"
    listing_id: str
    qty: int


@command
class CartRemove(CartCommand):
    op: ClassVar[str] = "cart.remove"
    listing_ids: tuple[str, ...]


@command
class OrderReserve(ShardCommand):
    """One vendor's part of a checkout: take the stock of ``items`` and open a pending order.
    ``items`` are the part's lines as split by ``split_by_vendor``."""

    op: ClassVar[str] = "order.reserve"
    vendor_id: str
    group_id: str
    items: tuple[dict[str, Any], ...]
    total: int
    currency: str
    ttl_s: float
    risk: dict[str, Any] | None = None
    """The checkout's risk as the order shows it (models/risk.py ``Risk.public``)."""
    announce: bool = True
    """Put the pending order on the buyer's and the vendor's inboxes now. A checkout sends
    False: its orders are announced at their payment's outcome (``confirm``, ``hold``), or by
    ``OrderAnnounce`` when the payment waits for the buyer; one released before that is never
    announced (docs/protocol.md, "order.updated")."""

    route_by: ClassVar[RoutedBy] = RoutedBy("vendor_id", entity("vendor"))


@command
class StockProbe(ShardRead):
    """Which of ``items`` (``(listing_id, qty)``, one vendor's) its owner knows it cannot
    take now: the first line whose committed stock (as the owner remembers it) is below its
    qty. Writes nothing and takes nothing; a listing the owner does not remember passes (the
    reservation decides it). What a checkout asks before it opens its group when a line is
    scarce (services/checkout.py)."""

    op: ClassVar[str] = "listing.stock_probe"
    vendor_id: str
    items: tuple[tuple[str, int], ...]

    route_by: ClassVar[RoutedBy] = RoutedBy("vendor_id", entity("vendor"))


@command
class OrderCommand(ShardCommand):
    order_id: str

    route_by: ClassVar[RoutedBy] = RoutedBy("order_id", entity("order"))


@command
class OrderAct(OrderCommand):
    """One step of the order state machine by ``actor`` (``buyer``: the caller must be the
    order's buyer; ``vendor``: ``vendor_id`` must be the order's vendor; ``system``)."""

    op: ClassVar[str] = "order.act"
    action: str
    actor: ActorKind
    vendor_id: str | None = None
    reason: str | None = None

    def recorded(self) -> bool:
        """The system's (or the provider's) ``confirm`` and ``release`` keep no idempotency
        record: a repeat finds the order past the step (paid or later; cancelled, which is
        final) and answers it as it is, changing nothing (actors/market_ops.py ``_already``).
        Every other step keeps one: a ``hold`` repeated after a review moved the order on, or a
        buyer's ``cancel``, must answer what it did first."""
        return not (self.actor in ("system", "provider") and self.action in _UNRECORDED)


@command
class OrderAnnounce(OrderCommand):
    """Put a pending order reserved unannounced (``OrderReserve.announce``) on the buyer's and
    the vendor's inboxes, as it is: its payment now waits for the buyer (system only)."""

    op: ClassVar[str] = "order.announce"


@command
class OrderRefund(OrderCommand):
    """A refund of ``amount`` (None: all that is left) of an order by ``actor`` (models
    ``refund_amount``); the last one moves the order to ``refunded``. ``audit``: the admin
    action's entry ``{actor_id, action, reason}``, written by the owner with the refund."""

    op: ClassVar[str] = "order.refund"
    actor: ActorKind
    amount: int | None = None
    currency: str | None = None
    vendor_id: str | None = None
    reason: str | None = None
    audit: dict[str, Any] | None = None
    provider_ref: str | None = None
    """A refund made at the provider (``actor`` ``provider``): the provider's refund id, kept
    on the row (services/provider_refunds.py finds what it has mirrored by it)."""


@command
class VendorSuspend(ShardCommand):
    """A vendor's suspension begins (``suspended``) or ends: its listings leave (or come back
    to) every read op and the neighbourhood hears ``listing.updated``; sent by the system when
    the vendor's user is suspended or the suspension ends."""

    op: ClassVar[str] = "vendor.suspend"
    vendor_id: str
    suspended: bool

    route_by: ClassVar[RoutedBy] = RoutedBy("vendor_id", entity("vendor"))


@command
class RefundRecord(OrderCommand):
    op: ClassVar[str] = "refund.record"


@command
class RefundSettle(ShardCommand):
    """The provider's answer to a pending refund, sent to the owner of its order's ``cell``
    (the owner checks the refund's order is homed there)."""

    op: ClassVar[str] = "refund.settle"
    refund_id: str
    cell: str
    outcome: str
    provider_ref: str | None = None
    reason: str | None = None

    route_by: ClassVar[RoutedBy] = RoutedBy("cell", cell_key)
