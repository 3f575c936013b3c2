"""Metrics, the lambdarank ranker, model bundles and serving helpers on generated data."""

from __future__ import annotations

import numpy as np
import pytest

from models.recommend.baselines import BASELINES
from models.recommend.data import split_trajectories
from models.recommend.evaluate import protocol_queries
from models.recommend.metrics import acc_at_k, mrr, ndcg_at_k, rank_of_target, summarize, top_k
from models.recommend.ranker import LambdaRanker
from models.recommend.serving import (
    ModelBundle,
    Snapshot,
    encode,
    model_scopes,
    order_by_scores,
    parse_relevance_cursor,
    product_recipe,
    rank,
    relevance_cursor,
    train_scope,
)
from models.recommend.stats import HistoryStats
from models.recommend.synthetic import make_events, make_items
from models.recommend.training import NotEnoughData, Recipe, fit_window


def test_rank_of_target_ties_never_favour_the_target() -> None:
    scores = np.array([1.0, 3.0, 3.0, -np.inf, -np.inf])
    tie = np.array([0.0, 1.0, 5.0, 9.0, 0.0])
    assert rank_of_target(scores, 2, tie) == 1
    assert rank_of_target(scores, 1, tie) == 2
    assert rank_of_target(scores, 4, tie) == 5  # unscored, lowest tie-break: last
    assert rank_of_target(np.zeros(3), 2) == 3  # full tie: by id, target not first
    assert top_k(scores, 3, tie).tolist() == [2, 1, 0]
    with pytest.raises(ValueError):
        rank_of_target(scores, 7)


def test_metric_formulas() -> None:
    ranks = [1, 2, 10, 11]
    assert acc_at_k(ranks, 1) == 0.25 and acc_at_k(ranks, 10) == 0.75
    assert mrr(ranks) == pytest.approx((1 + 0.5 + 0.1 + 1 / 11) / 4)
    assert ndcg_at_k([1, 3, 11]) == pytest.approx((1 + 0.5 + 0) / 3)
    row = summarize("ranker", ranks)
    assert row.format_short() == "ranker Acc@1=0.2500 Acc@5=0.5000 Acc@10=0.7500 MRR=0.4227"


def _trained() -> tuple[LambdaRanker, Recipe, list, list]:
    items = make_items(120, seed=1)
    events = make_events(items, n_users=30, days=25, seed=1)
    recipe = product_recipe(8, 1)
    ranker, info = train_scope("global", items, events, recipe)
    assert info["groups"] >= 50 and 0 < info["candidate_recall"] <= 1
    return ranker, recipe, items, events


def test_ranker_beats_popularity_and_round_trips() -> None:
    ranker, recipe, items, events = _trained()
    catalog, log = encode(items, events)
    cut = float(np.quantile(log.ts, 0.8))
    stats = HistoryStats(log.before(cut), catalog, cut, recipe.stats)
    qb = protocol_queries(split_trajectories(log.subset(log.ts >= cut)), min_inputs=1)
    from models.recommend.candidates import CandidateGenerator
    from models.recommend.features import build_features

    cs = CandidateGenerator(stats, recipe.candidates).generate(qb)
    x = build_features(qb, cs, stats)
    scores = ranker.score(x)
    tie = stats.item_pop
    ranks = []
    for q in range(len(qb)):
        full = np.full(catalog.n_items, -np.inf)
        lo, hi = cs.offsets[q], cs.offsets[q + 1]
        full[cs.item[lo:hi]] = scores[lo:hi]
        ranks.append(rank_of_target(full, int(qb.target[q]), tie))
    pop = BASELINES["MostPop"](stats)
    pop_ranks = [rank_of_target(pop(qb, q), int(qb.target[q]), tie) for q in range(len(qb))]
    assert mrr(ranks) > mrr(pop_ranks) + 0.05
    again = LambdaRanker.from_bytes(ranker.to_bytes())
    assert np.allclose(again.score(x), scores)
    bundle = ModelBundle("global", 7, ranker, recipe, {"x": 1.0})
    loaded = ModelBundle.from_bytes(bundle.to_bytes())
    assert (loaded.scope, loaded.version, loaded.metrics) == ("global", 7, {"x": 1.0})
    assert loaded.recipe.candidates == recipe.candidates
    with pytest.raises(ValueError):
        ModelBundle.from_bytes(b"junk")
    with pytest.raises(ValueError):
        LambdaRanker.from_bytes(ranker.to_bytes(), expect_features=("other",))


def test_serving_rank_scores_known_and_unknown_users() -> None:
    ranker, recipe, items, events = _trained()
    bundle = ModelBundle("global", 1, ranker, recipe, {})
    snap = Snapshot(items, events, events[-1].timestamp + 60, recipe.stats)
    here = (items[0].lat, items[0].lng)
    scores = rank(bundle, snap, "u1", *here, items[:40], now=snap.now)
    assert scores.shape == (40,) and np.isfinite(scores).all()
    anon = rank(bundle, snap, "nobody", *here, items[:40], now=snap.now)
    assert np.isfinite(anon).all() and not np.allclose(anon, scores)
    fresh = make_items(3, seed=9)
    fresh = [type(it)(f"new{i}", it.lat, it.lng, None, "c1") for i, it in enumerate(fresh)]
    assert rank(bundle, snap, "u1", *here, fresh, now=snap.now).shape == (3,)
    assert snap.catalog.find_item("new0") is None  # the shared snapshot is not mutated
    assert rank(bundle, snap, "u1", *here, [], now=snap.now).shape == (0,)


def test_not_enough_data_is_a_typed_error() -> None:
    items = make_items(5)
    with pytest.raises(NotEnoughData):
        train_scope("x", items, make_events(items, n_users=1, days=1)[:1], product_recipe(8, 1))
    catalog, log = encode(items, make_events(items, n_users=1, days=2))
    with pytest.raises(NotEnoughData):
        fit_window(log, catalog, float(log.ts[-1]) + 1, float(log.ts[-1]) + 2, Recipe())


def test_scopes_cursor_and_ordering_helpers() -> None:
    import h3

    cell = h3.latlng_to_cell(40.7, -74.0, 8)
    scopes = model_scopes(cell, 2)
    assert scopes == [cell, h3.cell_to_parent(cell, 7), h3.cell_to_parent(cell, 6), "global"]
    assert model_scopes(cell, 0) == [cell, "global"]
    assert parse_relevance_cursor(relevance_cursor(40)) == 40
    assert parse_relevance_cursor("MTIzOmFi") is None and parse_relevance_cursor(None) is None
    assert order_by_scores(4, [0.1, 0.9, 0.1, 0.5]) == [1, 3, 0, 2]
