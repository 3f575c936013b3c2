"""Feature builder for (query, candidate item) pairs.

Owns ``FEATURE_NAMES`` (the fixed column order a trained model expects) and ``build_features``,
which turns a ``QueryBatch`` + ``CandidateSet`` + ``HistoryStats`` into a float32 matrix.

Guarantees:
    * uses only the history snapshot and each query's own prefix (never the target);
    * vectorised over all pairs, row order identical to the ``CandidateSet``;
    * missing/undefined values are ``NaN`` (LightGBM treats them as missing), never sentinels.

Feature groups: user-item affinity (counts, decayed counts, recency), trajectory prefix,
category/time-of-day/day-of-week affinity, transitions (global, second order, per user, reverse,
category), distance (H3 grid distance and metres to the user's location, to the previous event
and to the user's home), popularity (global, recent, within the cell), item-item CF, item age
and price band (listings).
"""

from __future__ import annotations

import numpy as np

from .candidates import (
    EMB,
    EMBU,
    HIST,
    NEAR,
    NEARLAST,
    POP,
    SIM,
    TRANS,
    TRANSK,
    CandidateSet,
)
from .queries import QueryBatch
from .stats import DAY_S, HOURS, HistoryStats, PairTable, pair_key

FEATURE_NAMES: tuple[str, ...] = (
    "q_hour", "q_weekend", "q_prefix_len", "u_total_log",
    "src_hist", "src_trans", "src_sim", "src_near", "src_pop",
    "u_cnt", "u_frac", "u_decay", "u_last_dt_log", "u_rank",
    "pre_cnt", "pre_frac", "is_last", "is_prev2", "pre_steps_since", "pre_dt_log",
    "u_cat_cnt", "u_cat_frac", "u_cat_hour_frac", "u_hour_frac",
    "tr_p", "tr_cnt_log", "tr_in_p", "tr2_p", "utr_cnt", "utr_p", "rev_tr_p", "cat_tr_p",
    "dist_m_log", "h3_dist", "dist_prev2_log", "dist_home_log", "dist_rank",
    "pop_log", "pop_recent_log", "users_log", "pop_trend", "cell_share",
    "item_hour_lift", "item_weekend_p", "cat_hour_lift",
    "cf_last", "cf_prev2", "cf_prefix", "cf_user",
    "item_age_log", "price_band", "cand_count_log",
    # sequence-aware: the trajectory's last k items, time gaps, categories, geographic drift
    "seq_tr_decay", "seq_tr_max", "utr2_p", "seq_gap_log", "seq_span_log",
    "cat_is_last", "cat_pre_frac", "cat_tr2_p", "ucat_tr_p",
    "dist_centroid_log", "drift_cos", "step_m_log",
    # the user's own time profile of the item
    "ui_hour_cnt", "ui_hour_frac", "ui_weekend_frac",
    # issue 19: the wider candidate sources
    "src_near_last", "src_trans_k",
    # issue 19, fourth pass: the learned POI embeddings (models/recommend/embeddings.py)
    "emb_flow_last", "emb_flow_ctx", "emb_cos_last", "emb_cos_ctx", "emb_user",
    "src_emb", "src_emb_user",
)  # fmt: skip
FEATURE_FAMILIES: dict[str, tuple[str, ...]] = {
    "user-item": ("u_total_log", "u_cnt", "u_frac", "u_decay", "u_last_dt_log", "u_rank"),
    "prefix": (
        "q_prefix_len", "pre_cnt", "pre_frac", "is_last", "is_prev2", "pre_steps_since",
        "pre_dt_log",
    ),
    "category + time of day": (
        "q_hour", "q_weekend", "u_cat_cnt", "u_cat_frac", "u_cat_hour_frac", "u_hour_frac",
        "item_hour_lift", "item_weekend_p", "cat_hour_lift",
    ),
    "transitions": (
        "tr_p", "tr_cnt_log", "tr_in_p", "tr2_p", "utr_cnt", "utr_p", "rev_tr_p", "cat_tr_p",
    ),
    "distance": ("dist_m_log", "h3_dist", "dist_prev2_log", "dist_home_log", "dist_rank"),
    "popularity + item": (
        "pop_log", "pop_recent_log", "users_log", "pop_trend", "cell_share", "item_age_log",
        "price_band",
    ),
    "item-item CF": ("cf_last", "cf_prev2", "cf_prefix", "cf_user"),
    "candidate sources": (
        "src_hist", "src_trans", "src_sim", "src_near", "src_pop", "cand_count_log",
        "src_near_last", "src_trans_k",
    ),
    "sequence: last k + gaps": (
        "seq_tr_decay", "seq_tr_max", "utr2_p", "seq_gap_log", "seq_span_log",
    ),
    "sequence: categories": ("cat_is_last", "cat_pre_frac", "cat_tr2_p", "ucat_tr_p"),
    "sequence: geographic drift": ("dist_centroid_log", "drift_cos", "step_m_log"),
    "user's time profile of the item": ("ui_hour_cnt", "ui_hour_frac", "ui_weekend_frac"),
    "learned embeddings": (
        "emb_flow_last", "emb_flow_ctx", "emb_cos_last", "emb_cos_ctx", "emb_user",
        "src_emb", "src_emb_user",
    ),
}  # fmt: skip
"""Every feature in exactly one family: the ablation table drops one family at a time."""
PREFIX_CF_WINDOW = 5
SEQ_WINDOW = 5  # prefix items whose transitions to the candidate are summed (halving weights)
M_PER_DEG = 111_195.0  # metres per degree of latitude (local equirectangular frame)
EARTH_M = 6_371_008.8
H3_DIST_CAP = 30.0


def haversine_m(
    lat1: np.ndarray, lng1: np.ndarray, lat2: np.ndarray, lng2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in metres (NaN in -> NaN out)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def price_band(price: np.ndarray) -> np.ndarray:
    """Log2 price band (0: under 1, 1: 1-3, 2: 3-7, ...); NaN for items without a price."""
    p = np.asarray(price, dtype=np.float64)
    return np.where(np.isfinite(p), np.floor(np.log2(np.maximum(p, 0.0) + 1.0)), np.nan)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den = np.asarray(den, dtype=np.float64)
    return np.where(den > 0, np.asarray(num, dtype=np.float64) / np.maximum(den, 1e-12), 0.0)


def _hour_window(table: PairTable, key: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """``table`` at ``(key, hour)`` summed over the hour and the one either side (wrapping)."""
    before, at, after = (table.get(pair_key(key, (hour + d) % HOURS, HOURS)) for d in (-1, 0, 1))
    return before + at + after


def _group_rank(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """1-based ascending rank of ``values`` within each group (NaN last)."""
    v = np.where(np.isnan(values), np.inf, values)
    order = np.lexsort((v, groups))
    g_sorted = groups[order]
    first = np.searchsorted(g_sorted, g_sorted, side="left")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values)) - first + 1
    return ranks


def _window_sum(table: np.ndarray, rows: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Sum of ``table[rows, hour-1..hour+1]`` (hours wrap around midnight)."""
    return sum(table[rows, (hour + d) % HOURS] for d in (-1, 0, 1))


class _Pairs:
    """Per-pair broadcast of query fields, shared by the feature groups.

    ``last``/``prev2`` may be -1 (no such event); ``*_ok`` masks say where they exist and the
    ``*_i`` copies are safe array indices (0 where missing, masked by the caller).
    """

    def __init__(self, qb: QueryBatch, cs: CandidateSet, st: HistoryStats) -> None:
        self.q, self.c = cs.query, cs.item
        self.u = qb.user[self.q]
        self.last, self.prev2 = qb.last[self.q], qb.prev2[self.q]
        self.last_ok, self.prev2_ok = self.last >= 0, self.prev2 >= 0
        self.last_i, self.prev2_i = np.maximum(self.last, 0), np.maximum(self.prev2, 0)
        self.hour, self.ts = qb.hour[self.q], qb.ts[self.q]
        self.weekend = qb.dow[self.q] >= 5
        self.cat = st.item_cat[self.c]
        self.n = st.n_items
        qlat, qlng = qb.locations(st.item_lat, st.item_lng, st.home_lat, st.home_lng)
        self.q_lat, self.q_lng = qlat[self.q], qlng[self.q]
        self.q_cells = [st.cell_at(a, b) for a, b in zip(qlat, qlng, strict=True)]


def _user_features(st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    ui = pair_key(p.u, p.c, p.n)
    cnt = st.user_item.get(ui)
    last_ts = st.user_item.get(ui, col=1, default=np.nan)
    total = st.user_total[p.u]
    keys, vals = [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    for u in np.unique(p.u):  # rank of the item in the user's history (1 = favourite)
        items = st.user_items(int(u))
        keys.append(pair_key(u, items, p.n))
        vals.append(np.arange(1, len(items) + 1, dtype=np.float64))
    ranks = PairTable(np.concatenate(keys), np.concatenate(vals)).get(ui, default=np.nan)
    uc = pair_key(p.u, p.cat, st.n_cats)
    ucat = st.user_cat.get(uc)
    ucat_h = _hour_window(st.user_cat_hour, uc, p.hour)
    u_h = _hour_window(st.user_hour, p.u, p.hour)
    return {
        "u_cnt": cnt,
        "u_frac": _safe_div(cnt, total),
        "u_decay": st.user_item_decay.get(ui),
        "u_last_dt_log": np.log1p(np.maximum(p.ts - last_ts, 0.0) / 3600.0),
        "u_rank": ranks,
        "u_cat_cnt": ucat,
        "u_cat_frac": _safe_div(ucat, total),
        "u_cat_hour_frac": _safe_div(ucat_h, u_h),
        "u_hour_frac": _safe_div(u_h, total),
    }


def _prefix_features(qb: QueryBatch, p: _Pairs) -> dict[str, np.ndarray]:
    lens = qb.prefix_len()
    qp = np.repeat(np.arange(len(qb), dtype=np.int64), lens)
    pos = np.arange(len(qb.prefix_items)) - qb.prefix_offsets[qp]
    keys = pair_key(qp, qb.prefix_items, p.n)
    tab = PairTable.aggregate(keys, extra_max=pos)
    tab_t = PairTable.aggregate(keys, extra_max=qb.prefix_ts)
    key = pair_key(p.q, p.c, p.n)
    cnt = tab.get(key)
    plen = lens[p.q].astype(np.float64)
    return {
        "pre_cnt": cnt,
        "pre_frac": _safe_div(cnt, plen),
        "is_last": (p.c == p.last).astype(np.float64),
        "is_prev2": (p.c == p.prev2).astype(np.float64),
        "pre_steps_since": plen - 1 - tab.get(key, col=1, default=np.nan),
        "pre_dt_log": np.log1p(np.maximum(p.ts - tab_t.get(key, col=1, default=np.nan), 0) / 60),
    }


def _transition_features(st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    n, last, prev2 = p.n, p.last_i, p.prev2_i
    tr = np.where(p.last_ok, st.trans.get(pair_key(last, p.c, n)), 0.0)
    tr2 = st.trans.get(pair_key(prev2, p.c, n))
    utr = np.where(p.last_ok, st.user_trans.get(pair_key(pair_key(p.u, last, n), p.c, n)), 0.0)
    u_last_cnt = st.user_item.get(pair_key(p.u, last, n))
    rev = st.trans.get(pair_key(p.c, last, n))
    last_cat = st.item_cat[last] if len(st.item_cat) else last
    return {
        "tr_p": np.where(p.last_ok, _safe_div(tr, st.trans_out[last]), np.nan),
        "tr_cnt_log": np.log1p(tr),
        "tr_in_p": _safe_div(tr, st.trans_in[p.c]),
        "tr2_p": np.where(p.prev2_ok, _safe_div(tr2, st.trans_out[prev2]), np.nan),
        "utr_cnt": utr,
        "utr_p": np.where(p.last_ok, _safe_div(utr, u_last_cnt), np.nan),
        "rev_tr_p": np.where(p.last_ok, _safe_div(rev, st.trans_out[p.c]), np.nan),
        "cat_tr_p": np.where(
            p.last_ok,
            _safe_div(st.cat_trans[last_cat, p.cat], st.cat_trans_out[last_cat]),
            np.nan,
        ),
    }


def _distance_features(st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    lat, lng = st.item_lat[p.c], st.item_lng[p.c]
    d_here = haversine_m(p.q_lat, p.q_lng, lat, lng)
    d_prev2 = np.where(
        p.prev2_ok, haversine_m(st.item_lat[p.prev2_i], st.item_lng[p.prev2_i], lat, lng), np.nan
    )
    d_home = haversine_m(st.home_lat[p.u], st.home_lng[p.u], lat, lng)
    grid = st.grid_distance(st.cell_ij(p.q_cells)[p.q], st.item_ij()[p.c])
    return {
        "dist_m_log": np.log1p(d_here),
        "h3_dist": np.minimum(grid, H3_DIST_CAP),
        "dist_prev2_log": np.log1p(d_prev2),
        "dist_home_log": np.log1p(d_home),
        "dist_rank": _group_rank(d_here, p.q),
    }


def _item_features(st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    pop = st.item_pop[p.c]
    recent = st.item_pop_recent[p.c]
    recent_share = st.config.recent_days / max((st.now - st.first_ts) / DAY_S, 1.0)
    global_h = st.item_hour.sum(axis=0)
    g_share = sum(global_h[(p.hour + d) % HOURS] for d in (-1, 0, 1)) / max(global_h.sum(), 1.0)
    ch = _window_sum(st.cat_hour, p.cat, p.hour)
    wk = _safe_div(st.item_weekend[p.c] + 0.5, pop + 1.0)
    born = st.item_born[p.c]
    age = np.where(np.isfinite(born), np.maximum(p.ts - born, 0.0) / 3600.0, np.nan)
    return {
        "pop_log": np.log1p(pop),
        "pop_recent_log": np.log1p(recent),
        "users_log": np.log1p(st.item_users[p.c]),
        "pop_trend": _safe_div(recent + 1.0, (pop + 1.0) * recent_share),
        "cell_share": st.item_cell_share[p.c],
        "item_hour_lift": _safe_div(
            (_window_sum(st.item_hour, p.c, p.hour) + 1) / (pop + 8), g_share
        ),
        "item_weekend_p": np.where(p.weekend, wk, 1.0 - wk),
        "cat_hour_lift": _safe_div((ch + 1.0) / (st.cat_hour[p.cat].sum(axis=1) + 8.0), g_share),
        "item_age_log": np.log1p(age),
        "price_band": price_band(st.item_price[p.c]),
    }


def _cf_features(qb: QueryBatch, st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    n = p.n
    lens = qb.prefix_len()
    acc = np.zeros(len(p.c))
    cnt = np.zeros(len(p.c))
    for k in range(1, PREFIX_CF_WINDOW + 1):
        has = lens[p.q] >= k
        if not has.any():
            break
        idx = np.where(has, qb.prefix_offsets[p.q + 1] - k, 0)
        item = qb.prefix_items[idx]
        acc += np.where(has, st.item_sim.get(pair_key(item, p.c, n)), 0.0)
        cnt += has
    return {
        "cf_last": np.where(p.last_ok, st.item_sim.get(pair_key(p.last_i, p.c, n)), np.nan),
        "cf_prev2": np.where(p.prev2_ok, st.item_sim.get(pair_key(p.prev2_i, p.c, n)), np.nan),
        "cf_prefix": np.where(cnt > 0, _safe_div(acc, cnt), np.nan),
        "cf_user": st.user_cf.get(pair_key(p.u, p.c, n)),
    }


def _nth_last(qb: QueryBatch, p: _Pairs, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: (mask, index into ``qb.prefix_*``) of the k-th last prefix event (k >= 1)."""
    has = qb.prefix_len()[p.q] >= k
    return has, np.where(has, qb.prefix_offsets[p.q + 1] - k, 0)


def _sequence_features(qb: QueryBatch, st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    """The trajectory as a sequence: transitions from its last ``SEQ_WINDOW`` items, the time
    between its events, its categories and where it is heading."""
    n, nc = p.n, st.n_cats
    decay, best = np.zeros(len(p.c)), np.full(len(p.c), np.nan)
    for k in range(1, SEQ_WINDOW + 1):
        has, idx = _nth_last(qb, p, k)
        if not has.any():
            break
        item = qb.prefix_items[idx]
        tp = np.where(has, _safe_div(st.trans.get(pair_key(item, p.c, n)), st.trans_out[item]), 0)
        decay += tp * 0.5 ** (k - 1)
        best = np.where(has, np.fmax(best, tp), best)
    has1, i1 = _nth_last(qb, p, 1)
    has2, i2 = _nth_last(qb, p, 2)
    t_last, t_prev = _prefix_ts(qb, i1, has1), _prefix_ts(qb, i2, has2)
    t_first = _prefix_ts(qb, qb.prefix_offsets[p.q], has1)
    u_prev2 = st.user_item.get(pair_key(p.u, p.prev2_i, n))
    utr2 = st.user_trans.get(pair_key(pair_key(p.u, p.prev2_i, n), p.c, n))
    last_cat = st.item_cat[p.last_i]
    prev2_cat = st.item_cat[p.prev2_i]
    ucl = pair_key(p.u, last_cat, nc)
    return {
        "seq_tr_decay": np.where(has1, decay, np.nan),
        "seq_tr_max": best,
        "utr2_p": np.where(p.prev2_ok, _safe_div(utr2, u_prev2), np.nan),
        "seq_gap_log": np.log1p(np.maximum(t_last - t_prev, 0) / 60),
        "seq_span_log": np.log1p(np.maximum(t_last - t_first, 0) / 60),
        "cat_is_last": np.where(p.last_ok, (p.cat == last_cat).astype(np.float64), np.nan),
        "cat_pre_frac": _prefix_category_share(qb, st, p),
        "cat_tr2_p": np.where(
            p.prev2_ok,
            _safe_div(st.cat_trans[prev2_cat, p.cat], st.cat_trans_out[prev2_cat]),
            np.nan,
        ),
        "ucat_tr_p": np.where(
            p.last_ok,
            _safe_div(
                st.user_cat_trans.get(pair_key(ucl, p.cat, nc)), st.user_cat_trans_out.get(ucl)
            ),
            np.nan,
        ),
        **_drift_features(qb, st, p),
    }


def _prefix_ts(qb: QueryBatch, idx: np.ndarray, has: np.ndarray) -> np.ndarray:
    """``qb.prefix_ts[idx]`` where ``has``, NaN elsewhere (also when no query has a prefix)."""
    if not len(qb.prefix_ts):
        return np.full(len(idx), np.nan)
    return np.where(has, qb.prefix_ts[np.where(has, idx, 0)], np.nan)


def _prefix_category_share(qb: QueryBatch, st: HistoryStats, p: _Pairs) -> np.ndarray:
    """Share of the prefix's events in the candidate's category (NaN without a prefix)."""
    lens = qb.prefix_len()
    qp = np.repeat(np.arange(len(qb), dtype=np.int64), lens)
    tab = PairTable.aggregate(pair_key(qp, st.item_cat[qb.prefix_items], max(st.n_cats, 1)))
    cnt = tab.get(pair_key(p.q, p.cat, max(st.n_cats, 1)))
    plen = lens[p.q].astype(np.float64)
    return np.where(plen > 0, _safe_div(cnt, plen), np.nan)


def _drift_features(qb: QueryBatch, st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    """Where the trajectory is heading: distance to the prefix's centroid, the cosine between
    the last step (second-last -> last item) and the step to the candidate, the last step's
    length. Local equirectangular metres (a neighbourhood is small)."""
    lens = qb.prefix_len()
    qp = np.repeat(np.arange(len(qb), dtype=np.int64), lens)
    plat, plng = st.item_lat[qb.prefix_items], st.item_lng[qb.prefix_items]
    ok = np.isfinite(plat) & np.isfinite(plng)
    cnt = np.bincount(qp[ok], minlength=len(qb)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        c_lat = np.bincount(qp[ok], weights=plat[ok], minlength=len(qb)) / cnt
        c_lng = np.bincount(qp[ok], weights=plng[ok], minlength=len(qb)) / cnt
    lat, lng = st.item_lat[p.c], st.item_lng[p.c]
    d_cent = haversine_m(c_lat[p.q], c_lng[p.q], lat, lng)
    coslat = np.cos(np.radians(p.q_lat))
    l_lat, l_lng = st.item_lat[p.last_i], st.item_lng[p.last_i]
    s_lat = np.where(p.prev2_ok, st.item_lat[p.prev2_i], np.nan)
    s_lng = np.where(p.prev2_ok, st.item_lng[p.prev2_i], np.nan)
    ax, ay = (l_lng - s_lng) * coslat * M_PER_DEG, (l_lat - s_lat) * M_PER_DEG
    bx, by = (lng - l_lng) * coslat * M_PER_DEG, (lat - l_lat) * M_PER_DEG
    norm = np.hypot(ax, ay) * np.hypot(bx, by)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 1.0, (ax * bx + ay * by) / norm, np.nan)
    return {
        "dist_centroid_log": np.log1p(d_cent),
        "drift_cos": np.where(p.last_ok, cos, np.nan),
        "step_m_log": np.where(p.prev2_ok, np.log1p(np.hypot(ax, ay)), np.nan),
    }


def _user_time_features(st: HistoryStats, p: _Pairs) -> dict[str, np.ndarray]:
    """How much of the user's own visits of the item fall at this hour (+-1) and this part of
    the week."""
    ui = pair_key(p.u, p.c, p.n)
    cnt = st.user_item.get(ui)
    at_hour = _hour_window(st.user_item_hour, ui, p.hour)
    wk = st.user_item_weekend.get(ui)
    return {
        "ui_hour_cnt": at_hour,
        "ui_hour_frac": np.where(cnt > 0, _safe_div(at_hour, cnt), np.nan),
        "ui_weekend_frac": np.where(
            cnt > 0, _safe_div(np.where(p.weekend, wk, cnt - wk), cnt), np.nan
        ),
    }


EMB_DEPTH = 5  # prefix items in the embedding contexts (halving weights), as the EMB source
ROWDOT_CHUNK = 65536  # pairs per block of the row-wise dot products (bounds the temporaries)


def _rowdot(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """``sum(a[ia] * b[ib], axis=1)`` in blocks."""
    out = np.empty(len(ia))
    for lo in range(0, len(ia), ROWDOT_CHUNK):
        hi = lo + ROWDOT_CHUNK
        out[lo:hi] = np.einsum("ij,ij->i", a[ia[lo:hi]], b[ib[lo:hi]])
    return out


def _prefix_contexts(qb: QueryBatch, vec: np.ndarray) -> np.ndarray:
    """Per query: the sum of ``vec`` over its last ``EMB_DEPTH`` prefix items, halving weights
    from the last one back (zeros without a prefix)."""
    lens = qb.prefix_len()
    ctx = np.zeros((len(qb), vec.shape[1]))
    for k in range(1, EMB_DEPTH + 1):
        has = np.flatnonzero(lens >= k)
        if not len(has):
            break
        ctx[has] += vec[qb.prefix_items[qb.prefix_offsets[has + 1] - k]] * 0.5 ** (k - 1)
    return ctx


def _embedding_features(
    qb: QueryBatch, st: HistoryStats, p: _Pairs, cs_source: np.ndarray
) -> dict[str, np.ndarray]:
    """Scores of the learned embeddings: trajectory flow from the last item and from the
    prefix's decayed context to the candidate, the user-item cosine of the candidate with the
    last item and with the prefix, and the user-item factor score (looked up, never fitted,
    here: ``HistoryStats`` fitted them)."""
    emb = st.emb
    if emb.out_vec.shape[1] == 0:  # no embeddings fitted (StatsConfig.embed_dim 0): missing
        return {name: np.full(len(p.c), np.nan) for name in FEATURE_FAMILIES["learned embeddings"]}
    flow_ctx = _prefix_contexts(qb, emb.out_vec)
    unit_ctx = _prefix_contexts(qb, emb.item_unit)
    unit_norm = np.linalg.norm(unit_ctx, axis=1)
    unit_ctx = unit_ctx / np.maximum(unit_norm, 1e-12)[:, None]
    has = qb.prefix_len()[p.q] > 0
    return {
        "emb_flow_last": np.where(
            p.last_ok, _rowdot(emb.out_vec, p.last_i, emb.in_vec, p.c), np.nan
        ),
        "emb_flow_ctx": np.where(has, _rowdot(flow_ctx, p.q, emb.in_vec, p.c), np.nan),
        "emb_cos_last": np.where(
            p.last_ok, _rowdot(emb.item_unit, p.last_i, emb.item_unit, p.c), np.nan
        ),
        "emb_cos_ctx": np.where(
            unit_norm[p.q] > 0, _rowdot(unit_ctx, p.q, emb.item_unit, p.c), np.nan
        ),
        "emb_user": _rowdot(emb.user_vec, p.u, emb.item_vec, p.c),
        "src_emb": (cs_source & EMB > 0).astype(np.float64),
        "src_emb_user": (cs_source & EMBU > 0).astype(np.float64),
    }


def build_features(qb: QueryBatch, cs: CandidateSet, st: HistoryStats) -> np.ndarray:
    """Float32 matrix ``(len(cs), len(FEATURE_NAMES))`` in ``FEATURE_NAMES`` order."""
    if len(cs) == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    p = _Pairs(qb, cs, st)
    cols: dict[str, np.ndarray] = {
        "q_hour": p.hour.astype(np.float64),
        "q_weekend": p.weekend.astype(np.float64),
        "q_prefix_len": qb.prefix_len()[p.q].astype(np.float64),
        "u_total_log": np.log1p(st.user_total[p.u]),
        "src_hist": (cs.source & HIST > 0).astype(np.float64),
        "src_trans": (cs.source & TRANS > 0).astype(np.float64),
        "src_sim": (cs.source & SIM > 0).astype(np.float64),
        "src_near": (cs.source & NEAR > 0).astype(np.float64),
        "src_pop": (cs.source & POP > 0).astype(np.float64),
        "src_near_last": (cs.source & NEARLAST > 0).astype(np.float64),
        "src_trans_k": (cs.source & TRANSK > 0).astype(np.float64),
        "cand_count_log": np.log1p(cs.sizes()[p.q].astype(np.float64)),
    }
    cols.update(_user_features(st, p))
    cols.update(_prefix_features(qb, p))
    cols.update(_transition_features(st, p))
    cols.update(_distance_features(st, p))
    cols.update(_item_features(st, p))
    cols.update(_cf_features(qb, st, p))
    cols.update(_sequence_features(qb, st, p))
    cols.update(_user_time_features(st, p))
    cols.update(_embedding_features(qb, st, p, cs.source))
    missing = set(FEATURE_NAMES) - set(cols)
    if missing:
        raise RuntimeError(f"feature builder forgot {sorted(missing)}")
    return np.column_stack([cols[name] for name in FEATURE_NAMES]).astype(np.float32)
