"""Aggregate statistics of an interaction history, the raw material of candidates and features.

Owns:
    * ``PairTable`` - an immutable sorted ``int64 key -> float columns`` map with vectorised
      lookups (missing keys -> default).  Composite keys are built with ``pair_key``.
    * ``HistoryStats`` - everything the recommender knows about the past at a cutoff time:
      popularity, user-item counts/recency, time-of-day profiles (also per user and item),
      transitions (global, per user, per category, per user and category), item-item
      co-visitation cosine similarity, user "home" locations, H3 cell buckets and popularity
      within a cell, and the learned POI embeddings of the history (``emb``,
      ``PoiEmbeddings``).

Guarantee: ``HistoryStats`` is computed from exactly the ``InteractionLog`` it is given; it
never looks at anything else, so leakage control is the caller's job (pass only the past).
"""

from __future__ import annotations

from dataclasses import dataclass

import h3
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from .data import Catalog, InteractionLog
from .embeddings import EmbeddingConfig, PoiEmbeddings

HOURS = 24
DAY_S = 86400.0
EMBED_DIM = 32  # StatsConfig.embed_dim of the learned-embedding variant


def pair_key(a: np.ndarray | int, b: np.ndarray | int, n_b: int) -> np.ndarray:
    """Composite int64 key for the pair (a, b) with ``0 <= b < n_b``."""
    return np.asarray(a, dtype=np.int64) * np.int64(n_b) + np.asarray(b, dtype=np.int64)


class PairTable:
    """Sorted unique int64 keys with one or more aligned float value columns."""

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        vals = np.asarray(values, dtype=np.float64)
        self.values = (vals[:, None] if vals.ndim == 1 else vals)[order]
        if len(self.keys) > 1 and np.any(self.keys[1:] == self.keys[:-1]):
            raise ValueError("PairTable keys must be unique; use PairTable.aggregate")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def aggregate(
        cls,
        keys: np.ndarray,
        weights: np.ndarray | None = None,
        extra_max: np.ndarray | None = None,
    ) -> PairTable:
        """Sum ``weights`` (default 1) per key; optional 2nd column = max of ``extra_max``."""
        keys = np.asarray(keys, dtype=np.int64)
        w = np.ones(len(keys)) if weights is None else np.asarray(weights, dtype=np.float64)
        uniq, inv = np.unique(keys, return_inverse=True)
        cols = [np.bincount(inv, weights=w, minlength=len(uniq))]
        if extra_max is not None:
            mx = np.full(len(uniq), -np.inf)
            np.maximum.at(mx, inv, np.asarray(extra_max, dtype=np.float64))
            cols.append(mx)
        return cls(uniq, np.column_stack(cols))

    def get(self, keys: np.ndarray, col: int = 0, default: float = 0.0) -> np.ndarray:
        """Vectorised lookup of column ``col``; missing keys give ``default``."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(self.keys) == 0:
            return np.full(keys.shape, default, dtype=np.float64)
        pos = np.searchsorted(self.keys, keys)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        found = self.keys[pos_c] == keys
        return np.where(found, self.values[pos_c, col], default)

    def rows(self, n_b: int) -> tuple[np.ndarray, np.ndarray]:
        """Decompose keys into (a, b) for keys made with ``pair_key(a, b, n_b)``."""
        return self.keys // n_b, self.keys % n_b


def top_neighbours(table: PairTable, n_b: int, n_a: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR-style (offsets, items) of the ``k`` highest-valued b for each a (ties: lower b)."""
    a, b = table.rows(n_b)
    order = np.lexsort((b, -table.values[:, 0], a))
    a_s, b_s = a[order], b[order]
    first = np.searchsorted(a_s, a_s, side="left")
    keep = (np.arange(len(a_s)) - first) < k
    a_k, b_k = a_s[keep], b_s[keep]
    offsets = np.zeros(n_a + 1, dtype=np.int64)
    np.add.at(offsets, a_k + 1, 1)
    return np.cumsum(offsets), b_k


@dataclass
class StatsConfig:
    """Knobs of ``HistoryStats`` (all have sensible defaults for check-in data)."""

    transition_gap_s: float = DAY_S  # consecutive events further apart are not a transition
    decay_half_life_days: float = 30.0
    recent_days: float = 30.0
    neighbours_k: int = 50
    h3_resolution: int = 8
    # learned POI embeddings (models/recommend/embeddings.py): dimensions and how many later
    # events of a trajectory count as flow from an item. 0, the default, fits none (their
    # features are missing, their sources propose nothing): on the NYC validation file they
    # did not add to the count features (docs/recommendation.md); `recommend eval
    # --embeddings` sets EMBED_DIM
    embed_dim: int = 0
    embed_window: int = 2


class HistoryStats:
    """All aggregates of a history log at ``now`` (the cutoff: the log is strictly before it)."""

    def __init__(
        self, log: InteractionLog, catalog: Catalog, now: float, config: StatsConfig | None = None
    ) -> None:
        self.config = cfg = config or StatsConfig()
        self.now = float(now)
        self.first_ts = float(log.ts.min()) if len(log) else self.now
        self.n_users, self.n_items = catalog.n_users, catalog.n_items
        self.n_cats = catalog.n_categories
        self.item_lat, self.item_lng = catalog.lat_array(), catalog.lng_array()
        self.item_cat = catalog.cat_array()
        u, i, w = log.user, log.item, log.weight
        nu, ni = self.n_users, self.n_items
        self.item_pop = np.bincount(i, weights=w, minlength=ni).astype(np.float64)
        recent = log.ts >= self.now - cfg.recent_days * DAY_S
        self.item_pop_recent = np.bincount(i[recent], weights=w[recent], minlength=ni)
        self.user_total = np.bincount(u, weights=w, minlength=nu).astype(np.float64)
        decay = np.power(0.5, (self.now - log.ts) / (cfg.decay_half_life_days * DAY_S))
        ui = pair_key(u, i, ni)
        self.user_item = PairTable.aggregate(ui, w, extra_max=log.ts)
        self.user_item_decay = PairTable.aggregate(ui, w * decay)
        self.item_users = np.bincount(self.user_item.rows(ni)[1], minlength=ni).astype(np.float64)
        cat = self.item_cat[i] if len(i) else np.zeros(0, dtype=np.int64)
        self.user_cat = PairTable.aggregate(pair_key(u, cat, self.n_cats), w)
        self.user_cat_hour = PairTable.aggregate(
            pair_key(pair_key(u, cat, self.n_cats), log.hour, HOURS), w
        )
        self.user_hour = PairTable.aggregate(pair_key(u, log.hour, HOURS), w)
        self.user_item_hour = PairTable.aggregate(pair_key(ui, log.hour, HOURS), w)
        weekend = log.dow >= 5
        self.user_item_weekend = PairTable.aggregate(ui[weekend], w[weekend])
        self.item_hour = np.zeros((ni, HOURS))
        np.add.at(self.item_hour, (i, log.hour), w)
        self.item_weekend = np.bincount(i[log.dow >= 5], weights=w[log.dow >= 5], minlength=ni)
        self.cat_hour = np.zeros((self.n_cats, HOURS))
        np.add.at(self.cat_hour, (cat, log.hour), w)
        self._build_transitions(log, cat)
        self._build_covisits(log)
        self._build_homes(log)
        self.emb = PoiEmbeddings.fit(
            log, nu, ni, EmbeddingConfig(cfg.embed_dim, cfg.embed_window, cfg.transition_gap_s)
        )
        self._build_cells(catalog)
        self.popular = np.lexsort((np.arange(ni), -self.item_pop))
        first = np.full(ni, np.inf)
        np.minimum.at(first, i, log.ts)
        created = np.asarray(catalog.item_created, dtype=np.float64)
        self.item_born = np.where(np.isfinite(created), created, first)  # inf: never seen
        self.item_price = np.asarray(catalog.item_price, dtype=np.float64)

    # ------------------------------------------------------------------ builders

    def _build_transitions(self, log: InteractionLog, cat: np.ndarray) -> None:
        ni, cfg = self.n_items, self.config
        order = np.lexsort((log.ts, log.user))
        u, i, t = log.user[order], log.item[order], log.ts[order]
        ok = (u[1:] == u[:-1]) & (np.diff(t) <= cfg.transition_gap_s)
        src, dst, usr = i[:-1][ok], i[1:][ok], u[1:][ok]
        self.trans = PairTable.aggregate(pair_key(src, dst, ni))
        self.trans_out = np.bincount(src, minlength=ni).astype(np.float64)
        self.trans_in = np.bincount(dst, minlength=ni).astype(np.float64)
        self.user_trans = PairTable.aggregate(pair_key(pair_key(usr, src, ni), dst, ni))
        c = cat[order] if len(cat) else cat
        nc = self.n_cats
        c_src, c_dst = c[:-1][ok], c[1:][ok]
        self.user_cat_trans = PairTable.aggregate(pair_key(pair_key(usr, c_src, nc), c_dst, nc))
        self.user_cat_trans_out = PairTable.aggregate(pair_key(usr, c_src, nc))
        self.cat_trans = np.zeros((nc, nc))
        if len(c) > 1:
            np.add.at(self.cat_trans, (c[:-1][ok], c[1:][ok]), 1.0)
        self.cat_trans_out = self.cat_trans.sum(axis=1)
        self.trans_offsets, self.trans_items = top_neighbours(self.trans, ni, ni, cfg.neighbours_k)

    def _build_covisits(self, log: InteractionLog) -> None:
        """Item-item cosine similarity over binary user-item incidence."""
        ni, nu = self.n_items, self.n_users
        users, items = self.user_item.rows(ni)
        inc = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(nu, ni))
        co = (inc.T @ inc).tocoo()
        deg = np.asarray(inc.sum(axis=0)).ravel()
        off = co.row != co.col
        r, c = co.row[off], co.col[off]
        sim = co.data[off] / np.sqrt(np.maximum(deg[r] * deg[c], 1.0))
        self.item_sim = PairTable(pair_key(r, c, ni), sim)
        self.sim_offsets, self.sim_items = top_neighbours(
            self.item_sim, ni, ni, self.config.neighbours_k
        )
        # user profile score: sum_j log1p(count_uj) * sim(j, c), normalised by profile mass
        weights = np.log1p(self.user_item.values[:, 0])
        prof = sp.csr_matrix((weights, (users, items)), shape=(nu, ni))
        simm = sp.csr_matrix((sim, (r, c)), shape=(ni, ni))
        ucf = (prof @ simm).tocoo()
        mass = np.maximum(np.asarray(prof.sum(axis=1)).ravel(), 1e-9)
        self.user_cf = PairTable(pair_key(ucf.row, ucf.col, ni), ucf.data / mass[ucf.row])

    def _build_homes(self, log: InteractionLog) -> None:
        nu = self.n_users
        self.home_lat = np.full(nu, np.nan)
        self.home_lng = np.full(nu, np.nan)
        if not len(log):
            return
        lat, lng = self.item_lat[log.item], self.item_lng[log.item]
        order = np.argsort(log.user, kind="stable")
        users, starts = np.unique(log.user[order], return_index=True)
        for u, s, e in zip(users, starts, np.append(starts[1:], len(order)), strict=True):
            idx = order[s:e]
            self.home_lat[u] = np.nanmedian(lat[idx])
            self.home_lng[u] = np.nanmedian(lng[idx])

    def _build_near(self) -> None:
        """A k-d tree of the located items in local equirectangular metres (``nearest_to``);
        built here, so a snapshot shared by concurrent scorers is never written to."""
        self._located = np.isfinite(self.item_lat) & np.isfinite(self.item_lng)
        self._near_ids = np.flatnonzero(self._located)
        self._lat0 = float(np.mean(self.item_lat[self._near_ids])) if len(self._near_ids) else 0.0
        self._near_tree = cKDTree(self._metres(self._near_ids)) if len(self._near_ids) else None

    def _build_cells(self, catalog: Catalog) -> None:
        """Bucket items with a cell (given, or from their coordinates) most popular first."""
        res = self.config.h3_resolution
        self.cell_items: dict[str, np.ndarray] = {}
        self.item_h3: list[str | None] = [None] * self.n_items
        self._ij_origin: str | None = None
        self._ij_cache: dict[str, tuple[float, float]] = {}
        self._item_ij: np.ndarray | None = None
        self._build_near()
        buckets: dict[str, list[int]] = {}
        for idx in range(self.n_items):
            cell = catalog.item_cell[idx]
            if cell is None or h3.get_resolution(cell) != res:
                la, lo = self.item_lat[idx], self.item_lng[idx]
                if np.isnan(la) or np.isnan(lo):
                    continue
                cell = h3.latlng_to_cell(float(la), float(lo), res)
            self.item_h3[idx] = cell
            buckets.setdefault(cell, []).append(idx)
        self.item_cell_share = np.zeros(self.n_items)
        for cell, members in buckets.items():
            arr = np.asarray(members, dtype=np.int64)
            self.cell_items[cell] = arr[np.lexsort((arr, -self.item_pop[arr]))]
            self.item_cell_share[arr] = self.item_pop[arr] / max(self.item_pop[arr].sum(), 1.0)

    # ------------------------------------------------------------------ accessors

    def item_cells(self, items: np.ndarray) -> list[str | None]:
        return [self.item_h3[int(i)] if i >= 0 else None for i in items]

    def transitions_from(self, item: int) -> np.ndarray:
        """Most frequent next items after ``item`` (up to ``neighbours_k``)."""
        if item < 0:
            return np.zeros(0, dtype=np.int64)
        return self.trans_items[self.trans_offsets[item] : self.trans_offsets[item + 1]]

    def nearest_to(self, item: int, k: int) -> np.ndarray:
        """The ``k`` items nearest to ``item`` in metres (itself excluded, nearest first; none
        for an unknown item or one without a location)."""
        if item < 0 or k <= 0 or self._near_tree is None or not self._located[item]:
            return np.zeros(0, dtype=np.int64)
        got = min(k + 1, len(self._near_ids))
        _, idx = self._near_tree.query(self._metres(np.array([item])), k=got)
        found = self._near_ids[np.atleast_1d(idx.ravel())]
        return found[found != item][:k].astype(np.int64)

    def _metres(self, items: np.ndarray) -> np.ndarray:
        """(x, y) metres of items in one local frame (a neighbourhood or a city is small)."""
        x = self.item_lng[items] * np.cos(np.radians(self._lat0)) * 111_195.0
        return np.column_stack([x, self.item_lat[items] * 111_195.0])

    def similar_to(self, item: int) -> np.ndarray:
        """Most co-visited items of ``item`` by cosine similarity (up to ``neighbours_k``)."""
        if item < 0:
            return np.zeros(0, dtype=np.int64)
        return self.sim_items[self.sim_offsets[item] : self.sim_offsets[item + 1]]

    def user_items(self, user: int) -> np.ndarray:
        """Items the user interacted with, most interacted first."""
        lo, hi = np.searchsorted(
            self.user_item.keys, [user * self.n_items, (user + 1) * self.n_items]
        )
        items = self.user_item.keys[lo:hi] - user * self.n_items
        counts = self.user_item.values[lo:hi, 0]
        return items[np.lexsort((items, -counts))]

    def nearby(self, cell: str | None, rings: int, limit: int) -> np.ndarray:
        """Most popular items in the H3 disk of ``rings`` around ``cell``."""
        if cell is None:
            return np.zeros(0, dtype=np.int64)
        parts = [self.cell_items[c] for c in h3.grid_disk(cell, rings) if c in self.cell_items]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        cand = np.concatenate(parts)
        return cand[np.lexsort((cand, -self.item_pop[cand]))][:limit]

    def cell_ij(self, cells: list[str | None]) -> np.ndarray:
        """``(len(cells), 2)`` local IJ coordinates of cells in one frame (NaN where unknown).

        The frame is anchored at the first cell ever asked about; in it the hex distance of two
        cells is exact (see ``grid_distance``). Cells the frame cannot reach (far away, across
        a pentagon) get NaN.
        """
        for cell in {c for c in cells if c is not None} - self._ij_cache.keys():
            if self._ij_origin is None:
                self._ij_origin = cell
            try:
                ij = h3.cell_to_local_ij(self._ij_origin, cell)
                self._ij_cache[cell] = (float(ij[0]), float(ij[1]))
            except (h3.H3BaseException, ValueError):
                self._ij_cache[cell] = (np.nan, np.nan)
        none = (np.nan, np.nan)
        out = np.array([self._ij_cache[c] if c is not None else none for c in cells], dtype=float)
        return out.reshape(len(cells), 2)

    def item_ij(self) -> np.ndarray:
        """``cell_ij`` of every item's cell, computed once."""
        if self._item_ij is None:
            self._item_ij = self.cell_ij(self.item_h3)
        return self._item_ij

    @staticmethod
    def grid_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """H3 grid distance between rows of two ``cell_ij`` arrays (NaN where unknown)."""
        di, dj = a[:, 0] - b[:, 0], a[:, 1] - b[:, 1]
        m = np.minimum(np.minimum(di, dj), 0.0)
        return np.maximum(np.maximum(di - m, dj - m), -m)

    def cell_at(self, lat: float, lng: float) -> str | None:
        """The H3 cell of a location at this snapshot's resolution (None if unknown)."""
        if not (np.isfinite(lat) and np.isfinite(lng)):
            return None
        return str(h3.latlng_to_cell(float(lat), float(lng), self.config.h3_resolution))
