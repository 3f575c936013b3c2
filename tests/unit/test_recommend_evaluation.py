"""The offline evaluation's honesty checks on generated data: bootstrap intervals, the paired
lead, the leakage controls (a model and its scores cannot depend on anything at or after the
cutoff; shuffled training targets leave nothing to learn) and the feature-family ablation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.recommend.data import Catalog, InteractionLog, Trajectory, split_trajectories
from models.recommend.evaluate import ablation, evaluate, leakage_checks, protocol_queries
from models.recommend.features import FEATURE_FAMILIES, FEATURE_NAMES
from models.recommend.metrics import MetricRow, bootstrap_ci, paired_diff_ci, summarize
from models.recommend.serving import encode
from models.recommend.stats import DAY_S, EMBED_DIM
from models.recommend.synthetic import make_events, make_items
from models.recommend.training import (
    Recipe,
    fit_windows,
    mask_features,
    window_groups,
    windows_groups,
)


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_queries() -> None:
    rng = np.random.default_rng(3)
    small, large = rng.integers(1, 30, 200), rng.integers(1, 30, 5000)
    for ranks in (small, large):
        row, ci = summarize("m", ranks), bootstrap_ci(ranks)
        for name in ("acc1", "acc5", "acc10", "mrr", "ndcg10"):
            lo, hi = ci[name]
            assert lo <= getattr(row, name) <= hi
    assert np.diff(bootstrap_ci(large)["mrr"]) < np.diff(bootstrap_ci(small)["mrr"])
    assert bootstrap_ci(small) == bootstrap_ci(small)  # seeded: the same interval every run


def test_paired_difference_interval() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(1, 30, 1000)
    assert paired_diff_ci(a, a)["mrr"] == (0.0, 0.0)
    better = np.maximum(a - 3, 1)  # every query at least as good, most better
    lo, hi = paired_diff_ci(better, a)["acc10"]
    assert 0 < lo <= hi
    with pytest.raises(ValueError):
        paired_diff_ci(a, a[:-1])


def test_every_feature_is_in_exactly_one_family_and_masking_makes_it_missing() -> None:
    names = [n for family in FEATURE_FAMILIES.values() for n in family]
    assert sorted(names) == sorted(FEATURE_NAMES)
    x = np.ones((3, len(FEATURE_NAMES)), dtype=np.float32)
    masked = mask_features(x.copy(), FEATURE_FAMILIES["sequence: geographic drift"])
    gone = [FEATURE_NAMES.index(n) for n in FEATURE_FAMILIES["sequence: geographic drift"]]
    assert np.isnan(masked[:, gone]).all() and np.isnan(masked).sum() == 3 * len(gone)
    with pytest.raises(ValueError):
        mask_features(x, ("no_such_feature",))


def _world() -> tuple[Catalog, InteractionLog, float, list[Trajectory]]:
    items = make_items(80, seed=2)
    events = make_events(items, n_users=25, days=40, seed=2)
    catalog, log = encode(items, events)
    cutoff = float(log.ts[0]) + 30 * DAY_S
    tail = log.subset(log.ts >= cutoff)
    trajs = [t for t in split_trajectories(tail, DAY_S) if len(t) >= 3]
    return catalog, log, cutoff, trajs


def _recipe() -> Recipe:
    r = Recipe(train_days=10.0, train_windows=2)
    r.ranker = replace(r.ranker, n_estimators=40, num_threads=1, min_data_in_leaf=5)
    return r


def test_leakage_controls_rows_after_the_cutoff_change_nothing_shuffled_targets_collapse() -> None:
    catalog, log, cutoff, trajs = _world()
    checks = leakage_checks(log, catalog, trajs, cutoff, _recipe())
    assert checks["identical"] is True
    real, noise, most_pop = checks["ranker"], checks["shuffled"], checks["MostPop"]
    assert isinstance(real, MetricRow) and isinstance(noise, MetricRow)
    assert isinstance(most_pop, MetricRow)
    assert real.mrr > 2 * noise.mrr and real.acc1 > most_pop.acc1


def test_ablation_retrains_once_per_family() -> None:
    catalog, log, cutoff, trajs = _world()
    recipe = replace(_recipe(), train_windows=1, max_negatives=20)
    recipe.ranker = replace(recipe.ranker, n_estimators=5)
    table = ablation(log, catalog, trajs, cutoff, recipe)
    assert [name for name, _ in table] == ["all features"] + [f"- {f}" for f in FEATURE_FAMILIES]
    assert all(0 < row.mrr <= 1 for _, row in table)


def test_stats_lag_hides_the_rows_between_the_history_and_the_window() -> None:
    catalog, log, cutoff, _ = _world()
    start, end, lag = cutoff - 10 * DAY_S, cutoff, 5.0
    recipe = replace(_recipe(), stats_lag_days=lag)
    gap = (log.ts >= start - lag * DAY_S) & (log.ts < start)
    assert gap.any()
    with_gap = window_groups(log, catalog, start, end, recipe)
    without = window_groups(log.subset(~gap), catalog, start, end, recipe)
    assert np.array_equal(with_gap.x, without.x, equal_nan=True)  # those rows are never seen
    assert np.array_equal(with_gap.group, without.group)
    no_lag = window_groups(log, catalog, start, end, replace(recipe, stats_lag_days=0.0))
    assert not np.array_equal(no_lag.x, with_gap.x, equal_nan=True)
    # windows whose lagged history would start before the log are left out
    assert len(windows_groups(log, catalog, cutoff, replace(recipe, stats_lag_days=12.0))) == 1


def test_query_time_target_asks_at_the_targets_time_and_nothing_else_moves() -> None:
    """The labelled variant (recommend eval --query-time target): the query's time, hour and day
    are the target's; its user, prefix, place and target are the protocol's own."""
    traj = Trajectory(
        "t",
        0,
        np.array([3, 4, 5]),
        np.array([1000.0, 2000.0, 9000.0]),
        np.array([8, 9, 21]),
        np.array([1, 1, 2]),
    )
    plain, at = protocol_queries([traj]), protocol_queries([traj], at_target=True)
    assert (plain.ts[0], plain.hour[0], plain.dow[0]) == (2000.0, 9, 1)
    assert (at.ts[0], at.hour[0], at.dow[0]) == (9000.0, 21, 2)
    for name in ("user", "last", "prev2", "target", "prefix_items", "prefix_ts"):
        assert np.array_equal(getattr(plain, name), getattr(at, name)), name
    catalog, log, cutoff, trajs = _world()
    recipe = replace(_recipe(), query_at_target=True)
    ranker, _ = fit_windows(log, catalog, cutoff, recipe)
    rows, _ = evaluate(log, catalog, trajs, ranker, recipe, cutoff=cutoff, baselines=False)
    assert 0 < rows[-1].mrr <= 1
    # still blind to everything at or after the cutoff: deleting it changes no rank
    past = log.before(cutoff)
    again, _ = fit_windows(past, catalog, cutoff, recipe)
    rows2, _ = evaluate(past, catalog, trajs, again, recipe, cutoff=cutoff, baselines=False)
    assert rows[-1].ranks is not None and rows2[-1].ranks is not None
    assert np.array_equal(rows[-1].ranks, rows2[-1].ranks)


def test_leakage_controls_hold_with_the_learned_embeddings_on() -> None:
    """recommend eval --embeddings: the embeddings are fitted from each history like every other
    statistic, so deleting the rows at or after the cutoff still changes no rank."""
    catalog, log, cutoff, trajs = _world()
    recipe = _recipe()
    recipe.stats = replace(recipe.stats, embed_dim=EMBED_DIM)
    checks = leakage_checks(log, catalog, trajs, cutoff, recipe)
    assert checks["identical"] is True
    real, noise = checks["ranker"], checks["shuffled"]
    assert isinstance(real, MetricRow) and isinstance(noise, MetricRow)
    assert real.mrr > 2 * noise.mrr
