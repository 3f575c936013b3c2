"""Product side of the recommender: model bundles, neighbourhood snapshots, scoring, training.

Owns:
    * ``Item`` - what the product knows of a recommendable thing (post, listing, place).
    * ``ModelBundle`` - a trained ranker with its scope (``"global"`` or an H3 cell id), version
      and the recipe it needs at serving time; ``to_bytes``/``from_bytes`` are the durable form.
    * ``Snapshot`` - statistics of a neighbourhood's recent interactions at one instant.
    * ``rank`` - score a list of candidate items for one user at one place and time.
    * ``train_scope`` / ``product_recipe`` - train a ranker from product interactions.
    * ``model_scopes`` - the fallback chain a cell looks up: cell, parent cells, global;
      ``scope_kind`` names the link that served.

Pure: no I/O. The shard loads rows (store/recommend_store.py) and calls these, in a thread when
the batch is large.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import h3
import numpy as np

from .candidates import (
    EMB,
    EMBU,
    HIST,
    NEAR,
    NEARLAST,
    POP,
    PREFIX,
    SIM,
    TRANS,
    TRANSK,
    CandidateConfig,
    CandidateSet,
    deeper_transitions,
    learned_sources,
)
from .data import Catalog, Interaction, InteractionLog, local_hour_dow
from .features import FEATURE_NAMES, build_features
from .queries import QueryBatch
from .ranker import LambdaRanker, RankerConfig
from .stats import DAY_S, HistoryStats, StatsConfig
from .training import NotEnoughData, Progress, Recipe, _quiet, fit_window

GLOBAL = "global"
NO_MODEL = "none"
_MAGIC = b"hyperlocal-model-bundle-v1\n"


@dataclass(frozen=True, slots=True)
class Item:
    """A candidate: posts use their author as ``category``; listings carry a ``price``."""

    id: str
    lat: float
    lng: float
    cell: str | None = None
    category: str | None = None
    created_s: float = math.nan
    price: float = math.nan


def tz_offset_min(lng: float) -> int:
    """Local time offset approximated from longitude (solar time, whole hours)."""
    return round(lng / 15.0) * 60 if math.isfinite(lng) else 0


def product_recipe(h3_resolution: int, k_ring: int) -> Recipe:
    """The recipe for product data: small, young catalogs (posts), every interaction a query,
    asked at that interaction's time as a served query is asked at the request's."""
    return Recipe(
        stats=StatsConfig(h3_resolution=h3_resolution, decay_half_life_days=7.0, recent_days=3.0),
        candidates=CandidateConfig(hist_k=100, near_k=300, near_rings=k_ring, pop_k=20),
        ranker=RankerConfig(n_estimators=120, min_data_in_leaf=5, num_leaves=15, num_threads=1),
        train_min_prefix=0,
        max_negatives=60,
        # a served query is asked at the request's time, the time of the action it predicts:
        # train the same way (the NYC variant --query-time target measures what that is worth)
        query_at_target=True,
    )


@dataclass
class ModelBundle:
    scope: str
    version: int
    ranker: LambdaRanker
    recipe: Recipe
    metrics: dict[str, float]

    def to_bytes(self) -> bytes:
        meta = {
            "scope": self.scope,
            "version": self.version,
            "metrics": self.metrics,
            "stats": asdict(self.recipe.stats),
            "candidates": asdict(self.recipe.candidates),
        }
        return _MAGIC + json.dumps(meta).encode() + b"\n" + self.ranker.to_bytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ModelBundle:
        if not blob.startswith(_MAGIC):
            raise ValueError("not a serialised model bundle")
        meta_line, ranker_blob = blob[len(_MAGIC) :].split(b"\n", 1)
        meta = json.loads(meta_line)
        ranker = LambdaRanker.from_bytes(ranker_blob, expect_features=FEATURE_NAMES)
        recipe = Recipe(
            stats=StatsConfig(**meta["stats"]),
            candidates=CandidateConfig(**meta["candidates"]),
            ranker=ranker.config,
        )
        return cls(meta["scope"], int(meta["version"]), ranker, recipe, dict(meta["metrics"]))


def scope_kind(scope: str, cell: str) -> str:
    """Which link of ``cell``'s fallback chain a model of ``scope`` is: ``cell``, ``parent`` or
    ``global`` (``NO_MODEL``, "none", is the answer when there was no model at all)."""
    if scope == GLOBAL:
        return GLOBAL
    return "cell" if scope == cell else "parent"


def model_scopes(cell: str, parent_levels: int = 2) -> list[str]:
    """Where a cell's model may come from, best first: the cell, its parents, global."""
    res = h3.get_resolution(cell)
    parents = [
        h3.cell_to_parent(cell, r) for r in range(res - 1, max(res - parent_levels, 0) - 1, -1)
    ]
    return [cell, *parents, GLOBAL]


def encode(items: Sequence[Item], events: Sequence[Interaction]) -> tuple[Catalog, InteractionLog]:
    """Catalog (items first, then any item only seen in events) and the encoded log."""
    catalog = Catalog()
    for it in items:
        catalog.item(it.id, it.lat, it.lng, it.category, it.cell, it.created_s, it.price)
    return catalog, InteractionLog.from_interactions(events, catalog)


ANONYMOUS = "\x00anonymous"  # a catalog user without history, stands in for unknown users


class Snapshot:
    """A neighbourhood's interaction statistics at ``now``; immutable once built (shared by
    concurrent scorers)."""

    def __init__(
        self, items: Sequence[Item], events: Sequence[Interaction], now: float, config: StatsConfig
    ) -> None:
        self.items, self.events = list(items), list(events)
        self.catalog, self.log = encode(self.items, self.events)
        self.catalog.user(ANONYMOUS)
        self.now = now
        self.config = config
        self.stats = HistoryStats(self.log, self.catalog, now, config)

    def with_items(self, items: Sequence[Item]) -> Snapshot:
        """This snapshot if it knows every item, else a new one that also has the new ones."""
        fresh = [it for it in items if self.catalog.find_item(it.id) is None]
        if not fresh:
            return self
        return Snapshot([*self.items, *fresh], self.events, self.now, self.config)


def _user_query(snap: Snapshot, user_id: str, lat: float, lng: float, now: float) -> QueryBatch:
    st, log = snap.stats, snap.log
    user = snap.catalog.find_user(user_id)
    if user is None:
        user = snap.catalog.find_user(ANONYMOUS)
        assert user is not None
    hour, dow = local_hour_dow(np.array([now]), np.array([tz_offset_min(lng)]))
    mine = (log.user == user) & (log.ts > now - st.config.transition_gap_s)
    return QueryBatch.single(
        user,
        log.item[mine].tolist(),
        log.ts[mine].tolist(),
        now,
        int(hour[0]),
        int(dow[0]),
        lat,
        lng,
    )


def _sources(
    st: HistoryStats, qb: QueryBatch, items: np.ndarray, cell: str | None, cfg: CandidateConfig
) -> np.ndarray:
    """The retrieval sources that would have proposed each given item (feature parity)."""
    src = np.zeros(len(items), dtype=np.int64)
    last, user = int(qb.last[0]), int(qb.user[0])
    pools = [
        (HIST, st.user_items(user)),
        (PREFIX, qb.prefix(0)),
        (TRANS, st.transitions_from(last)),
        (SIM, st.similar_to(last)),
        (NEAR, st.nearby(cell, cfg.near_rings, cfg.near_k)),
        (POP, st.popular[: cfg.pop_k]),
        (NEARLAST, st.nearest_to(last, cfg.near_last_k)),
        (TRANSK, deeper_transitions(st, qb.prefix(0), cfg)),
    ]
    # the learned sources propose what the others did not, as CandidateGenerator.for_query
    taken = np.unique(
        np.concatenate(
            [
                st.user_items(user)[: cfg.hist_k],
                qb.prefix(0),
                st.transitions_from(last)[: cfg.trans_k],
                st.transitions_from(int(qb.prev2[0]))[: cfg.trans2_k],
                st.similar_to(last)[: cfg.sim_k],
                *(pool for flag, pool in pools[4:]),
            ]
        ).astype(np.int64)
    )
    emb, embu = learned_sources(st, user, qb.prefix(0), taken, cfg)
    for flag, pool in (*pools, (EMB, emb), (EMBU, embu)):
        src[np.isin(items, pool)] |= flag
    return src


def rank(
    bundle: ModelBundle,
    snap: Snapshot,
    user_id: str,
    lat: float,
    lng: float,
    items: Sequence[Item],
    now: float | None = None,
) -> np.ndarray:
    """One relevance score per item, in the given order (higher is more relevant)."""
    if not items:
        return np.zeros(0)
    now = time.time() if now is None else now
    snap = snap.with_items(items)
    st = snap.stats
    qb = _user_query(snap, user_id, lat, lng, now)
    ids = np.array([snap.catalog.find_item(it.id) for it in items], dtype=np.int64)
    cs = CandidateSet(
        query=np.zeros(len(ids), dtype=np.int64),
        item=ids,
        source=_sources(st, qb, ids, st.cell_at(lat, lng), bundle.recipe.candidates),
        offsets=np.array([0, len(ids)], dtype=np.int64),
    )
    return bundle.ranker.score(build_features(qb, cs, st))


RELEVANCE_CURSOR = "r"


def relevance_cursor(offset: int) -> str:
    """The feed.get cursor of a relevance page: the offset in the ranked list."""
    return f"{RELEVANCE_CURSOR}{offset}"


def parse_relevance_cursor(token: str | None) -> int | None:
    """The offset of a relevance cursor; None if ``token`` is not one."""
    if token and token.startswith(RELEVANCE_CURSOR) and token[1:].isdigit():
        return int(token[1:])
    return None


def order_by_scores(n: int, scores: Sequence[float]) -> list[int]:
    """Positions 0..n-1 by descending score; equal scores keep their given order."""
    return sorted(range(n), key=lambda i: (-scores[i], i))


def train_scope(
    scope: str,
    items: Sequence[Item],
    events: Sequence[Interaction],
    recipe: Recipe,
    holdout: float = 0.5,
    progress: Progress = _quiet,
) -> tuple[LambdaRanker, dict[str, float]]:
    """Train one scope's ranker: the last ``holdout`` share of interactions are the queries,
    the rest is their history. Raises ``NotEnoughData`` when nothing can be learnt."""
    catalog, log = encode(items, events)
    if len(log) < 2:
        raise NotEnoughData(f"{scope}: {len(log)} interactions")
    start = float(np.quantile(log.ts, 1.0 - holdout))
    end = float(log.ts[-1]) + DAY_S
    ranker, info = fit_window(log, catalog, start, end, recipe, progress)
    info.update(interactions=float(len(log)), items=float(catalog.n_items))
    return ranker, info
