"""The ranker's training recipe: history window -> labelled candidate groups -> LightGBM.

``fit_window`` is shared by the offline evaluation and the product trainer: statistics come from
the interactions strictly before ``start``; every interaction in ``[start, end)`` becomes a query
("what does this user do next?") whose prefix is the user's earlier interactions of the same
trajectory (gap <= ``transition_gap_s``). Queries whose target was not retrieved carry no ranking
signal and are dropped; negatives are subsampled to ``max_negatives`` per query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.errors import BadRequest

from .candidates import CandidateConfig, CandidateGenerator, CandidateSet
from .data import Catalog, InteractionLog, split_trajectories
from .features import build_features
from .queries import QueryBatch
from .ranker import LambdaRanker, RankerConfig, training_groups
from .stats import HistoryStats, StatsConfig

Progress = Callable[[str, int, int], None]
"""progress(step, done, total): long steps report how far they are."""


def _quiet(step: str, done: int, total: int) -> None:
    return None


class NotEnoughData(BadRequest):
    """Too few interactions (or no retrievable targets) to train a ranker."""


@dataclass
class Recipe:
    """Everything that decides the ranker's result; tuned on the validation file only."""

    stats: StatsConfig = field(default_factory=StatsConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    train_days: float = 75.0
    train_min_prefix: int = 1
    max_negatives: int = 80
    min_groups: int = 3
    seed: int = 0


def sample_negatives(
    cs: CandidateSet, qb: QueryBatch, max_neg: int, rng: np.random.Generator
) -> CandidateSet:
    """Keep every positive and at most ``max_neg`` random negatives per query."""
    pos = cs.item == qb.target[cs.query]
    noise = rng.random(len(cs))
    noise[pos] = -1.0  # positives sort first and are always kept
    order = np.lexsort((noise, cs.query))
    q_sorted = cs.query[order]
    first = np.searchsorted(q_sorted, q_sorted, side="left")
    keep = np.sort(order[(np.arange(len(order)) - first) <= max_neg])
    query = cs.query[keep]
    sizes = np.bincount(query, minlength=len(cs.offsets) - 1)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return CandidateSet(query, cs.item[keep], cs.source[keep], offsets)


def fit_window(
    log: InteractionLog,
    catalog: Catalog,
    start: float,
    end: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> tuple[LambdaRanker, dict[str, float]]:
    """Train on queries in ``[start, end)`` with statistics of everything before ``start``."""
    stats = HistoryStats(log.before(start), catalog, start, recipe.stats)
    window = log.subset((log.ts >= start) & (log.ts < end))
    trajs = split_trajectories(window, recipe.stats.transition_gap_s)
    qb = QueryBatch.from_trajectories(trajs, last_only=False, min_prefix=recipe.train_min_prefix)
    gen = CandidateGenerator(stats, recipe.candidates)
    cs = gen.generate(qb, lambda d, t: progress("train candidates", d, t))
    recall = cs.recall(qb.target)
    cs = sample_negatives(cs, qb, recipe.max_negatives, np.random.default_rng(recipe.seed))
    progress("train features", 0, len(cs))
    x = build_features(qb, cs, stats)
    rows, y, group = training_groups(qb, cs)
    if len(group) < recipe.min_groups:
        raise NotEnoughData(f"{len(group)} usable queries; at least {recipe.min_groups} needed")
    progress("train lightgbm", 0, recipe.ranker.n_estimators)
    ranker = LambdaRanker(config=recipe.ranker).fit(x[rows], y, group)
    progress("train lightgbm", recipe.ranker.n_estimators, recipe.ranker.n_estimators)
    info = {
        "queries": float(len(qb)),
        "groups": float(len(group)),
        "rows": float(rows.sum()),
        "candidate_recall": recall,
    }
    return ranker, info
