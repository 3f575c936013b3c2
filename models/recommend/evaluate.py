"""The offline next-POI evaluation (GETNext protocol) and the ranker's training recipe.

Protocol (Yang et al., GETNext, SIGIR'22, ``top_k_acc_last_timestep``): one query per evaluation
trajectory with at least two inputs; the target is its LAST check-in, the inputs are the ones
before it; every POI of the catalog is ranked, and Acc@1/5/10, MRR and NDCG@10 are averaged.

Leakage control, in one place:
    * the history a split is scored with holds only check-ins strictly before the split's first
      check-in (``cutoff``); the evaluation trajectories are never part of it, so the target and
      everything after it are unseen; the prefix is the only view of the trajectory;
    * the ranker is trained on trajectories of the ``train_windows`` windows of ``train_days``
      before ``cutoff``, each with statistics of the history before that window (the same
      shape as at evaluation);
    * ties are broken by global popularity, then item id: never in the target's favour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .baselines import BASELINES
from .candidates import CandidateGenerator, CandidateSet
from .data import Catalog, InteractionLog, Trajectory
from .features import FEATURE_FAMILIES, build_features
from .metrics import MetricRow, rank_of_target, summarize
from .queries import QueryBatch
from .ranker import LambdaRanker
from .stats import HistoryStats, StatsConfig
from .training import (
    Progress,
    Recipe,
    _quiet,
    fit_groups,
    fit_windows,
    mask_features,
    windows_groups,
)


def protocol_queries(
    trajs: Sequence[Trajectory], min_inputs: int = 2, at_target: bool = False
) -> QueryBatch:
    """GETNext queries: the last check-in of trajectories with ``min_inputs`` or more before it,
    keeping only known users and target POIs (GETNext drops unseen ones). ``at_target``: asked
    at the target's time (a labelled protocol variant, ``QueryBatch.from_trajectories``)."""
    keep = [t for t in trajs if len(t) >= min_inputs + 1 and t.user >= 0 and t.items[-1] >= 0]
    for t in keep:  # an unknown prefix POI cannot be looked up; drop it from the input
        ok = t.items >= 0
        if not ok.all():
            t.items, t.ts, t.hour, t.dow = t.items[ok], t.ts[ok], t.hour[ok], t.dow[ok]
    return QueryBatch.from_trajectories(
        [t for t in keep if len(t) >= 2], last_only=True, at_target=at_target
    )


def history_stats(
    log: InteractionLog, catalog: Catalog, cutoff: float, config: StatsConfig
) -> HistoryStats:
    """Statistics of everything strictly before ``cutoff``."""
    return HistoryStats(log.before(cutoff), catalog, cutoff, config)


def train_ranker(
    log: InteractionLog,
    catalog: Catalog,
    cutoff: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> tuple[LambdaRanker, dict[str, float]]:
    """Train on the ``train_windows`` windows of ``train_days`` before ``cutoff``; each window's
    history is what came before it."""
    return fit_windows(log, catalog, cutoff, recipe, progress)


def evaluate(
    log: InteractionLog,
    catalog: Catalog,
    trajs: Sequence[Trajectory],
    ranker: LambdaRanker | None,
    recipe: Recipe,
    progress: Progress = _quiet,
    cutoff: float | None = None,
    baselines: bool = True,
) -> tuple[list[MetricRow], dict[str, float]]:
    """Metric rows (baselines unless not asked for, then ``ranker``) on the last check-in of
    ``trajs``.

    The history is everything before ``cutoff``, at most the first check-in of ``trajs``.
    """
    qb = protocol_queries(trajs, at_target=recipe.query_at_target)
    first = float(min(t.ts[0] for t in trajs))
    cutoff = first if cutoff is None else min(cutoff, first)
    stats = history_stats(log, catalog, cutoff, recipe.stats)
    tie = stats.item_pop
    rows: list[MetricRow] = []
    for name, make in BASELINES.items() if baselines else ():
        scorer = make(stats)
        ranks = [rank_of_target(scorer(qb, q), int(qb.target[q]), tie) for q in range(len(qb))]
        rows.append(summarize(name, ranks))
        progress(f"baseline {name}", len(rows), len(BASELINES))
    gen = CandidateGenerator(stats, recipe.candidates)
    cs = gen.generate(qb, lambda d, t: progress("eval candidates", d, t))
    info = {
        "queries": float(len(qb)),
        "candidate_recall": cs.recall(qb.target),
        "mean_candidates": float(np.mean(cs.sizes())) if len(qb) else 0.0,
    }
    if ranker is not None:
        scores = ranker.score(mask_features(build_features(qb, cs, stats), recipe.masked_features))
        rows.append(summarize("ranker", _candidate_ranks(qb, cs, scores, tie)))
    return rows, info


def _candidate_ranks(
    qb: QueryBatch, cs: CandidateSet, scores: np.ndarray, tie: np.ndarray
) -> list[int]:
    """Ranks over the whole catalog: candidates by score, every other item after them."""
    ranks = []
    full = np.full(len(tie), -np.inf)
    for q in range(len(qb)):
        lo, hi = cs.offsets[q], cs.offsets[q + 1]
        full[cs.item[lo:hi]] = scores[lo:hi]
        ranks.append(rank_of_target(full, int(qb.target[q]), tie))
        full[cs.item[lo:hi]] = -np.inf
    return ranks


def ablation(
    log: InteractionLog,
    catalog: Catalog,
    trajs: Sequence[Trajectory],
    cutoff: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> list[tuple[str, MetricRow]]:
    """The ranker with every feature, then retrained and scored without each feature family in
    turn (its columns missing in training and scoring): what each family adds. The training
    rows and the evaluation's candidates are built once; only LightGBM runs per family."""
    groups = windows_groups(log, catalog, cutoff, recipe, progress)
    qb = protocol_queries(trajs, at_target=recipe.query_at_target)
    stats = history_stats(
        log, catalog, min(cutoff, float(min(t.ts[0] for t in trajs))), recipe.stats
    )
    cs = CandidateGenerator(stats, recipe.candidates).generate(qb)
    x = build_features(qb, cs, stats)
    out = []
    for family, names in [("all features", ()), *FEATURE_FAMILIES.items()]:
        r = replace(recipe, masked_features=tuple(names))
        masked = [replace(g, x=mask_features(g.x.copy(), r.masked_features)) for g in groups]
        ranker, _ = fit_groups(masked, r, progress)
        scores = ranker.score(mask_features(x.copy(), r.masked_features))
        row = summarize("ranker", _candidate_ranks(qb, cs, scores, stats.item_pop))
        out.append((family if not names else f"- {family}", row))
        progress("ablation", len(out), len(FEATURE_FAMILIES) + 1)
    return out


def leakage_checks(
    log: InteractionLog,
    catalog: Catalog,
    trajs: Sequence[Trajectory],
    cutoff: float,
    recipe: Recipe,
    progress: Progress = _quiet,
) -> dict[str, MetricRow | bool]:
    """The two leakage controls, run for real: the ranker retrained and scored on a log with
    every row at or after ``cutoff`` deleted must rank every query exactly as before
    (``identical``); a ranker trained on shuffled targets must collapse (``shuffled``, to set
    against ``MostPop``)."""
    ranker, _ = train_ranker(log, catalog, cutoff, recipe, progress)
    rows, _ = evaluate(log, catalog, trajs, ranker, recipe, progress, cutoff)
    past = log.before(cutoff)
    again, _ = train_ranker(past, catalog, cutoff, recipe, progress)
    rows2, _ = evaluate(past, catalog, trajs, again, recipe, progress, cutoff)
    noise_recipe = replace(recipe, shuffle_targets=True)
    noise, _ = train_ranker(log, catalog, cutoff, noise_recipe, progress)
    shuffled, _ = evaluate(log, catalog, trajs, noise, noise_recipe, progress, cutoff, False)
    same = all(
        a == b and a.ranks is not None and b.ranks is not None and np.array_equal(a.ranks, b.ranks)
        for a, b in zip(rows, rows2, strict=True)
    )
    most_pop = next(r for r in rows if r.name == "MostPop")
    return {
        "identical": same,
        "ranker": rows[-1],
        "truncated": rows2[-1],
        "shuffled": shuffled[-1],
        "MostPop": most_pop,
    }
