from collections import Counter

import pytest

from models.placement import Placement, cell_key


def test_owner_is_deterministic_and_spread() -> None:
    table = Placement(1, ("shard-0", "shard-1", "shard-2"))
    keys = [cell_key(f"88{i:013x}") for i in range(3000)]
    owners = Counter(table.owner(k) for k in keys)
    assert set(owners) == {"shard-0", "shard-1", "shard-2"}
    assert min(owners.values()) > 800  # roughly even
    assert [table.owner(k) for k in keys] == [table.owner(k) for k in keys]


def test_adding_a_shard_moves_only_keys_to_the_new_shard() -> None:
    before = Placement(1, ("a", "b", "c"))
    after = before.with_shards(("a", "b", "c", "d"))
    assert after.version == 2
    keys = [f"cell:{i}" for i in range(2000)]
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    assert moved and all(after.owner(k) == "d" for k in moved)
    assert 300 < len(moved) < 700  # about a quarter


def test_override_wins_and_bumps_version() -> None:
    table = Placement(3, ("a", "b"))
    key = "cell:hot"
    other = "b" if table.owner(key) == "a" else "a"
    moved = table.with_override(key, other)
    assert moved.owner(key) == other and moved.version == 4
    assert Placement.from_dict(moved.to_dict()) == moved


def test_invalid_tables_are_refused() -> None:
    with pytest.raises(ValueError):
        Placement(1, ())
    with pytest.raises(ValueError):
        Placement(1, ("a",), {"cell:x": "zzz"})
