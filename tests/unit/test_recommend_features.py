"""Features of (query, candidate) pairs on small hand-made histories."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.recommend.candidates import CandidateSet
from models.recommend.data import Catalog, Interaction, InteractionLog, local_hour_dow
from models.recommend.features import FEATURE_NAMES, build_features, haversine_m, price_band
from models.recommend.queries import QueryBatch
from models.recommend.stats import HistoryStats

HERE = (40.7128, -74.0060)


def _setup() -> tuple[Catalog, HistoryStats]:
    catalog = Catalog()
    catalog.item("cafe", HERE[0], HERE[1], "food")
    catalog.item("bar", HERE[0] + 0.01, HERE[1], "food")
    catalog.item("shop", HERE[0] + 0.05, HERE[1], "retail", price=25.0)
    events = [
        Interaction("ann", "cafe", 1000.0),
        Interaction("ann", "bar", 2000.0),
        Interaction("ann", "cafe", 50_000.0),
        Interaction("ann", "bar", 51_000.0),
        Interaction("bob", "shop", 3000.0),
    ]
    log = InteractionLog.from_interactions(events, catalog)
    return catalog, HistoryStats(log, catalog, 100_000.0)


def _pairs(items: list[int]) -> CandidateSet:
    n = len(items)
    return CandidateSet(
        np.zeros(n, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.array([0, n]),
    )


def _col(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, FEATURE_NAMES.index(name)]


def test_user_counts_distance_and_transitions() -> None:
    _, stats = _setup()
    qb = QueryBatch.single(0, [0], [99_000.0], 100_000.0, 9, 1, HERE[0], HERE[1])
    x = build_features(qb, _pairs([0, 1, 2]), stats)
    assert x.shape == (3, len(FEATURE_NAMES)) and x.dtype == np.float32
    assert _col(x, "u_cnt").tolist() == [2.0, 2.0, 0.0]
    assert _col(x, "u_cat_cnt").tolist() == [4.0, 4.0, 0.0]
    assert _col(x, "is_last").tolist() == [1.0, 0.0, 0.0]
    assert _col(x, "tr_p")[1] == pytest.approx(1.0)  # cafe -> bar every time
    assert _col(x, "h3_dist")[0] == 0.0 and _col(x, "h3_dist")[2] > _col(x, "h3_dist")[1] > 0
    d_bar = haversine_m(HERE[0], HERE[1], HERE[0] + 0.01, HERE[1])
    assert math.expm1(_col(x, "dist_m_log")[1]) == pytest.approx(d_bar, rel=1e-4)
    assert 1000 < d_bar < 1200
    assert _col(x, "dist_rank").tolist() == [1.0, 2.0, 3.0]
    assert np.isnan(_col(x, "price_band")[0]) and _col(x, "price_band")[2] == 4.0
    assert _col(x, "u_last_dt_log")[0] == pytest.approx(math.log1p(50_000 / 3600), rel=1e-5)
    assert np.isnan(_col(x, "u_last_dt_log")[2])  # never visited: missing, not a sentinel


def test_a_user_without_history_or_prefix_gets_finite_or_missing_features() -> None:
    _, stats = _setup()
    qb = QueryBatch.single(1, [], [], 100_000.0, 9, 1, HERE[0], HERE[1])
    x = build_features(qb, _pairs([0, 1, 2]), stats)
    assert not np.isinf(x).any()
    assert np.isnan(_col(x, "tr_p")).all() and np.isnan(_col(x, "cf_last")).all()
    assert _col(x, "is_last").tolist() == [0.0, 0.0, 0.0]


def test_features_do_not_see_the_target() -> None:
    _, stats = _setup()
    a = QueryBatch.single(0, [0], [99_000.0], 100_000.0, 9, 1, HERE[0], HERE[1])
    b = QueryBatch.single(0, [0], [99_000.0], 100_000.0, 9, 1, HERE[0], HERE[1])
    a.target[:] = 1
    b.target[:] = 2
    assert np.array_equal(
        build_features(a, _pairs([0, 1, 2]), stats),
        build_features(b, _pairs([0, 1, 2]), stats),
        equal_nan=True,
    )


def test_time_helpers() -> None:
    hour, dow = local_hour_dow(np.array([0.0, 86400.0 * 4 + 3600 * 13]), np.array([0, -300]))
    assert hour.tolist() == [0, 8] and dow.tolist() == [3, 0]  # 1970-01-01 was a Thursday
    assert price_band(np.array([0.0, 1.0, 3.0, 7.0, np.nan]))[:4].tolist() == [0, 1, 2, 3]


def test_empty_candidate_set() -> None:
    _, stats = _setup()
    qb = QueryBatch.single(0, [0], [1.0], 2.0, 9, 1)
    assert build_features(qb, _pairs([]), stats).shape == (0, len(FEATURE_NAMES))


def test_sequence_features_follow_the_trajectory() -> None:
    """ann went cafe -> bar twice: from a prefix [bar, cafe] the bar is the decayed transition
    target, shares the last item's category, and lies straight ahead of the last step (the
    step bar -> cafe goes south, the bar is north of the cafe: drift cosine -1)."""
    _, stats = _setup()
    qb = QueryBatch.single(0, [1, 0], [98_000.0, 99_000.0], 100_000.0, 9, 1, HERE[0], HERE[1])
    x = build_features(qb, _pairs([0, 1, 2]), stats)
    assert _col(x, "seq_tr_decay")[1] == pytest.approx(1.0)  # cafe -> bar always
    assert _col(x, "seq_tr_max")[1] == pytest.approx(1.0)
    assert _col(x, "seq_gap_log")[0] == pytest.approx(math.log1p(1000 / 60), rel=1e-5)
    assert _col(x, "cat_is_last").tolist() == [1.0, 1.0, 0.0]
    assert _col(x, "cat_pre_frac").tolist() == [1.0, 1.0, 0.0]
    assert _col(x, "drift_cos")[1] == pytest.approx(-1.0, abs=1e-6)  # back where it came from
    assert _col(x, "drift_cos")[2] == pytest.approx(-1.0, abs=1e-3)  # the shop: further north
    assert np.isnan(_col(x, "drift_cos")[0])  # the cafe is where the user is: no direction
    assert math.expm1(_col(x, "step_m_log")[0]) == pytest.approx(
        haversine_m(HERE[0], HERE[1], HERE[0] + 0.01, HERE[1]), rel=1e-2
    )
    assert _col(x, "ucat_tr_p")[0] == pytest.approx(1.0)  # ann's food -> food every time


def test_the_users_time_profile_of_an_item() -> None:
    _, stats = _setup()
    qb = QueryBatch.single(0, [0], [99_000.0], 100_000.0, 0, 1, HERE[0], HERE[1])
    x = build_features(qb, _pairs([0, 1, 2]), stats)
    hours = stats.user_item_hour
    assert len(hours) > 0
    assert np.isnan(_col(x, "ui_hour_frac")[2])  # never visited: missing
    assert 0.0 <= _col(x, "ui_hour_frac")[0] <= 1.0
    assert _col(x, "ui_weekend_frac")[0] == pytest.approx(1.0)  # weekday query, weekday visits
