"""Failover's pure parts (models/failover.py): when a shard is dead, when it is back, and the
table changes that move exactly its keys."""

from __future__ import annotations

import pytest

from models.failover import Liveness, Outcome, Policy, shard_order, with_back, without
from models.placement import Placement, cell_key

SHARDS = ("shard-0", "shard-1", "shard-2")
KEYS = [cell_key(f"88{i:013x}") for i in range(3000)]


def _liveness(misses: int = 3, rejoin_s: float = 10.0) -> Liveness:
    return Liveness(Policy(misses, rejoin_s))


def test_a_refused_connection_fails_a_shard_over_at_once() -> None:
    table = Placement(1, SHARDS)
    live = _liveness()
    live.observe("shard-1", Outcome.OK, 0.0)
    assert live.dead(table) == []
    live.observe("shard-1", Outcome.REFUSED, 0.1)
    assert live.dead(table) == ["shard-1"]


def test_timeouts_alone_need_k_misses_in_a_row() -> None:
    table = Placement(1, SHARDS)
    live = _liveness(misses=3)
    for t in range(2):
        live.observe("shard-2", Outcome.MISSED, float(t))
    assert live.dead(table) == []  # slow, not dead
    live.observe("shard-2", Outcome.OK, 2.0)  # an answer starts the count again
    live.observe("shard-2", Outcome.MISSED, 3.0)
    live.observe("shard-2", Outcome.MISSED, 4.0)
    assert live.dead(table) == []
    live.observe("shard-2", Outcome.MISSED, 5.0)
    assert live.dead(table) == ["shard-2"]


def test_the_last_shards_are_never_all_failed_over() -> None:
    table = Placement(1, ("shard-0", "shard-1"))
    live = _liveness()
    live.observe("shard-0", Outcome.REFUSED, 0.0)
    live.observe("shard-1", Outcome.REFUSED, 0.0)
    assert live.dead(table) == []  # nowhere to go: wait for Ray's restart


def test_a_failed_shard_rejoins_after_answering_for_rejoin_s() -> None:
    live = _liveness(rejoin_s=5.0)
    live.observe("shard-1", Outcome.REFUSED, 0.0)
    live.failed_over(["shard-1"])
    table = without(Placement(1, SHARDS), ["shard-1"])
    assert live.watched(table) == ("shard-0", "shard-2", "shard-1")  # still pinged
    live.observe("shard-1", Outcome.OK, 1.0)
    assert live.back(table, 5.9) == []
    live.observe("shard-1", Outcome.MISSED, 6.0)  # a miss starts the wait again
    live.observe("shard-1", Outcome.OK, 7.0)
    assert live.back(table, 11.9) == []
    assert live.back(table, 12.0) == ["shard-1"]
    live.rejoined(["shard-1"])
    assert live.back(table, 99.0) == [] and live.failed == set()


def test_rejoin_s_zero_leaves_it_to_a_scale() -> None:
    live = _liveness(rejoin_s=0.0)
    live.failed_over(["shard-1"])
    live.observe("shard-1", Outcome.OK, 0.0)
    table = without(Placement(1, SHARDS), ["shard-1"])
    assert live.back(table, 1e9) == []
    live.forget()  # a scale decided
    assert live.failed == set() and live.watched(table) == ("shard-0", "shard-2")


def test_without_moves_exactly_the_dead_shards_keys_and_its_overrides() -> None:
    pinned = KEYS[0]
    before = Placement(4, SHARDS).with_override(pinned, "shard-1")
    after = without(before, ["shard-1"])
    assert after.version == before.version + 1 and after.shards == ("shard-0", "shard-2")
    assert pinned not in after.overrides
    for key in KEYS:
        if before.owner(key) != "shard-1":
            assert after.owner(key) == before.owner(key), key  # nobody else's key moves
        else:
            assert after.owner(key) in ("shard-0", "shard-2")
    assert sum(before.owner(k) == "shard-1" for k in KEYS) > 500  # the check meant something


def test_without_keeps_other_pins_and_undedicates_when_only_dedicated_survive() -> None:
    hot = KEYS[1]
    table = Placement(1, SHARDS).with_pin(hot, "shard-2")
    kept = without(table, ["shard-0"])
    assert kept.overrides == {hot: "shard-2"} and kept.dedicated == {"shard-2"}
    assert kept.owner(KEYS[5]) == "shard-1"  # hashing uses the one general shard left
    alone = without(table, ["shard-0", "shard-1"])
    assert alone.dedicated == frozenset() and alone.owner(KEYS[5]) == "shard-2"
    with pytest.raises(ValueError):
        without(table, list(SHARDS))


def test_with_back_gives_back_exactly_what_hashing_places_on_it() -> None:
    before = Placement(1, SHARDS)
    out = without(before, ["shard-1"])
    back = with_back(out, ["shard-1"])
    assert back.shards == SHARDS and back.version == out.version + 1
    for key in KEYS:
        assert back.owner(key) == before.owner(key)
        if out.owner(key) != back.owner(key):
            assert back.owner(key) == "shard-1"  # only its keys move


def test_shard_order_is_numeric() -> None:
    names = ["shard-10", "other", "shard-2", "shard-0"]
    assert sorted(names, key=shard_order) == ["shard-0", "shard-2", "shard-10", "other"]
