"""The ledger's rules: the account chart, commission, and how each kind of transaction posts.
Pure, no I/O (docs/payments.md, "Ledger").

Amounts are integers in minor units of one currency; a leg's amount is + for a debit and - for
a credit, and a transaction's legs sum to zero. Vendor accounts are kept per order (an entry
names the order whose money it is), so a hold, a refund or a payout moves exactly that order's
money. Captures, refunds and holds are posted by Postgres triggers (store/migrations/
0016_ledger.sql) that follow the rules written here (``capture_legs``, ``refund_commission``,
``refund_legs``); releases and payouts are built here and posted by the services.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.errors import BadRequest

# -- the account chart ----------------------------------------------------------------------------
PROVIDER_CLEARING = "provider_clearing"
"""Asset: buyers' money held for us at a provider (owner: the provider)."""
REFUNDS_PAYABLE = "refunds_payable"
"""Liability: refunds recorded, not yet paid back at the provider (owner: the provider)."""
PLATFORM_COMMISSION = "platform_commission"
"""Revenue: the platform's commission."""
VENDOR_PENDING = "vendor_pending"
"""Liability: owed to a vendor, not yet payable (before fulfilment + the hold period)."""
VENDOR_AVAILABLE = "vendor_available"
"""Liability: owed to a vendor and payable by the next payout batch."""
VENDOR_HELD = "vendor_held"
"""Liability: owed to a vendor, held by an open dispute or an admin's hold of the order."""
PAYOUTS_IN_TRANSIT = "payouts_in_transit"
"""Liability: a payout made, not yet confirmed paid (owner: the vendor)."""
PAYOUTS_SETTLED = "payouts_settled"
"""Asset (credit side): paid out by the operator from its own bank (manual payouts)."""

ACCOUNTS = (
    PROVIDER_CLEARING,
    REFUNDS_PAYABLE,
    PLATFORM_COMMISSION,
    VENDOR_PENDING,
    VENDOR_AVAILABLE,
    VENDOR_HELD,
    PAYOUTS_IN_TRANSIT,
    PAYOUTS_SETTLED,
)
KINDS = (
    "capture",
    "refund",
    "refund_paid",
    "release",
    "hold",
    "unhold",
    "payout",
    "payout_paid",
    "payout_failed",
)

BPS = 10_000
"""Commission rates are in basis points: 1000 is 10 %."""


@dataclass(frozen=True, slots=True)
class Leg:
    """One entry of a transaction: + debit, - credit, in minor units."""

    account: str
    amount: int
    owner: str = ""
    order_id: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"account": self.account, "owner": self.owner, "amount": self.amount}
        if self.order_id is not None:
            out["order_id"] = self.order_id
        return out


def balanced(legs: Iterable[Leg]) -> list[Leg]:
    """The legs that move money (zero ones dropped); ``ValueError`` unless they sum to zero
    (a bug of a posting rule: never reaches the database)."""
    kept = [leg for leg in legs if leg.amount != 0]
    if sum(leg.amount for leg in kept) != 0:
        raise ValueError(f"unbalanced legs: {kept}")
    unknown = {leg.account for leg in kept} - set(ACCOUNTS)
    if unknown:
        raise ValueError(f"no such account: {sorted(unknown)}")
    return kept


# -- commission -----------------------------------------------------------------------------------
def rate_bps(category: str, by_category: Mapping[str, int], default_bps: int) -> int:
    return by_category.get(category.lower(), default_bps)


def commission(amount: int, bps: int) -> int:
    """Commission of ``amount`` at ``bps``, rounded half up to a minor unit, never more than it."""
    if amount <= 0 or bps <= 0:
        return 0
    return min(amount, (amount * bps + BPS // 2) // BPS)


def with_commission(
    parts: Sequence[dict[str, Any]],
    categories: Mapping[str, str],
    by_category: Mapping[str, int],
    default_bps: int,
) -> list[dict[str, Any]]:
    """Checkout parts (models/market.py ``split_by_vendor``) with each part's ``commission``:
    the sum over its lines of each line's amount at its listing's category rate (a listing
    missing from ``categories`` takes the default)."""
    out = []
    for part in parts:
        total = 0
        for item in part["items"]:
            bps = rate_bps(categories.get(item["listing_id"], ""), by_category, default_bps)
            total += commission(int(item["qty"]) * int(item["unit_price"]), bps)
        out.append({**part, "commission": min(total, int(part["total"]))})
    return out


def capture_legs(provider: str, vendor_id: str, order_id: str, total: int, fee: int) -> list[Leg]:
    """A captured order (the trigger ``hl_ledger_capture``): the provider holds the buyer's
    money, the vendor is owed it less the commission."""
    fee = max(0, min(fee, total))
    return balanced(
        [
            Leg(PROVIDER_CLEARING, total, provider),
            Leg(VENDOR_PENDING, -(total - fee), vendor_id, order_id),
            Leg(PLATFORM_COMMISSION, -fee),
        ]
    )


def refund_commission(fee: int, total: int, refunded_before: int, amount: int) -> int:
    """The commission a refund of ``amount`` gives back: the fee in proportion to what has been
    refunded so far, floored, less what earlier refunds gave back, so refunds of an order in
    any pieces give back exactly its whole fee once all of it is refunded."""
    if total <= 0 or amount <= 0:
        return 0
    after = min(refunded_before + amount, total)
    before = min(refunded_before, total)
    return min(amount, fee * after // total - fee * before // total)


def refund_legs(
    provider: str,
    vendor_id: str,
    order_id: str,
    amount: int,
    fee_back: int,
    owed: Mapping[str, int],
) -> list[Leg]:
    """A refund recorded (the trigger ``hl_ledger_refund``): owed to the buyer, taken from
    the commission (``fee_back``) and from the vendor's share of the order, held first, then
    pending, then available (which may go below zero: recovered from the next payout)."""
    legs = [Leg(PLATFORM_COMMISSION, fee_back), Leg(REFUNDS_PAYABLE, -amount, provider)]
    left = amount - fee_back
    for account in (VENDOR_HELD, VENDOR_PENDING):
        take = min(left, max(owed.get(account, 0), 0))
        if take > 0:
            legs.append(Leg(account, take, vendor_id, order_id))
            left -= take
    if left > 0:
        legs.append(Leg(VENDOR_AVAILABLE, left, vendor_id, order_id))
    return balanced(legs)


def release_legs(vendor_id: str, order_id: str, pending: int) -> list[Leg]:
    """An order's pending balance becomes available (fulfilled + the hold period passed)."""
    pending = max(pending, 0)
    return balanced(
        [
            Leg(VENDOR_PENDING, pending, vendor_id, order_id),
            Leg(VENDOR_AVAILABLE, -pending, vendor_id, order_id),
        ]
    )


def payout_amount(available: Mapping[str, int], blocked: Iterable[str]) -> dict[str, int]:
    """What a payout takes of each order's available balance: every order not ``blocked``,
    those below zero too (a refund after an earlier payout nets against this one)."""
    skip = set(blocked)
    return {order: amount for order, amount in available.items() if order not in skip and amount}


def payout_legs(vendor_id: str, taken: Mapping[str, int]) -> list[Leg]:
    """A payout made: the orders' available balances go into transit, as one sum."""
    total = sum(taken.values())
    legs = [Leg(VENDOR_AVAILABLE, amount, vendor_id, order) for order, amount in taken.items()]
    return balanced([*legs, Leg(PAYOUTS_IN_TRANSIT, -total, vendor_id)])


def payout_paid_legs(vendor_id: str, amount: int, method: str) -> list[Leg]:
    """A payout confirmed paid: out of transit, from Stripe's balance (a transfer to the
    vendor's connected account) or from the operator's bank (a manual payout)."""
    if method == "stripe_transfer":
        source = Leg(PROVIDER_CLEARING, -amount, "stripe")
    else:
        source = Leg(PAYOUTS_SETTLED, -amount)
    return balanced([Leg(PAYOUTS_IN_TRANSIT, amount, vendor_id), source])


def payout_failed_legs(vendor_id: str, taken: Mapping[str, int]) -> list[Leg]:
    """A payout that failed for good: back from transit to the orders it took from."""
    return [Leg(leg.account, -leg.amount, leg.owner, leg.order_id)
            for leg in payout_legs(vendor_id, taken)]  # fmt: skip


# -- revenue reports ------------------------------------------------------------------------------
GROUPS = ("day", "cell", "vendor")
MAX_REPORT_DAYS = 366


@dataclass(frozen=True, slots=True)
class ReportRange:
    """A revenue report's period, ``first`` to ``last`` inclusive (UTC days), and grouping."""

    first: dt.date
    last: dt.date
    group: str

    @classmethod
    def parse(
        cls, first: str | None, last: str | None, group: str | None, today: dt.date
    ) -> ReportRange:
        """From the query's ``from``, ``to`` (YYYY-MM-DD; default: the last 30 days to today)
        and ``group`` (day, cell or vendor; default day); ``bad_request`` otherwise."""
        group = group or "day"
        if group not in GROUPS:
            raise BadRequest("group: day, cell or vendor")
        end = _day("to", last) if last else today
        start = _day("from", first) if first else end - dt.timedelta(days=29)
        if start > end:
            raise BadRequest("from: after to")
        if (end - start).days + 1 > MAX_REPORT_DAYS:
            raise BadRequest(f"from/to: at most {MAX_REPORT_DAYS} days")
        return cls(start, end, group)


def _day(name: str, value: str) -> dt.date:
    try:
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: a date YYYY-MM-DD") from None


FIGURES = ("gmv", "orders", "refunds", "commission")


def totals(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The report's totals: one per currency, each figure summed over the rows."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        acc = out.setdefault(row["currency"], {"currency": row["currency"],
                                               **dict.fromkeys(FIGURES, 0)})  # fmt: skip
        for name in FIGURES:
            acc[name] += int(row[name])
    return [out[c] for c in sorted(out)]
