"""Learned POI embeddings of a history: the retriever and the sequence scores of issue #19.

Owns ``PoiEmbeddings``, two factorisations fitted once per history (``HistoryStats`` builds
it, so a serving snapshot holds it and scoring only looks vectors up):

* the **trajectory flow** (GETNext's trajectory flow graph, factorised): every pair of a
  user's consecutive events up to ``window`` steps apart and at most ``gap_s`` apart counts
  ``1 / steps`` from the earlier item to the later one; the directed count matrix is turned
  into positive PMI (context distribution smoothed with exponent 0.75, as skip-gram with
  negative sampling implicitly factorises; Levy & Goldberg 2014) and factorised by a truncated
  SVD. ``out_vec[i] @ in_vec[j]`` is then how strongly trajectories flow from i to j, also for
  pairs nobody went between directly (the factorisation generalises over shared neighbours);
* the **user-item** matrix (log1p of each user's visit weight of each item), factorised the
  same way: ``user_vec[u] @ item_vec[i]`` scores items by what users with similar histories
  visit, and ``item_vec`` rows compare items by who visits them.

Pure numpy/scipy, deterministic (a randomised SVD with a fixed seed).
Like ``HistoryStats`` it sees only the log it is given: leakage control is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import InteractionLog

PPMI_ALPHA = 0.75
OVERSAMPLE = 10  # extra sketch columns of the randomised SVD
POWER_ITERATIONS = 4
SVD_SEED = 0


@dataclass(frozen=True)
class EmbeddingConfig:
    """Knobs of ``PoiEmbeddings`` (chosen on the NYC validation file)."""

    dim: int = 32  # 0: no embeddings (every score is 0)
    window: int = 2  # later events of the same trajectory that count as flow from an item
    gap_s: float = 86400.0  # consecutive events further apart are not in one trajectory


def flow_counts(log: InteractionLog, n_items: int, window: int, gap_s: float) -> sp.csr_matrix:
    """Directed ``(n_items, n_items)`` counts: ``1/d`` from each item to the one ``d <= window``
    events later in the same user's trajectory (every step of the ``d`` within ``gap_s``)."""
    order = np.lexsort((log.ts, log.user))
    u, i, t = log.user[order], log.item[order], log.ts[order]
    rows, cols, vals = [], [], []
    linked = np.ones(max(len(u) - 1, 0), dtype=bool)  # step k -> k+1 inside one trajectory
    if len(u) > 1:
        linked = (u[1:] == u[:-1]) & (np.diff(t) <= gap_s)
    chain = linked.copy()
    for d in range(1, window + 1):
        if d > 1:  # events d apart are linked if every step between them is
            chain = chain[:-1] & linked[d - 1 :]
        if not len(chain):
            break
        rows.append(i[:-d][chain])
        cols.append(i[d:][chain])
        vals.append(np.full(int(chain.sum()), 1.0 / d))
    if not rows:
        return sp.csr_matrix((n_items, n_items))
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    return sp.csr_matrix((v, (r, c)), shape=(n_items, n_items))


def ppmi(m: sp.csr_matrix | sp.coo_matrix | np.ndarray, alpha: float = PPMI_ALPHA) -> sp.csr_matrix:
    """Positive pointwise mutual information of a count matrix (column marginals ** alpha)."""
    coo = sp.coo_matrix(m)
    coo.sum_duplicates()
    if coo.nnz == 0:
        return sp.csr_matrix(coo.shape)
    rows = np.asarray(coo.sum(axis=1)).ravel()
    cols = np.asarray(coo.sum(axis=0)).ravel() ** alpha
    pmi = np.log(coo.data * cols.sum() / (rows[coo.row] * cols[coo.col]))
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=coo.shape)


def factorise(m: sp.csr_matrix, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)`` with ``left @ right.T`` a rank-``dim`` approximation of ``m``
    (singular values split evenly); fewer columns when ``m`` is smaller, zeros if empty.

    A randomised truncated SVD (Halko, Martinsson and Tropp 2011: a Gaussian sketch with
    ``OVERSAMPLE`` extra columns, ``POWER_ITERATIONS`` power iterations, a fixed seed). Its
    dense steps are ``einsum`` and eigen-decompositions of ``(dim + OVERSAMPLE)``-square Gram
    matrices, never a multi-threaded BLAS call: a snapshot is built in a shard's thread on a
    shared box, where BLAS thread pools spin. Milliseconds for a neighbourhood.
    """
    n_rows, n_cols = m.shape
    k = min(dim, n_rows, n_cols)
    if k < 1 or m.nnz == 0:
        return np.zeros((n_rows, max(dim, 0))), np.zeros((n_cols, max(dim, 0)))
    a = sp.csr_matrix(m.astype(np.float64))
    at = a.T.tocsr()
    width = min(k + OVERSAMPLE, n_rows, n_cols)
    sketch = np.random.default_rng(SVD_SEED).standard_normal((n_cols, width))
    q = _orthonormal(a @ sketch)
    for _ in range(POWER_ITERATIONS):
        q = _orthonormal(a @ _orthonormal(at @ q))
    b_t = at @ q  # (n_cols, width): B = Q^T A, transposed
    vals, vecs = np.linalg.eigh(np.einsum("ij,ik->jk", b_t, b_t))  # B B^T = U S^2 U^T
    top = np.argsort(-vals, kind="stable")[:k]
    s = np.sqrt(np.maximum(vals[top], 0.0))
    keep = s > s[0] * 1e-9 if len(s) and s[0] > 0 else np.zeros(len(s), dtype=bool)
    u_small, s = vecs[:, top[keep]], s[keep]
    left = np.einsum("ij,jk->ik", q, u_small) * np.sqrt(s)
    right = np.einsum("ij,jk->ik", b_t, u_small) / np.sqrt(s)  # V S^(1/2) = B^T U S^(-1/2)
    pad = k - len(s)  # rank below k: zero columns keep the shapes
    if pad:
        left = np.hstack([left, np.zeros((n_rows, pad))])
        right = np.hstack([right, np.zeros((n_cols, pad))])
    return left, right


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of ``y``'s column space (a Gram eigen-decomposition; directions
    with a negligible eigenvalue are dropped)."""
    vals, vecs = np.linalg.eigh(np.einsum("ij,ik->jk", y, y))
    ok = vals > max(float(vals.max()), 0.0) * 1e-12
    if not ok.any():
        return np.zeros((y.shape[0], 1))
    return np.einsum("ij,jk->ik", y, vecs[:, ok] / np.sqrt(vals[ok]))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return np.where(norm > 0, x / np.maximum(norm, 1e-12), 0.0)


class PoiEmbeddings:
    """Item (and user) vectors of one history; read-only once built."""

    def __init__(
        self,
        out_vec: np.ndarray,
        in_vec: np.ndarray,
        user_vec: np.ndarray,
        item_vec: np.ndarray,
    ) -> None:
        self.out_vec, self.in_vec = out_vec, in_vec
        self.user_vec, self.item_vec = user_vec, item_vec
        self.item_unit = unit_rows(item_vec)

    @classmethod
    def fit(
        cls, log: InteractionLog, n_users: int, n_items: int, config: EmbeddingConfig
    ) -> PoiEmbeddings:
        """Both factorisations of ``log`` (``dim`` 0 or an empty log: all vectors zero)."""
        if config.dim <= 0:  # off: nothing to fit
            return cls(*(np.zeros((n, 0)) for n in (n_items, n_items, n_users, n_items)))
        flow = ppmi(flow_counts(log, n_items, config.window, config.gap_s))
        out_vec, in_vec = factorise(flow, config.dim)
        ui = sp.coo_matrix(
            (log.weight, (log.user, log.item)), shape=(n_users, n_items), dtype=np.float64
        )
        ui.sum_duplicates()
        ui.data = np.log1p(ui.data)
        user_vec, item_vec = factorise(ui.tocsr(), config.dim)
        return cls(out_vec, in_vec, user_vec, item_vec)

    def flow_context(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``(len(items), dim)`` weighted out-vectors: sum these per query for a context."""
        return self.out_vec[items] * weights[:, None]

    def flow_ranking(self, context: np.ndarray, limit: int) -> np.ndarray:
        """The ``limit`` items the flow context points to most, best first."""
        if limit <= 0 or not np.any(context):
            return np.zeros(0, dtype=np.int64)
        return _top(np.einsum("ij,j->i", self.in_vec, context), limit)

    def user_ranking(self, user: int, limit: int) -> np.ndarray:
        """The ``limit`` items with the highest user-item score for ``user``, best first."""
        if limit <= 0 or user < 0 or user >= len(self.user_vec) or not np.any(self.user_vec[user]):
            return np.zeros(0, dtype=np.int64)
        return _top(np.einsum("ij,j->i", self.item_vec, self.user_vec[user]), limit)


def _top(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` highest scores, best first (deterministic; equal scores in
    the list by lower index)."""
    limit = min(limit, len(scores))
    part = np.argpartition(-scores, limit - 1)[:limit] if limit < len(scores) else np.arange(limit)
    return part[np.lexsort((part, -scores[part]))].astype(np.int64)
