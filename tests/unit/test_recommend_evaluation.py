"""The offline evaluation's honesty checks: bootstrap intervals and the paired lead."""

from __future__ import annotations

import numpy as np
import pytest

from models.recommend.metrics import bootstrap_ci, paired_diff_ci, summarize


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
