"""Candidate generation: a few hundred plausible items per query out of the whole catalog.

Owns ``CandidateGenerator`` (the union of several cheap retrieval sources) and
``CandidateSet`` (the flat (query, item, source-bitmask) pairs it returns).

Sources (bit flags in ``CandidateSet.source``):
    HIST   the user's own history, most interacted first (capped)
    PREFIX items already in the current trajectory
    TRANS  most frequent global transitions from the last item
    TRANS2 transitions from the second-to-last item
    SIM    co-visitation neighbours (item-item CF) of the last item
    NEAR   most popular items in the H3 disk (cell + k-ring) around the user's location
    POP    globally most popular items
    NEARLAST the items nearest (in metres) to the trajectory's last item, whatever their
           popularity: the next stop is often next door
    TRANSK transitions from the 3rd to the ``transk_depth``-th last items of the trajectory
    EMB    the learned retriever: the items the trajectory-flow embeddings of the prefix's last
           ``emb_depth`` items (halving weights) point to most, that no source above proposed
    EMBU   the items with the highest user-item embedding score for the user, likewise new

Guarantees: each (query, item) pair appears once; candidates never depend on the target; an item
is a candidate only if it existed at query time (created, or first seen, at or before it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .queries import QueryBatch
from .stats import HistoryStats

HIST, PREFIX, TRANS, TRANS2, SIM, NEAR, POP, NEARLAST, TRANSK = (1 << k for k in range(9))
EMB, EMBU = 1 << 9, 1 << 10
SOURCE_NAMES = {
    HIST: "hist",
    PREFIX: "prefix",
    TRANS: "trans",
    TRANS2: "trans2",
    SIM: "sim",
    NEAR: "near",
    POP: "pop",
    NEARLAST: "near_last",
    TRANSK: "trans_k",
    EMB: "emb_flow",
    EMBU: "emb_user",
}


@dataclass
class CandidateConfig:
    """How many items each source contributes."""

    hist_k: int = 150
    trans_k: int = 40
    trans2_k: int = 15
    sim_k: int = 25
    near_k: int = 30
    near_rings: int = 1
    pop_k: int = 20
    near_last_k: int = 40
    transk_k: int = 20
    transk_depth: int = 5
    emb_k: int = 30
    emb_user_k: int = 20
    emb_depth: int = 5


@dataclass
class CandidateSet:
    """Flat candidate pairs; ``offsets[q]:offsets[q+1]`` are query q's rows."""

    query: np.ndarray
    item: np.ndarray
    source: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.item)

    def items_of(self, q: int) -> np.ndarray:
        return self.item[self.offsets[q] : self.offsets[q + 1]]

    def contains_target(self, target: np.ndarray) -> np.ndarray:
        """Per query: is ``target[q]`` among its candidates."""
        hit = np.zeros(len(self.offsets) - 1, dtype=bool)
        rows = self.item == target[self.query]
        hit[self.query[rows]] = True
        return hit

    def recall(self, target: np.ndarray) -> float:
        return float(np.mean(self.contains_target(target))) if len(target) else 0.0

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def deeper_transitions(st: HistoryStats, prefix: np.ndarray, cfg: CandidateConfig) -> np.ndarray:
    """Top transitions from the 3rd to the ``transk_depth``-th last items of a prefix."""
    deeper = prefix[max(len(prefix) - cfg.transk_depth, 0) : max(len(prefix) - 2, 0)]
    parts = [st.transitions_from(int(i))[: cfg.transk_k] for i in deeper]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def flow_context(st: HistoryStats, prefix: np.ndarray, depth: int) -> np.ndarray:
    """The prefix's flow context: out-vectors of its last ``depth`` items, halving weights
    from the last one back."""
    recent = prefix[max(len(prefix) - depth, 0) :][::-1]
    recent = recent[recent >= 0]
    weights = 0.5 ** np.arange(len(recent), dtype=np.float64)
    return st.emb.flow_context(recent, weights).sum(axis=0)


def learned_sources(
    st: HistoryStats, user: int, prefix: np.ndarray, taken: np.ndarray, cfg: CandidateConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(EMB, EMBU) items of a query: the first ``emb_k`` of the flow ranking and the first
    ``emb_user_k`` of the user ranking that are not in ``taken`` (what the other sources
    proposed), so the learned retriever spends its budget on places the counts did not."""
    flow = st.emb.flow_ranking(flow_context(st, prefix, cfg.emb_depth), cfg.emb_k + len(taken))
    flow = flow[~np.isin(flow, taken)][: cfg.emb_k]
    users = st.emb.user_ranking(user, cfg.emb_user_k + len(taken) + len(flow))
    users = users[~np.isin(users, taken) & ~np.isin(users, flow)][: cfg.emb_user_k]
    return flow, users


class CandidateGenerator:
    """Union of retrieval sources over one ``HistoryStats`` snapshot."""

    def __init__(self, stats: HistoryStats, config: CandidateConfig | None = None) -> None:
        self.stats = stats
        self.config = config or CandidateConfig()
        self._pop = stats.popular[: self.config.pop_k]
        self._user_cache: dict[int, np.ndarray] = {}
        self._near_cache: dict[str | None, np.ndarray] = {}

    def _user_items(self, user: int) -> np.ndarray:
        got = self._user_cache.get(user)
        if got is None:
            got = self._user_cache[user] = self.stats.user_items(user)[: self.config.hist_k]
        return got

    def _near(self, cell: str | None) -> np.ndarray:
        got = self._near_cache.get(cell)
        if got is None:
            cfg = self.config
            got = self._near_cache[cell] = self.stats.nearby(cell, cfg.near_rings, cfg.near_k)
        return got

    def for_query(
        self, queries: QueryBatch, q: int, cell: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(items, source bitmask) of one query located in ``cell``, items sorted ascending."""
        cfg, st = self.config, self.stats
        last, prev2 = int(queries.last[q]), int(queries.prev2[q])
        parts = [
            (self._user_items(int(queries.user[q])), HIST),
            (queries.prefix(q), PREFIX),
            (st.transitions_from(last)[: cfg.trans_k], TRANS),
            (st.transitions_from(prev2)[: cfg.trans2_k], TRANS2),
            (st.similar_to(last)[: cfg.sim_k], SIM),
            (self._near(cell), NEAR),
            (self._pop, POP),
            (st.nearest_to(last, cfg.near_last_k), NEARLAST),
            (deeper_transitions(st, queries.prefix(q), cfg), TRANSK),
        ]
        taken = np.unique(np.concatenate([p for p, _ in parts]).astype(np.int64))
        emb, embu = learned_sources(st, int(queries.user[q]), queries.prefix(q), taken, cfg)
        parts += [(emb, EMB), (embu, EMBU)]
        items = np.concatenate([p for p, _ in parts]).astype(np.int64)
        flags = np.concatenate([np.full(len(p), f, dtype=np.int64) for p, f in parts])
        alive = (st.item_born[items] <= queries.ts[q]) | (flags == PREFIX)
        items, flags = items[alive], flags[alive]
        uniq, inv = np.unique(items, return_inverse=True)
        src = np.zeros(len(uniq), dtype=np.int64)
        np.bitwise_or.at(src, inv, flags)
        return uniq, src

    def generate(
        self, queries: QueryBatch, progress: Callable[[int, int], None] | None = None
    ) -> CandidateSet:
        """Candidates of every query; ``progress(done, total)`` is called now and then."""
        items: list[np.ndarray] = []
        sources: list[np.ndarray] = []
        lat, lng = queries.locations(
            self.stats.item_lat, self.stats.item_lng, self.stats.home_lat, self.stats.home_lng
        )
        for q in range(len(queries)):
            if progress is not None and q % 2000 == 0:
                progress(q, len(queries))
            it, src = self.for_query(queries, q, self.stats.cell_at(lat[q], lng[q]))
            items.append(it)
            sources.append(src)
        sizes = np.array([len(x) for x in items], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return CandidateSet(
            query=np.repeat(np.arange(len(queries), dtype=np.int64), sizes),
            item=np.concatenate(items) if items else np.zeros(0, dtype=np.int64),
            source=np.concatenate(sources) if sources else np.zeros(0, dtype=np.int64),
            offsets=offsets,
        )
