"""How a provider-side refund is spread over a payment's orders (models/refund_mirror.py):
oldest first, each up to what it had left before this refund, the same split however often it
is applied, never beyond the orders' totals; and which refunds are our own."""

from __future__ import annotations

import pytest

from models.refund_mirror import Allocation, OrderMoney, ProviderRefund, allocate


def test_spread_oldest_first_up_to_what_each_had_left() -> None:
    orders = [OrderMoney("a", 600), OrderMoney("b", 400)]
    plan = allocate(orders, 700)
    assert plan == Allocation({"a": 600, "b": 100}, 0)
    assert plan.still_to_mirror(orders) == {"a": 600, "b": 100}


def test_applied_again_after_a_crash_half_way_the_split_is_the_same() -> None:
    # "a" got its 600 from this refund already (left 0, mirrored 600); "b" not yet
    after_a = [OrderMoney("a", 0, mirrored=600), OrderMoney("b", 400)]
    plan = allocate(after_a, 700)
    assert plan.shares == {"a": 600, "b": 100}
    assert plan.still_to_mirror(after_a) == {"b": 100}
    done = [OrderMoney("a", 0, mirrored=600), OrderMoney("b", 300, mirrored=100)]
    assert allocate(done, 700).still_to_mirror(done) == {}


def test_what_others_refunded_meanwhile_is_not_taken_twice() -> None:
    # someone else refunded all of "a" (left 0, nothing of this refund): it all goes to "b"
    orders = [OrderMoney("a", 0), OrderMoney("b", 400)]
    assert allocate(orders, 300).shares == {"b": 300}


def test_beyond_every_order_is_excess_never_posted() -> None:
    orders = [OrderMoney("a", 100), OrderMoney("b", 0), OrderMoney("c", -5)]
    plan = allocate(orders, 250)
    assert plan.shares == {"a": 100} and plan.excess == 150
    assert allocate([], 10) == Allocation({}, 10)
    with pytest.raises(ValueError):
        allocate(orders, -1)


@pytest.mark.parametrize(
    ("tag", "ours"),
    [("refund-01HX", True), ("dup-ord1", True), (None, False), ("", False), ("support", False)],
)
def test_our_refunds_are_known_by_the_key_they_carry(tag: str | None, ours: bool) -> None:
    assert ProviderRefund("stripe", "re_1", 100, tag).is_ours() is ours
