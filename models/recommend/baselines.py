"""Baseline scorers over the whole catalog, for the evaluation table.

Each scorer maps one query to a score per item (higher is better, ``-inf`` for "never"); the
evaluation turns scores into the target's rank with ``metrics.rank_of_target`` and a global
popularity tie-break, so a baseline that has no opinion about an item falls back to MostPop.

    MostPop       global popularity in the history
    UserPop       the user's own visit counts (history + the current trajectory's prefix)
    Nearest       distance from the previous check-in (the last prefix item), nearest first
    ItemCF        item-item co-visitation cosine from the prefix (recency weighted) plus the
                  user's history profile
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .features import haversine_m
from .queries import QueryBatch
from .stats import HistoryStats

Scorer = Callable[[QueryBatch, int], np.ndarray]


def most_pop(st: HistoryStats) -> Scorer:
    def score(qb: QueryBatch, q: int) -> np.ndarray:
        return st.item_pop

    return score


def user_pop(st: HistoryStats) -> Scorer:
    def score(qb: QueryBatch, q: int) -> np.ndarray:
        user = int(qb.user[q])
        out = np.zeros(st.n_items)
        items = st.user_items(user)
        keys = user * st.n_items + items
        out[items] = st.user_item.get(keys)
        np.add.at(out, qb.prefix(q), 1.0)
        return out

    return score


def nearest(st: HistoryStats) -> Scorer:
    seen = st.item_pop > 0

    def score(qb: QueryBatch, q: int) -> np.ndarray:
        last = int(qb.last[q])
        if last < 0:
            return np.zeros(st.n_items)
        d = haversine_m(st.item_lat[last], st.item_lng[last], st.item_lat, st.item_lng)
        return np.where(seen & np.isfinite(d), -d, -np.inf)

    return score


def item_cf(st: HistoryStats, window: int = 5, decay: float = 0.7) -> Scorer:
    def score(qb: QueryBatch, q: int) -> np.ndarray:
        out = np.zeros(st.n_items)
        prefix = qb.prefix(q)[-window:][::-1]
        for k, item in enumerate(prefix):
            neigh = st.similar_to(int(item))
            out[neigh] += decay**k * st.item_sim.get(item * st.n_items + neigh)
        user = int(qb.user[q])
        items = np.arange(st.n_items)
        out += 0.5 * st.user_cf.get(user * st.n_items + items)
        return out

    return score


BASELINES: dict[str, Callable[[HistoryStats], Scorer]] = {
    "MostPop": most_pop,
    "UserPop": user_pop,
    "Nearest": nearest,
    "ItemCF": item_cf,
}
