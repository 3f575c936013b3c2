"""The ranker's training recipe: history window -> labelled candidate groups -> LightGBM.

``fit_window`` is shared by the offline evaluation and the product trainer: statistics come from
the interactions strictly before ``start``; every interaction in ``[start, end)`` becomes a query
("what does this user do next?") whose prefix is the user's earlier interactions of the same
trajectory (gap <= ``transition_gap_s``). Queries whose target was not retrieved carry no ranking
signal and are dropped; negatives are subsampled to ``max_negatives`` per query.
``fit_windows`` stacks several consecutive windows, each with the statistics before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.errors import BadRequest

from .candidates import CandidateConfig, CandidateGenerator, CandidateSet
from .data import Catalog, InteractionLog, split_trajectories
from .features import FEATURE_NAMES, build_features
from .queries import QueryBatch
from .ranker import LambdaRanker, RankerConfig, training_groups
from .stats import DAY_S, HistoryStats, StatsConfig

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
    train_days: float = 30.0  # one training window (queries); its statistics are before it
    train_windows: int = 6  # consecutive windows, newest first (fit_windows: the evaluation)
    # each training window's statistics end this long before the window starts: the age of the
    # history when the queries to answer come (the evaluation sets it from its split; 0: none)
    stats_lag_days: float = 0.0
    masked_features: tuple[str, ...] = ()  # set missing in training and scoring (ablations)
    # protocol variant (recommend eval --query-time target): every query, in training and in
    # the evaluation, is asked at its target's time instead of the last prefix event's
    query_at_target: bool = False
    shuffle_targets: bool = False  # leakage control only: train on permuted targets
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


@dataclass
class Groups:
    """Labelled training rows of one or more windows: features, 0/1 labels, query group sizes."""

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    queries: int
    recall: float


def window_groups(
    log: InteractionLog,
    catalog: Catalog,
    start: float,
    end: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> Groups:
    """Training rows of the queries in ``[start, end)``, statistics of everything before
    ``start`` less ``recipe.stats_lag_days``."""
    seen = start - recipe.stats_lag_days * DAY_S
    stats = HistoryStats(log.before(seen), catalog, seen, recipe.stats)
    window = log.subset((log.ts >= start) & (log.ts < end))
    trajs = split_trajectories(window, recipe.stats.transition_gap_s)
    qb = QueryBatch.from_trajectories(
        trajs, last_only=False, min_prefix=recipe.train_min_prefix, at_target=recipe.query_at_target
    )
    if recipe.shuffle_targets:  # nothing left to learn: the check that scores then collapse
        qb.target = np.random.default_rng(recipe.seed).permutation(qb.target)
    gen = CandidateGenerator(stats, recipe.candidates)
    cs = gen.generate(qb, lambda d, t: progress("train candidates", d, t))
    recall = cs.recall(qb.target)
    cs = sample_negatives(cs, qb, recipe.max_negatives, np.random.default_rng(recipe.seed))
    progress("train features", 0, len(cs))
    x = mask_features(build_features(qb, cs, stats), recipe.masked_features)
    rows, y, group = training_groups(qb, cs)
    return Groups(x[rows], y, group, len(qb), recall)


def mask_features(x: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """``x`` with the named columns set missing (NaN): the ablation of a feature family."""
    if not names:
        return x
    unknown = set(names) - set(FEATURE_NAMES)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}")
    x[:, [FEATURE_NAMES.index(n) for n in names]] = np.nan
    return x


def fit_groups(
    groups: list[Groups], recipe: Recipe, progress: Progress = _quiet
) -> tuple[LambdaRanker, dict[str, float]]:
    """A ranker on the rows of ``groups`` (one or more windows)."""
    group = np.concatenate([g.group for g in groups])
    if len(group) < recipe.min_groups:
        raise NotEnoughData(f"{len(group)} usable queries; at least {recipe.min_groups} needed")
    x = np.concatenate([g.x for g in groups])
    y = np.concatenate([g.y for g in groups])
    progress("train lightgbm", 0, recipe.ranker.n_estimators)
    ranker = LambdaRanker(config=recipe.ranker).fit(x, y, group)
    progress("train lightgbm", recipe.ranker.n_estimators, recipe.ranker.n_estimators)
    queries = sum(g.queries for g in groups)
    info = {
        "queries": float(queries),
        "groups": float(len(group)),
        "rows": float(len(x)),
        "candidate_recall": sum(g.recall * g.queries for g in groups) / max(queries, 1),
    }
    return ranker, info


def fit_window(
    log: InteractionLog,
    catalog: Catalog,
    start: float,
    end: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> tuple[LambdaRanker, dict[str, float]]:
    """Train on queries in ``[start, end)`` with statistics of everything before ``start``."""
    return fit_groups([window_groups(log, catalog, start, end, recipe, progress)], recipe, progress)


def fit_windows(
    log: InteractionLog,
    catalog: Catalog,
    end: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> tuple[LambdaRanker, dict[str, float]]:
    """Train on ``recipe.train_windows`` consecutive windows of ``train_days`` ending at
    ``end``, each with the statistics of everything before it (more queries, and statistics of
    every age the model will meet)."""
    return fit_groups(windows_groups(log, catalog, end, recipe, progress), recipe, progress)


def windows_groups(
    log: InteractionLog,
    catalog: Catalog,
    end: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> list[Groups]:
    """The training rows of ``fit_windows``, newest window first. Windows with no history
    before them are left out."""
    groups = []
    first = float(log.ts.min()) if len(log) else end
    for k in range(recipe.train_windows):
        hi = end - k * recipe.train_days * DAY_S
        lo = hi - recipe.train_days * DAY_S
        if lo - recipe.stats_lag_days * DAY_S <= first:
            break
        groups.append(window_groups(log, catalog, lo, hi, recipe, progress))
    if not groups:
        raise NotEnoughData("no training window has history before it")
    return groups
