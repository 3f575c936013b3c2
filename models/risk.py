"""Fraud scoring: the risk of one checkout from what is known about it. Pure: no I/O.

The checkout reads ``RiskFacts`` in the statement that reads the cart (services/checkout.py),
adds what the socket knows (``RiskContext``: address, device, located points) and asks
``score`` for a ``Risk``: a score from 0 to 100 and the signals that made it, each with its
points and a sentence saying why. Every rule is one small function of ``RULES``; the table in
docs/security.md lists them with their thresholds (tests/unit/test_risk_rules.py).

A score at or above the review threshold (``risk_hold_score``) holds the checkout: its payment
is authorised, not captured, and its orders wait as ``held`` in the admin review queue.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOUR_S = 3600.0
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Point:
    """A located point and when it was seen (epoch seconds)."""

    lat: float
    lng: float
    at: float


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the caller's connection says: where it comes from and where the buyer was."""

    address: str | None = None
    """The client address (None or loopback: no address signals, see ``address_key``)."""
    device: str | None = None
    """Digest of the app's ``X-Device-Id`` (``device_key``); None: no device signals."""
    here: Point | None = None
    """The buyer's current located point (the session's last ``locate``)."""
    before: Point | None = None
    """The session's located point before that one."""


@dataclass(frozen=True, slots=True)
class RiskFacts:
    """What Postgres knows, counted over the last hour (``*_1h``) or 30 days (``*_30d``),
    always *before* this checkout."""

    account_age_s: float = 0.0
    account_checkouts_1h: int = 0
    card_checkouts_1h: int = 0
    card_accounts_30d: int = 0
    """Other accounts that paid with this instrument."""
    address_checkouts_1h: int = 0
    address_accounts_1h: int = 0
    """Other accounts that checked out from this address."""
    device_checkouts_1h: int = 0
    device_accounts_30d: int = 0
    """Other accounts that checked out from this device."""
    declines_1h: int = 0
    """Declined payments of this account or this instrument."""
    paid_checkouts: int = 0
    paid_max: int = 0
    """The largest completed checkout of this account (minor units, any currency)."""
    last: Point | None = None
    """Where the buyer was at their previous checkout (None: not located then)."""

    @classmethod
    def from_row(cls, row: Any) -> RiskFacts:
        """From the facts columns of the checkout's cart statement (``r_*``)."""
        last = None
        if row["r_last_lat"] is not None and row["r_last_lng"] is not None:
            lat, lng, at = row["r_last_lat"], row["r_last_lng"], row["r_last_at"]
            last = Point(float(lat), float(lng), float(at))
        return cls(
            account_age_s=float(row["r_age_s"] or 0.0),
            account_checkouts_1h=int(row["r_account_1h"]),
            card_checkouts_1h=int(row["r_card_1h"]),
            card_accounts_30d=int(row["r_card_accounts"]),
            address_checkouts_1h=int(row["r_addr_1h"]),
            address_accounts_1h=int(row["r_addr_accounts"]),
            device_checkouts_1h=int(row["r_device_1h"]),
            device_accounts_30d=int(row["r_device_accounts"]),
            declines_1h=int(row["r_declines"]),
            paid_checkouts=int(row["r_paid"]),
            paid_max=int(row["r_paid_max"] or 0),
            last=last,
        )


@dataclass(frozen=True, slots=True)
class Order:
    """What is bought: the amount and the vendors' points (one per vendor of the cart)."""

    amount: int
    vendors: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Signal:
    code: str
    points: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "points": self.points, "detail": self.detail}


@dataclass(frozen=True)
class Risk:
    """A checkout's score (0..100: the signals' points, capped) and its signals."""

    signals: tuple[Signal, ...] = field(default_factory=tuple)

    @property
    def score(self) -> int:
        return min(100, sum(s.points for s in self.signals))

    def holds(self, threshold: int) -> bool:
        return self.score >= threshold

    def public(self) -> dict[str, Any]:
        """What an order shows its buyer and vendor: the score and the signals' codes."""
        return {"score": self.score, "reasons": [s.code for s in self.signals]}

    def stored(self) -> dict[str, Any]:
        """What the group keeps (and the review queue shows): the signals in full too."""
        return {**self.public(), "signals": [s.as_dict() for s in self.signals]}


def public_of(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """An order's ``risk`` from a group's stored risk (None for checkouts before scoring)."""
    if not stored:
        return None
    return {"score": int(stored["score"]), "reasons": list(stored["reasons"])}


def holds(stored: dict[str, Any] | None, threshold: int) -> bool:
    return bool(stored) and int(stored["score"]) >= threshold  # type: ignore[index]


# -- rules --------------------------------------------------------------------------------------
Rule = Callable[[RiskFacts, RiskContext, Order], "Signal | None"]


def _tiered(value: float, tiers: tuple[tuple[float, int], ...]) -> int:
    """The points of the highest tier ``value`` reaches (tiers ascending), else 0."""
    points = 0
    for bound, tier_points in tiers:
        if value >= bound:
            points = tier_points
    return points


def new_account(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    points = 20 if f.account_age_s < HOUR_S else 10 if f.account_age_s < DAY_S else 0
    if not points:
        return None
    hours = f.account_age_s / HOUR_S
    return Signal("new_account", points, f"the account is {hours:.1f} h old")


def account_velocity(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    n = f.account_checkouts_1h
    points = _tiered(n, ((3, 15), (10, 30)))
    return Signal("account_velocity", points, f"{n} checkouts of this account in the last hour") \
        if points else None  # fmt: skip


def card_velocity(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    n = f.card_checkouts_1h
    points = _tiered(n, ((3, 15), (10, 30)))
    return Signal("card_velocity", points, f"{n} checkouts with this card in the last hour") \
        if points else None  # fmt: skip


def card_shared(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    n = f.card_accounts_30d
    points = _tiered(n, ((1, 20), (3, 40)))
    return Signal("card_shared", points, f"this card paid for {n} other accounts in 30 days") \
        if points else None  # fmt: skip


def address_velocity(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    if c.address is None:
        return None
    n = f.address_checkouts_1h
    points = _tiered(n, ((10, 15), (30, 30)))
    return Signal("address_velocity", points, f"{n} checkouts from this address in the last"
                  " hour") if points else None  # fmt: skip


def address_shared(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    if c.address is None:
        return None
    n = f.address_accounts_1h
    points = _tiered(n, ((3, 15), (10, 30)))
    return Signal("address_shared", points, f"{n} other accounts checked out from this"
                  " address in the last hour") if points else None  # fmt: skip


def device_velocity(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    if c.device is None:
        return None
    n = f.device_checkouts_1h
    points = _tiered(n, ((5, 15), (15, 30)))
    return Signal("device_velocity", points, f"{n} checkouts from this device in the last hour") \
        if points else None  # fmt: skip


def device_shared(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    if c.device is None:
        return None
    n = f.device_accounts_30d
    points = _tiered(n, ((2, 20), (5, 40)))
    return Signal("device_shared", points, f"{n} other accounts checked out from this device"
                  " in 30 days") if points else None  # fmt: skip


def declines(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    n = f.declines_1h
    points = _tiered(n, ((2, 20), (5, 45)))
    return Signal("declines", points, f"{n} declined payments of this account or card in the"
                  " last hour (card testing?)") if points else None  # fmt: skip


FIRST_ORDER_LARGE = 50_000
"""A first checkout this large (minor units: 500.00) is unusual."""
HISTORY_FACTOR = 5
"""A checkout this many times the account's largest paid one is unusual..."""
HISTORY_FLOOR = 10_000
"""...once it is at least this large (small baskets vary a lot)."""


def amount_vs_history(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    if f.paid_checkouts == 0:
        if o.amount >= FIRST_ORDER_LARGE:
            return Signal("large_first_order", 20, f"a first checkout of {o.amount}")
        return None
    if o.amount >= HISTORY_FLOOR and o.amount > HISTORY_FACTOR * f.paid_max:
        return Signal(
            "amount_vs_history",
            25,
            f"{o.amount} is over {HISTORY_FACTOR}x the largest paid checkout ({f.paid_max})",
        )
    return None


def far_from_vendor(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    """Hyperlocal: a buyer shops near where they are. Far from every vendor of the cart?"""
    if c.here is None or not o.vendors:
        return None
    km = min(distance_km(c.here.lat, c.here.lng, lat, lng) for lat, lng in o.vendors)
    points = _tiered(km, ((50, 15), (500, 30)))
    return Signal("far_from_vendor", points, f"the buyer is {km:.0f} km from the vendor") \
        if points else None  # fmt: skip


TRAVEL_KMH = 1000.0
"""Faster than an airliner between two located points..."""
TRAVEL_MIN_KM = 100.0
"""...over at least this distance (located points jitter)."""


def impossible_travel(f: RiskFacts, c: RiskContext, o: Order) -> Signal | None:
    """Consecutive located points (the session's previous one, the previous checkout's) that
    no traveller could have covered in the time between them."""
    if c.here is None:
        return None
    for before in (c.before, f.last):
        if before is None:
            continue
        km = distance_km(before.lat, before.lng, c.here.lat, c.here.lng)
        hours = max(c.here.at - before.at, 1.0) / HOUR_S
        if km >= TRAVEL_MIN_KM and km / hours > TRAVEL_KMH:
            return Signal(
                "impossible_travel", 40, f"{km:.0f} km in {hours * 60:.0f} min between located"
                " points"
            )  # fmt: skip
    return None


RULES: tuple[Rule, ...] = (
    new_account,
    account_velocity,
    card_velocity,
    card_shared,
    address_velocity,
    address_shared,
    device_velocity,
    device_shared,
    declines,
    amount_vs_history,
    far_from_vendor,
    impossible_travel,
)


def score(facts: RiskFacts, ctx: RiskContext, order: Order) -> Risk:
    """The risk of a checkout: every rule's signal, in ``RULES`` order."""
    found = (rule(facts, ctx, order) for rule in RULES)
    return Risk(tuple(s for s in found if s is not None))


# -- keys the facts are counted by --------------------------------------------------------------
def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def address_key(address: str | None) -> str | None:
    """The address the address signals count by; None for none, an unparsable one or
    loopback (every client of a development box or of a local proxy without
    ``HL_TRUSTED_PROXY_HOPS`` shares it: counting it would lump them together). IPv6 counts
    by its /64 (one subscriber's prefix)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.is_loopback or ip.is_unspecified:
        return None
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def device_key(header: str | None) -> str | None:
    """A digest of the app's ``X-Device-Id`` (its install id), or None."""
    if not header or not header.strip() or len(header) > 256:
        return None
    return hashlib.blake2b(header.strip().encode(), digest_size=12).hexdigest()


def instrument_fp(provider: str, instrument: str | None) -> str | None:
    """A digest of the payment instrument (a card number, a PaymentMethod id): the card
    signals count by it; the instrument itself is never stored."""
    if not instrument:
        return None
    text = f"card:{provider}:{instrument}".encode()
    return hashlib.blake2b(text, digest_size=12).hexdigest()


def request_fp(details: dict[str, Any]) -> str:
    """A digest of the whole payment details: a retry of a checkout key must send the same."""
    text = json.dumps(details, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(text, digest_size=12).hexdigest()
