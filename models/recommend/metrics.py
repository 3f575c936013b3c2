"""Ranking metrics for next-item prediction with one relevant item per query.

Owns the conversion "scores over all items -> rank of the target" and the metric formulas:
Acc@K (hit rate), MRR and NDCG@10.  Ranks are 1-based.

Tie rule (deterministic, never in the target's favour by construction): items are ordered by
score descending; equal scores are ordered by a caller-supplied tie-break key descending
(global popularity in the evaluation), then by item id ascending.  Items without a finite
score (``-inf``) are placed after every finite-scored item in the same tie-break order, which
is how "not in the candidate set" is scored.

Uncertainty: ``bootstrap_ci`` resamples the queries (percentile bootstrap, fixed seed) to give a
95 % interval per metric; ``paired_diff_ci`` resamples the same queries for two models, the
interval of their difference (the one that says whether a lead is beyond the noise).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
METRICS: tuple[str, ...] = ("acc1", "acc5", "acc10", "mrr", "ndcg10")
BOOTSTRAP_SAMPLES = 1000


def rank_of_target(scores: np.ndarray, target: int, tie_break: np.ndarray | None = None) -> int:
    """1-based rank of ``target`` when all items are sorted by ``scores`` (see module tie rule)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if not 0 <= target < n:
        raise ValueError(f"target {target} outside 0..{n - 1}")
    tb = np.zeros(n) if tie_break is None else np.asarray(tie_break, dtype=np.float64)
    s_t, b_t = scores[target], tb[target]
    ids = np.arange(n)
    ahead = (scores > s_t) | ((scores == s_t) & ((tb > b_t) | ((tb == b_t) & (ids < target))))
    return int(ahead.sum()) + 1


def top_k(scores: np.ndarray, k: int, tie_break: np.ndarray | None = None) -> np.ndarray:
    """Ids of the ``k`` best items under the same ordering as ``rank_of_target``."""
    scores = np.asarray(scores, dtype=np.float64)
    tb = np.zeros(len(scores)) if tie_break is None else np.asarray(tie_break, dtype=np.float64)
    order = np.lexsort((np.arange(len(scores)), -tb, -scores))
    return order[:k]


def acc_at_k(ranks: Sequence[int] | np.ndarray, k: int) -> float:
    r = np.asarray(ranks)
    return float(np.mean(r <= k)) if len(r) else 0.0


def mrr(ranks: Sequence[int] | np.ndarray) -> float:
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(1.0 / r)) if len(r) else 0.0


def ndcg_at_k(ranks: Sequence[int] | np.ndarray, k: int = 10) -> float:
    """NDCG@k with a single relevant item: 1/log2(rank+1) if rank <= k else 0 (ideal DCG = 1)."""
    r = np.asarray(ranks, dtype=np.float64)
    if not len(r):
        return 0.0
    gains = np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)
    return float(np.mean(gains))


@dataclass(frozen=True)
class MetricRow:
    """One line of the result table."""

    name: str
    n: int
    acc1: float
    acc5: float
    acc10: float
    mrr: float
    ndcg10: float
    ranks: np.ndarray | None = field(default=None, compare=False, repr=False)

    def format(self) -> str:
        return (
            f"{self.name} Acc@1={self.acc1:.4f} Acc@5={self.acc5:.4f} Acc@10={self.acc10:.4f} "
            f"MRR={self.mrr:.4f} NDCG@10={self.ndcg10:.4f} n={self.n}"
        )

    def format_short(self) -> str:
        """The exact ``<name> Acc@1=.. Acc@5=.. Acc@10=.. MRR=..`` line format."""
        return (
            f"{self.name} Acc@1={self.acc1:.4f} Acc@5={self.acc5:.4f} "
            f"Acc@10={self.acc10:.4f} MRR={self.mrr:.4f}"
        )


def summarize(name: str, ranks: Iterable[int]) -> MetricRow:
    r = np.fromiter(ranks, dtype=np.int64)
    return MetricRow(
        name=name,
        n=len(r),
        acc1=acc_at_k(r, 1),
        acc5=acc_at_k(r, 5),
        acc10=acc_at_k(r, 10),
        mrr=mrr(r),
        ndcg10=ndcg_at_k(r, 10),
        ranks=r,
    )


def _per_query(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric as a per-query value whose mean is the metric."""
    r = np.asarray(ranks, dtype=np.float64)
    return {
        "acc1": (r <= 1).astype(np.float64),
        "acc5": (r <= 5).astype(np.float64),
        "acc10": (r <= 10).astype(np.float64),
        "mrr": 1.0 / r,
        "ndcg10": np.where(r <= 10, 1.0 / np.log2(r + 1.0), 0.0),
    }


def _resample_means(
    values: dict[str, np.ndarray], n: int, samples: int, seed: int, level: float
) -> dict[str, tuple[float, float]]:
    idx = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    lo, hi = (1.0 - level) / 2.0 * 100.0, (1.0 + level) / 2.0 * 100.0
    out = {}
    for name, v in values.items():
        means = v[idx].mean(axis=1)
        out[name] = (float(np.percentile(means, lo)), float(np.percentile(means, hi)))
    return out


def bootstrap_ci(
    ranks: Sequence[int] | np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap interval of every metric (``METRICS`` keys) over the queries."""
    r = np.asarray(ranks)
    if not len(r):
        return {m: (0.0, 0.0) for m in METRICS}
    return _resample_means(_per_query(r), len(r), samples, seed, level)


def paired_diff_ci(
    ranks_a: Sequence[int] | np.ndarray,
    ranks_b: Sequence[int] | np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Interval of ``metric(a) - metric(b)`` when both models answer the same queries, in the
    same order (paired bootstrap: one resample of the queries scores both)."""
    a, b = np.asarray(ranks_a), np.asarray(ranks_b)
    if len(a) != len(b):
        raise ValueError("paired ranks must answer the same queries")
    if not len(a):
        return {m: (0.0, 0.0) for m in METRICS}
    pa, pb = _per_query(a), _per_query(b)
    return _resample_means({m: pa[m] - pb[m] for m in METRICS}, len(a), samples, seed, level)
