"""The fraud rules (models/risk.py), each at and below its threshold, and the held state of the
order state machine (models/market.py). Pure: no Postgres, no Ray."""

from __future__ import annotations

import dataclasses

import pytest

from models import market
from models import risk as rk
from models.errors import Conflict

OLD = 90 * rk.DAY_S
"""An account old enough for no new-account signal."""
QUIET = rk.RiskFacts(account_age_s=OLD, paid_checkouts=3, paid_max=5000)
BERLIN = (52.52, 13.405)
NOWHERE = rk.RiskContext()
AT = 1_700_000_000.0


def _codes(facts: rk.RiskFacts, ctx: rk.RiskContext = NOWHERE, amount: int = 1000,
           vendors: tuple[tuple[float, float], ...] = ()) -> dict[str, int]:  # fmt: skip
    risk = rk.score(facts, ctx, rk.Order(amount, vendors))
    return {s.code: s.points for s in risk.signals}


def _with(**changes: object) -> rk.RiskFacts:
    return dataclasses.replace(QUIET, **changes)  # type: ignore[arg-type]


def test_a_quiet_checkout_scores_zero() -> None:
    risk = rk.score(QUIET, NOWHERE, rk.Order(1000, (BERLIN,)))
    assert risk.score == 0 and risk.signals == ()
    assert risk.public() == {"score": 0, "reasons": []}
    assert not risk.holds(60)


@pytest.mark.parametrize(("age_s", "points"), [(60.0, 20), (rk.HOUR_S + 1, 10), (rk.DAY_S + 1, 0)])
def test_new_account(age_s: float, points: int) -> None:
    assert _codes(_with(account_age_s=age_s)).get("new_account", 0) == points


@pytest.mark.parametrize(
    ("field", "code", "tiers"),
    [
        ("account_checkouts_1h", "account_velocity", ((2, 0), (3, 15), (9, 15), (10, 30))),
        ("card_checkouts_1h", "card_velocity", ((2, 0), (3, 15), (10, 30))),
        ("card_accounts_30d", "card_shared", ((0, 0), (1, 20), (2, 20), (3, 40))),
        ("declines_1h", "declines", ((1, 0), (2, 20), (4, 20), (5, 45))),
    ],
)
def test_counted_rules_by_tier(field: str, code: str, tiers: tuple[tuple[int, int], ...]) -> None:
    for value, points in tiers:
        assert _codes(_with(**{field: value})).get(code, 0) == points, (field, value)


@pytest.mark.parametrize(
    ("field", "code", "tiers"),
    [
        ("address_checkouts_1h", "address_velocity", ((9, 0), (10, 15), (30, 30))),
        ("address_accounts_1h", "address_shared", ((2, 0), (3, 15), (10, 30))),
    ],
)
def test_address_rules_need_an_address(
    field: str, code: str, tiers: tuple[tuple[int, int], ...]
) -> None:
    known = rk.RiskContext(address="203.0.113.9")
    for value, points in tiers:
        assert _codes(_with(**{field: value}), known).get(code, 0) == points
        assert code not in _codes(_with(**{field: value}))  # no address: nothing counted


@pytest.mark.parametrize(
    ("field", "code", "tiers"),
    [
        ("device_checkouts_1h", "device_velocity", ((4, 0), (5, 15), (15, 30))),
        ("device_accounts_30d", "device_shared", ((1, 0), (2, 20), (5, 40))),
    ],
)
def test_device_rules_need_a_device(
    field: str, code: str, tiers: tuple[tuple[int, int], ...]
) -> None:
    known = rk.RiskContext(device=rk.device_key("install-1"))
    for value, points in tiers:
        assert _codes(_with(**{field: value}), known).get(code, 0) == points
        assert code not in _codes(_with(**{field: value}))


def test_amount_against_the_history() -> None:
    first = _with(paid_checkouts=0, paid_max=0)
    assert "large_first_order" not in _codes(first, amount=rk.FIRST_ORDER_LARGE - 1)
    assert _codes(first, amount=rk.FIRST_ORDER_LARGE)["large_first_order"] == 20
    regular = _with(paid_checkouts=4, paid_max=4000)
    assert "amount_vs_history" not in _codes(regular, amount=20_000)  # 5x, not over
    assert _codes(regular, amount=20_001)["amount_vs_history"] == 25
    small = _with(paid_checkouts=4, paid_max=100)
    assert "amount_vs_history" not in _codes(small, amount=rk.HISTORY_FLOOR - 1)  # small basket


def test_far_from_every_vendor() -> None:
    here = rk.RiskContext(here=rk.Point(*BERLIN, AT))
    assert "far_from_vendor" not in _codes(QUIET, here, vendors=((52.53, 13.41),))
    potsdam, hamburg, paris = (52.39, 13.06), (53.55, 9.99), (48.86, 2.35)
    assert "far_from_vendor" not in _codes(QUIET, here, vendors=(potsdam,))  # ~27 km
    assert _codes(QUIET, here, vendors=(hamburg,))["far_from_vendor"] == 15  # ~255 km
    assert _codes(QUIET, here, vendors=(paris,))["far_from_vendor"] == 30  # ~880 km
    assert "far_from_vendor" not in _codes(QUIET, here, vendors=(paris, potsdam))  # one is near
    assert "far_from_vendor" not in _codes(QUIET, NOWHERE, vendors=(paris,))  # not located


def test_impossible_travel_between_consecutive_points() -> None:
    berlin_then = rk.Point(*BERLIN, AT)
    paris_soon = rk.Point(48.86, 2.35, AT + 600)  # 880 km in 10 min
    paris_later = rk.Point(48.86, 2.35, AT + 3 * rk.HOUR_S)  # a flight: possible
    session = rk.RiskContext(here=paris_soon, before=berlin_then)
    assert _codes(QUIET, session)["impossible_travel"] == 40
    assert "impossible_travel" not in _codes(
        QUIET, rk.RiskContext(here=paris_later, before=berlin_then)
    )
    last_checkout = _with(last=berlin_then)
    assert _codes(last_checkout, rk.RiskContext(here=paris_soon))["impossible_travel"] == 40
    near = rk.Point(52.60, 13.50, AT + 60)  # ~11 km in a minute: jitter, not travel
    assert "impossible_travel" not in _codes(QUIET, rk.RiskContext(here=near, before=berlin_then))


def test_the_score_is_capped_and_holds_at_the_threshold() -> None:
    worst = rk.RiskFacts(
        account_age_s=10, card_checkouts_1h=50, card_accounts_30d=9, declines_1h=9,
        account_checkouts_1h=50,
    )  # fmt: skip
    risk = rk.score(worst, NOWHERE, rk.Order(100, ()))
    assert sum(s.points for s in risk.signals) > 100 and risk.score == 100
    assert risk.holds(100) and risk.holds(60)
    card_testing = rk.score(_with(declines_1h=5, card_accounts_30d=1), NOWHERE, rk.Order(1, ()))
    assert card_testing.score == 65 and card_testing.holds(60) and not card_testing.holds(66)
    stored = card_testing.stored()
    assert stored["reasons"] == ["card_shared", "declines"]
    assert {s["code"] for s in stored["signals"]} == {"card_shared", "declines"}
    assert all(s["detail"] and s["points"] > 0 for s in stored["signals"])
    assert rk.public_of(stored) == {"score": 65, "reasons": ["card_shared", "declines"]}
    assert rk.holds(stored, 60) and not rk.holds(None, 1) and rk.public_of(None) is None


def test_keys_the_facts_are_counted_by() -> None:
    assert rk.address_key("127.0.0.1") is None and rk.address_key("::1") is None
    assert rk.address_key(None) is None and rk.address_key("unknown") is None
    assert rk.address_key("203.0.113.9") == "203.0.113.9"
    assert rk.address_key("2001:db8:1:2:3:4:5:6") == rk.address_key("2001:db8:1:2::9")
    assert rk.device_key("install-1") == rk.device_key(" install-1 ") != rk.device_key("x")
    assert rk.device_key("") is None and rk.device_key("x" * 300) is None
    card = rk.instrument_fp("sandbox", "4242424242424242")
    assert card and "4242" not in card and card != rk.instrument_fp("stripe", "4242424242424242")
    assert rk.instrument_fp("sandbox", None) is None
    a = rk.request_fp({"provider": "sandbox", "card": "4242424242424242"})
    assert a == rk.request_fp({"card": "4242424242424242", "provider": "sandbox"})
    assert a != rk.request_fp({"provider": "sandbox", "card": "4000000000000002"})


def test_distance_is_great_circle() -> None:
    assert rk.distance_km(*BERLIN, *BERLIN) == 0
    assert 875 < rk.distance_km(*BERLIN, 48.86, 2.35) < 885


def test_the_held_state() -> None:
    hold = market.transition(market.PENDING, "hold", "system")
    assert hold.target == market.HELD and not hold.restock
    released = market.transition(market.HELD, "confirm", "system")
    assert released.target == market.PAID and not released.restock
    rejected = market.transition(market.HELD, "release", "system")
    assert rejected.target == market.CANCELLED and rejected.restock and not rejected.refund_owed
    for action, actor in [("hold", "buyer"), ("hold", "vendor")]:
        with pytest.raises(Conflict):
            market.transition(market.PENDING, action, actor)  # type: ignore[arg-type]
    for action, actor in [("cancel", "buyer"), ("cancel", "vendor"), ("accept", "vendor"),
                          ("expire", "system"), ("fulfil", "vendor")]:  # fmt: skip
        with pytest.raises(Conflict):
            market.transition(market.HELD, action, actor)  # type: ignore[arg-type]
