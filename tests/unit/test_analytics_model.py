"""models/analytics.py: ranges, access, and the answer's shape, without Postgres."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from models import analytics as an
from models.errors import BadRequest, Forbidden

TODAY = date(2026, 12, 1)  # a Tuesday


def test_a_range_defaults_to_the_last_30_days_and_checks_its_bounds() -> None:
    rng = an.parse_range(None, None, None, TODAY, 366)
    assert (rng.first, rng.last, rng.granularity, rng.days) == (date(2026, 11, 2), TODAY, "day", 30)
    assert an.parse_range("2026-11-30", None, "week", TODAY, 366).granularity == "week"
    assert an.parse_range("2026-01-01", "2026-12-31", None, TODAY, 365).days == 365
    for args in (
        ("2026-12-02", "2026-12-01", None),  # from after to
        ("2026-02-30", None, None),  # no such day
        ("20261201", None, None),  # not YYYY-MM-DD
        ("2026-12-1", None, None),
        (None, None, "month"),
        ("2025-01-01", "2026-12-31", None),  # longer than max_days
    ):
        with pytest.raises(BadRequest):
            an.parse_range(*args, today=TODAY, max_days=366)


def test_periods_are_days_or_iso_weeks_starting_monday() -> None:
    days = an.Range(date(2026, 11, 29), TODAY).periods()
    assert days == [date(2026, 11, 29), date(2026, 11, 30), TODAY]
    weeks = an.Range(date(2026, 11, 29), date(2026, 12, 8), "week").periods()
    assert weeks == [date(2026, 11, 23), date(2026, 11, 30), date(2026, 12, 7)]
    assert an.period_of(TODAY, "week") == date(2026, 11, 30)


def test_series_fill_every_period_sum_by_week_and_keep_currencies_apart() -> None:
    rows = [
        {"period": date(2026, 11, 30), "currency": "usd", "orders": 2, "units": 3, "revenue": 900},
        {"period": TODAY, "currency": "usd", "orders": 1, "units": 1, "revenue": 301},
        {"period": TODAY, "currency": "eur", "orders": 1, "units": 2, "revenue": 500},
    ]
    daily = an.series(an.Range(date(2026, 11, 29), TODAY), rows)
    assert len(daily) == 6  # 3 days x 2 currencies, zeros where nothing sold
    assert daily[0] == {"period": "2026-11-29", "currency": "eur", "orders": 0, "revenue": 0,
                        "units": 0, "aov": 0}  # fmt: skip
    weekly = an.series(an.Range(date(2026, 11, 30), TODAY, "week"), rows)
    usd = next(p for p in weekly if p["currency"] == "usd")
    assert usd == {"period": "2026-11-30", "currency": "usd", "orders": 3, "revenue": 1201,
                   "units": 4, "aov": 400}  # fmt: skip
    empty = an.series(an.Range(TODAY, TODAY), [])
    assert empty == [{"period": "2026-12-01", "currency": None, "orders": 0, "revenue": 0,
                      "units": 0, "aov": 0}]  # fmt: skip


def test_aov_heatmap_and_repeat_rate() -> None:
    assert (an.aov(0, 0), an.aov(1201, 3), an.aov(5, 2), an.aov(7, 2)) == (0, 400, 3, 4)
    grid = an.heatmap([{"isodow": 1, "hour": 0, "orders": 2}, {"isodow": 7, "hour": 23,
                                                                "orders": 5}])  # fmt: skip
    assert grid[0][0] == 2 and grid[6][23] == 5 and sum(map(sum, grid)) == 7
    assert (an.repeat_rate(0, 0), an.repeat_rate(3, 1)) == (0.0, 0.3333)


def test_a_vendor_reads_its_own_an_admin_anyones() -> None:
    vendor = an.Viewer("v1", frozenset({"user", "vendor"}))
    assert an.target_vendor(vendor, None) == an.target_vendor(vendor, "v1") == "v1"
    with pytest.raises(Forbidden):
        an.target_vendor(vendor, "v2")
    with pytest.raises(Forbidden):
        an.target_vendor(an.Viewer(None, frozenset({"user"})), None)
    with pytest.raises(Forbidden):  # moderators and ops are not admins
        an.target_vendor(an.Viewer(None, frozenset({"moderator", "ops"})), "v2")
    admin = an.Viewer(None, frozenset({"user", "admin"}))
    assert an.target_vendor(admin, "v2") == "v2"
    with pytest.raises(Forbidden):  # an admin who sells nothing has no "own"
        an.target_vendor(admin, None)


# -- month_split: what the heatmap and top listings read from the monthly rollups -------------
@pytest.mark.parametrize(
    ("first", "last", "months", "edges"),
    [
        # a whole month, nothing by day
        (date(2026, 3, 1), date(2026, 3, 31), (date(2026, 3, 1), date(2026, 4, 1)), ()),
        # inside one month: all of it by day
        (date(2026, 3, 5), date(2026, 3, 20), None, ((date(2026, 3, 5), date(2026, 3, 21)),)),
        # a year from mid-month to mid-month, across a new year: 11 months and two edges
        (date(2025, 12, 2), date(2026, 12, 1), (date(2026, 1, 1), date(2026, 12, 1)),
         ((date(2025, 12, 2), date(2026, 1, 1)), (date(2026, 12, 1), date(2026, 12, 2)))),
        # from a month's first day to a day inside the next
        (date(2026, 2, 1), date(2026, 3, 10), (date(2026, 2, 1), date(2026, 3, 1)),
         ((date(2026, 3, 1), date(2026, 3, 11)),)),
        # a single day at a month's end; two partial months with no whole one between
        (date(2026, 1, 31), date(2026, 1, 31), None, ((date(2026, 1, 31), date(2026, 2, 1)),)),
        (date(2026, 1, 20), date(2026, 2, 10), None, ((date(2026, 1, 20), date(2026, 2, 11)),)),
    ],
)  # fmt: skip
def test_month_split(
    first: date, last: date, months: tuple[date, date] | None, edges: tuple[Any, ...]
) -> None:
    split = an.month_split(first, last)
    assert (split.months, split.edges) == (months, edges)
    # every day of the range is read exactly once, from a month or an edge
    days = {first + timedelta(days=i) for i in range((last - first).days + 1)}
    covered: list[date] = []
    for a, b in (*split.edges, split.months) if split.months else split.edges:
        covered += [a + timedelta(days=i) for i in range((b - a).days)]
    assert sorted(covered) == sorted(days)
