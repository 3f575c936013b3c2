"""The ledger's posting rules (models/ledger.py): balanced by construction, commission per
category, refunds in pieces giving back exactly the fee, payouts netting, report ranges."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from models import ledger as lg
from models.errors import BadRequest


def _sum(legs: list[lg.Leg]) -> int:
    return sum(leg.amount for leg in legs)


def test_commission_rounds_half_up_and_never_exceeds_the_amount() -> None:
    assert lg.commission(1000, 1000) == 100
    assert lg.commission(5, 1000) == 1  # 0.5 rounds up
    assert lg.commission(4, 1000) == 0
    assert lg.commission(100, 10_000) == 100
    assert lg.commission(0, 500) == 0 and lg.commission(100, 0) == 0


def test_with_commission_uses_each_lines_category_rate() -> None:
    parts = [
        {"vendor_id": "v1", "total": 1500, "items": [
            {"listing_id": "a", "qty": 2, "unit_price": 500},
            {"listing_id": "b", "qty": 1, "unit_price": 500}]},
        {"vendor_id": "v2", "total": 200, "items": [
            {"listing_id": "c", "qty": 1, "unit_price": 200}]},
    ]  # fmt: skip
    out = lg.with_commission(parts, {"a": "bread", "b": "crafts"}, {"bread": 500}, 1000)
    # a: 1000 at 5 % = 50; b: 500 at the default 10 % = 50; c: unknown listing, default
    assert [p["commission"] for p in out] == [100, 20]
    assert "commission" not in parts[0]  # the input is left as it was


def test_capture_legs_balance_and_owe_the_vendor_the_total_less_the_fee() -> None:
    legs = lg.capture_legs("stripe", "v1", "o1", 1000, 120)
    assert _sum(legs) == 0
    by = {leg.account: leg.amount for leg in legs}
    assert by == {"provider_clearing": 1000, "vendor_pending": -880, "platform_commission": -120}
    # a fee above the total is capped; a zero fee drops its leg
    assert {leg.account for leg in lg.capture_legs("s", "v", "o", 500, 0)} == {
        "provider_clearing", "vendor_pending"}  # fmt: skip
    assert _sum(lg.capture_legs("s", "v", "o", 50, 999)) == 0


@pytest.mark.parametrize("fee,total", [(100, 1000), (7, 1000), (333, 999), (1, 3)])
def test_refunds_in_any_pieces_give_back_exactly_the_whole_fee(fee: int, total: int) -> None:
    for cuts in itertools.combinations(range(1, total), 2):
        pieces = [cuts[0], cuts[1] - cuts[0], total - cuts[1]]
        before, back = 0, 0
        for piece in pieces:
            back += lg.refund_commission(fee, total, before, piece)
            before += piece
        assert back == fee, pieces
        if total > 50:
            break  # the small totals are checked for every split


def test_refund_legs_take_held_then_pending_then_available() -> None:
    legs = lg.refund_legs("stripe", "v", "o", 600, 60, {"vendor_held": 100, "vendor_pending": 200})
    assert _sum(legs) == 0
    by = {leg.account: leg.amount for leg in legs}
    assert by == {"platform_commission": 60, "refunds_payable": -600, "vendor_held": 100,
                  "vendor_pending": 200, "vendor_available": 240}  # fmt: skip


def test_payouts_net_negative_orders_and_skip_blocked_ones() -> None:
    taken = lg.payout_amount({"o1": 500, "o2": -100, "o3": 300, "o4": 0}, ["o3"])
    assert taken == {"o1": 500, "o2": -100}
    legs = lg.payout_legs("v", taken)
    assert _sum(legs) == 0
    assert [leg.amount for leg in legs if leg.account == "payouts_in_transit"] == [-400]
    failed = lg.payout_failed_legs("v", taken)
    assert _sum(failed) == 0 and sorted(x.amount for x in failed) == sorted(
        -x.amount for x in legs)  # fmt: skip
    paid = lg.payout_paid_legs("v", 400, "stripe_transfer")
    assert {(x.account, x.owner, x.amount) for x in paid} == {
        ("payouts_in_transit", "v", 400), ("provider_clearing", "stripe", -400)}  # fmt: skip
    assert {x.account for x in lg.payout_paid_legs("v", 400, "manual")} == {
        "payouts_in_transit", "payouts_settled"}  # fmt: skip


def test_unbalanced_or_unknown_legs_never_pass() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        lg.balanced([lg.Leg("vendor_pending", 5), lg.Leg("provider_clearing", -4)])
    with pytest.raises(ValueError, match="no such account"):
        lg.balanced([lg.Leg("cash", 5), lg.Leg("provider_clearing", -5)])
    assert lg.release_legs("v", "o", 0) == []  # nothing moves: no legs


def test_report_range_defaults_and_typed_errors() -> None:
    today = dt.date(2026, 3, 31)
    span = lg.ReportRange.parse(None, None, None, today)
    assert (span.first, span.last, span.group) == (dt.date(2026, 3, 2), today, "day")
    assert lg.ReportRange.parse("2026-01-01", "2026-01-01", "cell", today).group == "cell"
    for first, last, group in [("2026-02-30", None, None), ("2026-1-1", None, None),
                               ("2026-03-02", "2026-03-01", None), (None, None, "week"),
                               ("2024-01-01", "2026-01-01", None)]:  # fmt: skip
        with pytest.raises(BadRequest):
            lg.ReportRange.parse(first, last, group, today)


def test_totals_are_per_currency() -> None:
    rows = [
        {"key": "a", "currency": "usd", "gmv": 10, "orders": 1, "refunds": 2, "commission": 1},
        {"key": "b", "currency": "usd", "gmv": 5, "orders": 1, "refunds": 0, "commission": 1},
        {"key": "a", "currency": "eur", "gmv": 7, "orders": 1, "refunds": 0, "commission": 0},
    ]
    assert lg.totals(rows) == [
        {"currency": "eur", "gmv": 7, "orders": 1, "refunds": 0, "commission": 0},
        {"currency": "usd", "gmv": 15, "orders": 2, "refunds": 2, "commission": 2},
    ]
