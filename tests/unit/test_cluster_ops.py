"""Issue 13's pure parts: scaling moves exactly the keys rendezvous hashing reassigns, pins and
dedicated shards, the per-key load meter, the rebalancer's choice and the scale names."""

from __future__ import annotations

import pytest

from models.load import LoadMeter
from models.placement import Placement, cell_key
from models.rebalance import pick
from services.cluster_ops import general_names

KEYS = [cell_key(f"88{i:013x}") for i in range(3000)]


def test_scale_2_4_2_moves_exactly_the_reassigned_keys() -> None:
    two = Placement(1, ("shard-0", "shard-1"))
    four = two.with_shards(("shard-0", "shard-1", "shard-2", "shard-3"))
    moved_out = [k for k in KEYS if two.owner(k) != four.owner(k)]
    assert all(four.owner(k) in ("shard-2", "shard-3") for k in moved_out)
    assert 1200 < len(moved_out) < 1800  # about half go to the two new shards
    back = four.with_shards(("shard-0", "shard-1"))
    moved_back = [k for k in KEYS if four.owner(k) != back.owner(k)]
    assert sorted(moved_back) == sorted(moved_out)  # only the removed shards' keys move
    assert all(back.owner(k) == two.owner(k) for k in KEYS)  # and each returns home


def test_a_pin_dedicates_its_shard_and_unpin_gives_it_back() -> None:
    table = Placement(1, ("a", "b", "c"))
    hot = KEYS[0]
    pinned = table.with_pin(hot, "c")
    assert pinned.owner(hot) == "c" and pinned.hashed == ("a", "b")
    for key in KEYS[1:]:
        assert pinned.owner(key) != "c"  # nothing else is placed on c
        if table.owner(key) != "c":
            assert pinned.owner(key) == table.owner(key)  # only c's keys moved
    assert Placement.from_dict(pinned.to_dict()) == pinned
    back = pinned.without_override(hot)
    assert back.dedicated == frozenset() and back.owner(hot) == table.owner(hot)
    assert all(back.owner(k) == table.owner(k) for k in KEYS)
    with pytest.raises(ValueError):  # hashing needs a shard left
        Placement(1, ("a",), {hot: "a"}, frozenset({"a"}))
    with pytest.raises(ValueError):
        Placement(1, ("a", "b"), {}, frozenset({"z"}))


def test_scale_names_skip_dedicated_shards() -> None:
    table = Placement(1, ("shard-0", "shard-1", "shard-2"), {"cell:x": "shard-1"},
                      frozenset({"shard-1"}))  # fmt: skip
    assert general_names(table, 3) == ("shard-0", "shard-2", "shard-3")
    assert general_names(table, 1) == ("shard-0",)


def test_load_meter_tracks_rates_and_forgets_quiet_keys() -> None:
    meter = LoadMeter(tau_s=1.0)
    for i in range(5000):  # 100/s to one key, 10/s to another, for 50 s
        t = i * 0.01
        meter.record("cell:hot", t)
        if i % 10 == 0:
            meter.record("cell:warm", t)
    now = 50.0
    assert meter.rate("cell:hot", now) == pytest.approx(100, rel=0.05)
    assert meter.rate("cell:warm", now) == pytest.approx(10, rel=0.1)
    assert meter.total(now) == pytest.approx(110, rel=0.05)
    assert [k for k, _ in meter.hottest(now, 1)] == ["cell:hot"]
    assert meter.rate("cell:hot", now + 10) < 0.01  # gone quiet
    meter.prune(now + 20)
    assert len(meter) == 0


def _shard(name: str, per_s: float, hot: list[tuple[str, float]], **more: object) -> dict:
    cells = [{"cell": c, "msgs_per_s": r} for c, r in hot]
    return {"id": name, "up": True, "dedicated": False, "calls_per_s": per_s,
            "hot_cells": cells, **more}  # fmt: skip


def test_rebalancer_moves_the_hottest_cell_off_an_overloaded_shard() -> None:
    shards = [_shard("a", 900, [("c1", 400), ("c2", 300)]), _shard("b", 50, []),
              _shard("c", 100, [])]  # fmt: skip
    move = pick(shards, ratio=2.0, min_per_s=50)
    assert move is not None and (move.cell, move.source, move.target) == ("c1", "a", "b")
    # even enough, too quiet, or one cell being the whole load: no move
    assert pick([_shard("a", 300, [("c1", 100)]), _shard("b", 200, [])], 2.0, 50) is None
    two = pick([_shard("a", 500, [("c1", 200)]), _shard("b", 100, [])], 2.0, 50)
    assert two is not None and two.target == "b"  # two shards: over twice the other
    assert pick([_shard("a", 40, [("c1", 30)]), _shard("b", 0, [])], 2.0, 50) is None
    assert pick([_shard("a", 900, [("c1", 890)]), _shard("b", 0, [])], 2.0, 50) is None
    # dedicated and dead shards take no part
    assert pick([_shard("a", 900, [("c1", 400)]), _shard("b", 0, [], dedicated=True)],
                2.0, 50) is None  # fmt: skip
    assert pick([_shard("a", 900, [("c1", 400)]), _shard("b", 0, [], up=False)],
                2.0, 50) is None  # fmt: skip
