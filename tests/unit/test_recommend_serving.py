"""Shard-side input checks and the trainer's scope planning (pure parts, no Ray, no Postgres)."""

from __future__ import annotations

import h3
import pytest

from actors.recommend_ops import parse_items
from cluster.config import load_settings
from cluster.trainer import plan_scopes
from models.errors import BadRequest
from models.recommend.data import Interaction
from models.recommend.serving import GLOBAL, Item


def test_parse_items_refuses_malformed_candidates() -> None:
    ok = parse_items([{"id": "p1", "lat": 40.7, "lng": -74.0, "author_id": "u9", "created_ms": 5}])
    assert ok[0].category == "u9" and ok[0].created_s == 0.005
    for bad in (
        "nope",
        [{"lat": 1, "lng": 2}],
        [{"id": "x", "lat": "north", "lng": 2}],
        [{"id": "x", "lat": float("nan"), "lng": 2}],
        [{"id": str(i), "lat": 1, "lng": 1} for i in range(1001)],
    ):
        with pytest.raises(BadRequest):
            parse_items(bad)


def test_scopes_global_cells_and_parents() -> None:
    settings = load_settings(h3_resolution=8, k_ring=1, recommend_parent_levels=1)
    busy = h3.latlng_to_cell(40.7128, -74.0060, 8)
    quiet = h3.latlng_to_cell(40.80, -73.95, 8)
    lat, lng = h3.cell_to_latlng(busy)
    items = [Item("a", lat, lng, busy), Item("b", *h3.cell_to_latlng(quiet), quiet)]
    events = [Interaction(f"u{i}", "a", float(i), cell=busy) for i in range(5)]
    events.append(Interaction("u0", "b", 9.0, cell=quiet))
    scopes = {s.name: s for s in plan_scopes(items, events, settings, min_events=5)}
    assert set(scopes) == {GLOBAL, busy, h3.cell_to_parent(busy, 7)}
    assert len(scopes[GLOBAL].events) == 6 and len(scopes[busy].events) == 5
    only = plan_scopes(items, events, settings, cells=[quiet], min_events=5)
    assert [s.name for s in only] == [quiet] and len(only[0].events) == 1
