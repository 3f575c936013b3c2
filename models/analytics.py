"""Vendor analytics, the pure part: what a query asks, who may ask it, and the answer's shape.

The figures come from the rollup tables (store/analytics_store.py); this module validates a
query (a UTC date range, day or ISO-week periods), decides whose figures a viewer may read
(a vendor its own, an admin any vendor's), and turns rollup rows into the answer of
``GET /api/v1/vendor/analytics`` (docs/analytics.md): every period of the range present, zero
when nothing sold; an hour x weekday matrix, Monday first, in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from models.errors import BadRequest, Forbidden
from models.market import ACCEPTED, COMPLETED, FULFILLED, PAID
from models.rbac import allowed

COUNTED = (PAID, ACCEPTED, FULFILLED, COMPLETED)
"""Order states that count as a sale: paid and neither cancelled nor refunded (a partial refund
lowers the order's revenue)."""

PERMISSION = "analytics.read"
"""What reading another vendor's analytics needs (models/rbac.py)."""

TIMEZONE = "UTC"
"""Every day, week and hour of the figures is UTC (docs/analytics.md says why)."""

Granularity = Literal["day", "week"]
ExportFormat = Literal["csv", "parquet"]


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads analytics: the vendor they are (None: not a vendor) and their roles."""

    vendor_id: str | None
    roles: frozenset[str] = frozenset()


def target_vendor(viewer: Viewer, vendor_id: str | None) -> str:
    """The vendor whose figures ``viewer`` reads: their own, or with ``analytics.read`` (an
    admin) the one named; anything else is ``forbidden``."""
    if vendor_id is None or vendor_id == viewer.vendor_id:
        if viewer.vendor_id is None:
            raise Forbidden("you are not a vendor: name a vendor_id (admins) or become one")
        return viewer.vendor_id
    if not allowed(viewer.roles, PERMISSION):
        raise Forbidden("another vendor's analytics need the role admin", permission=PERMISSION)
    return vendor_id


@dataclass(frozen=True, slots=True)
class Range:
    """A query's days, both ends included (UTC)."""

    first: date
    last: date
    granularity: Granularity = "day"

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def periods(self) -> list[date]:
        """The start of every period of the range: each day, or each ISO week's Monday (the
        first and last week may hold fewer days of the range)."""
        if self.granularity == "day":
            return [self.first + timedelta(days=i) for i in range(self.days)]
        start = period_of(self.first, "week")
        return [start + timedelta(weeks=i) for i in range((self.last - start).days // 7 + 1)]


def period_of(day: date, granularity: Granularity) -> date:
    return day if granularity == "day" else day - timedelta(days=day.weekday())


def parse_day(value: str, name: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: a date YYYY-MM-DD") from None


def parse_range(
    first: str | None,
    last: str | None,
    granularity: str | None,
    today: date,
    max_days: int,
    default_days: int = 30,
) -> Range:
    """The range a query names: ``from`` and ``to`` (YYYY-MM-DD, both included; default the
    ``default_days`` to ``today``), ``granularity`` day (default) or week; at most
    ``max_days`` days."""
    if granularity not in (None, "day", "week"):
        raise BadRequest("granularity: day or week")
    end = parse_day(last, "to") if last is not None else today
    start = parse_day(first, "from") if first is not None else end - timedelta(default_days - 1)
    if start > end:
        raise BadRequest("from: after to")
    span = (end - start).days + 1
    if span > max_days:
        raise BadRequest(f"from..to: at most {max_days} days", days=span)
    return Range(start, end, "week" if granularity == "week" else "day")


def aov(revenue: int, orders: int) -> int:
    """Average order value in minor units (rounded half up); 0 without orders."""
    return (2 * revenue + orders) // (2 * orders) if orders else 0


def series(rng: Range, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (period, currency): every period of the range for each currency that sold
    in it (zeros where nothing did); with no sales at all, one zero entry per period and
    currency null. ``rows``: ``period`` (date), ``currency``, ``orders``, ``units``, ``revenue``."""
    sums: dict[tuple[date, str], list[int]] = {}
    for r in rows:
        key = (period_of(r["period"], rng.granularity), r["currency"])
        acc = sums.setdefault(key, [0, 0, 0])
        acc[0] += int(r["orders"])
        acc[1] += int(r["units"])
        acc[2] += int(r["revenue"])
    currencies: Sequence[str | None] = sorted({c for _, c in sums}) or [None]
    out = []
    for start in rng.periods():
        for cur in currencies:
            orders, units, revenue = sums.get((start, cur), (0, 0, 0)) if cur else (0, 0, 0)
            out.append({
                "period": start.isoformat(), "currency": cur, "orders": orders,
                "revenue": revenue, "units": units, "aov": aov(revenue, orders),
            })  # fmt: skip
    return out


def heatmap(rows: Iterable[Mapping[str, Any]]) -> list[list[int]]:
    """Orders by [weekday][hour], Monday = 0, UTC; ``rows``: ``isodow`` (1-7), ``hour``,
    ``orders``."""
    grid = [[0] * 24 for _ in range(7)]
    for r in rows:
        grid[int(r["isodow"]) - 1][int(r["hour"])] += int(r["orders"])
    return grid


def repeat_rate(customers: int, repeat: int) -> float:
    """The share of the range's customers with two or more orders in it (0.0 without any)."""
    return round(repeat / customers, 4) if customers else 0.0


@dataclass(frozen=True, slots=True)
class MonthSplit:
    """A range as the rollups read it: its whole months from a monthly table, the days before
    and after them (``edges``) from a daily or hourly one; so a year reads 12 monthly slices
    and at most two partial months, never 365 days. Intervals are [start, end), in days."""

    months: tuple[date, date] | None
    """[first month's first day, the day after the last whole month), or None (no whole month)."""
    edges: tuple[tuple[date, date], ...]
    """The days outside ``months``: at most two [start, end) intervals, none empty."""


def month_split(first: date, last: date) -> MonthSplit:
    """``first`` .. ``last`` (inclusive) split into whole months and partial-month edges."""
    end = last + timedelta(days=1)
    start_month = first if first.day == 1 else _next_month(first)
    end_month = end.replace(day=1)
    if start_month >= end_month:
        return MonthSplit(None, ((first, end),))
    edges = tuple((a, b) for a, b in ((first, start_month), (end_month, end)) if a < b)
    return MonthSplit((start_month, end_month), edges)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)
