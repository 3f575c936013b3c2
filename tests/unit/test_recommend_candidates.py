"""Candidate generation and history statistics on small generated data (no Ray, no dataset)."""

from __future__ import annotations

from dataclasses import replace

import h3
import numpy as np

from models.recommend.candidates import (
    HIST,
    NEAR,
    NEARLAST,
    PREFIX,
    TRANSK,
    CandidateConfig,
    CandidateGenerator,
)
from models.recommend.data import Catalog, Interaction, InteractionLog, split_trajectories
from models.recommend.queries import QueryBatch
from models.recommend.serving import encode
from models.recommend.stats import HistoryStats, StatsConfig
from models.recommend.synthetic import make_events, make_items


def _world() -> tuple[Catalog, InteractionLog]:
    items = make_items(80, seed=3)
    return encode(items, make_events(items, n_users=20, days=20, seed=3))


def test_candidates_recall_is_measured_and_sources_flagged() -> None:
    catalog, log = _world()
    cut = float(np.quantile(log.ts, 0.7))
    stats = HistoryStats(log.before(cut), catalog, cut)
    trajs = split_trajectories(log.subset(log.ts >= cut))
    qb = QueryBatch.from_trajectories(trajs, last_only=True)
    cs = CandidateGenerator(stats).generate(qb)
    assert len(qb) > 10
    recall = cs.recall(qb.target)
    assert 0.5 < recall <= 1.0  # habits are strong in the generated world
    for q in range(len(qb)):  # unique, sorted, the prefix always proposed
        items = cs.items_of(q)
        assert np.all(np.diff(items) > 0)
        src = cs.source[cs.offsets[q] : cs.offsets[q + 1]]
        assert set(qb.prefix(q)) <= set(items[(src & PREFIX) > 0])


def test_candidates_never_depend_on_the_target() -> None:
    catalog, log = _world()
    cut = float(np.quantile(log.ts, 0.7))
    stats = HistoryStats(log.before(cut), catalog, cut)
    qb = QueryBatch.from_trajectories(split_trajectories(log.subset(log.ts >= cut)))
    gen = CandidateGenerator(stats)
    before = gen.generate(qb)
    qb.target[:] = (qb.target + 1) % catalog.n_items
    after = gen.generate(qb)
    assert np.array_equal(before.item, after.item) and np.array_equal(before.source, after.source)


def test_items_born_after_the_query_are_not_candidates() -> None:
    catalog = Catalog()
    old = catalog.item("old", 40.7, -74.0, "a", created=100.0)
    catalog.item("new", 40.7, -74.0, "a", created=10_000.0)
    ev = [Interaction("u", "old", 50.0 + i, lat=40.7, lng=-74.0) for i in range(3)]
    log = InteractionLog.from_interactions(ev, catalog)
    stats = HistoryStats(log, catalog, 1000.0)
    qb = QueryBatch.single(0, [old], [900.0], 1000.0, 12, 2, 40.7, -74.0)
    cs = CandidateGenerator(stats, CandidateConfig(near_k=10)).generate(qb)
    assert catalog.item_ids[int(cs.item[0])] == "old" and len(cs) == 1
    assert cs.source[0] & HIST and cs.source[0] & NEAR


def test_user_items_and_nearby_are_ordered_by_counts() -> None:
    catalog = Catalog()
    for name in ("a", "b", "c"):
        catalog.item(name, 40.7128, -74.0060, "x")
    ev = [Interaction("u", it, float(t)) for t, it in enumerate("abbbcc")]
    log = InteractionLog.from_interactions(ev, catalog)
    stats = HistoryStats(log, catalog, 100.0)
    assert [catalog.item_ids[i] for i in stats.user_items(0)] == ["b", "c", "a"]
    cell = h3.latlng_to_cell(40.7128, -74.0060, 8)
    assert [catalog.item_ids[i] for i in stats.nearby(cell, 1, 2)] == ["b", "c"]
    assert stats.nearby(None, 1, 5).size == 0


def test_h3_grid_distance_matches_h3() -> None:
    catalog, log = _world()
    stats = HistoryStats(log, catalog, float(log.ts[-1]) + 1, StatsConfig(h3_resolution=9))
    rng = np.random.default_rng(0)
    a = [h3.latlng_to_cell(40.7 + x, -74.0 + y, 9) for x, y in rng.normal(0, 0.03, (50, 2))]
    b = [h3.latlng_to_cell(40.7 + x, -74.0 + y, 9) for x, y in rng.normal(0, 0.03, (50, 2))]
    got = stats.grid_distance(stats.cell_ij(a), stats.cell_ij(b))
    want = [h3.grid_distance(x, y) for x, y in zip(a, b, strict=True)]
    assert got.tolist() == want
    assert np.isnan(stats.grid_distance(stats.cell_ij([None]), stats.cell_ij([a[0]]))[0])


def test_nearest_to_the_last_item_is_by_metres_not_popularity() -> None:
    catalog = Catalog()
    here = catalog.item("here", 40.7000, -74.0000, "a")
    catalog.item("next_door", 40.7002, -74.0000, "a")  # ~22 m, never visited
    catalog.item("across", 40.7030, -74.0000, "a")  # ~330 m
    catalog.item("far_hit", 40.7500, -74.0000, "a")  # ~5.6 km, the popular one
    catalog.item("nowhere", float("nan"), float("nan"), "a")
    ev = [Interaction(f"u{i}", "far_hit", 10.0 + i) for i in range(9)]
    ev.append(Interaction("u0", "here", 50.0))
    stats = HistoryStats(InteractionLog.from_interactions(ev, catalog), catalog, 100.0)
    names = [catalog.item_ids[int(i)] for i in stats.nearest_to(here, 3)]
    assert names == ["next_door", "across", "far_hit"]  # itself and the unlocated left out
    assert len(stats.nearest_to(catalog.item("nowhere"), 3)) == 0
    assert len(stats.nearest_to(-1, 3)) == 0 and len(stats.nearest_to(here, 0)) == 0


def test_near_last_and_deeper_transition_sources() -> None:
    catalog = Catalog()
    lats = {"a": 40.70, "b": 40.71, "c": 40.7105, "d": 40.73, "x": 40.75, "y": 40.76}
    ids = {n: catalog.item(n, lat, -74.0, "a") for n, lat in lats.items()}
    # in the past: c -> x many times (c will be the 3rd last item of the prefix), d -> y
    ev = [Interaction(f"p{i}", n, 1000.0 * i + j) for i in range(5) for j, n in enumerate("cx")]
    ev += [Interaction("p9", n, 9000.0 + j) for j, n in enumerate("dy")]
    stats = HistoryStats(InteractionLog.from_interactions(ev, catalog), catalog, 20_000.0)
    prefix = [ids[n] for n in "cdab"]  # ... c, d, a, b: c and d are the 4th and 3rd last
    qb = QueryBatch.single(0, prefix, [19_000.0 + k for k in range(4)], 19_500.0, 12, 2)
    cfg = CandidateConfig(hist_k=0, trans_k=0, trans2_k=0, sim_k=0, near_k=0, pop_k=0)
    cs = CandidateGenerator(stats, replace(cfg, near_last_k=1)).generate(qb)
    got = {catalog.item_ids[int(i)]: int(s) for i, s in zip(cs.item, cs.source, strict=True)}
    assert got["x"] & TRANSK and got["y"] & TRANSK  # transitions of the 3rd+ last items
    assert not got["a"] & TRANSK and got["a"] & PREFIX
    near = [n for n, s in got.items() if s & NEARLAST]
    assert near == ["c"]  # the nearest to b, the last item, is 55 m away
    shallow = CandidateGenerator(stats, replace(cfg, transk_depth=2)).generate(qb)
    assert not np.any(shallow.source & TRANSK)  # depth 2: nothing deeper than the last two
