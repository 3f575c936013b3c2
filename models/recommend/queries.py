"""Prediction queries: "user U, at place L and time T, having just done prefix P: what next?".

Owns ``QueryBatch``, a columnar batch of queries with a ragged prefix array. Offline, the query
time is the timestamp of the LAST PREFIX event and the place is that event's item (the target's
time and place are never exposed), so features built from a ``QueryBatch`` cannot see the target
or anything after it. At serving time place and time are the request's, and the prefix may be
empty (a user without history): ``last``/``prev2`` are then -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import Trajectory


@dataclass
class QueryBatch:
    """Columnar queries; ``prefix_items[prefix_offsets[q]:prefix_offsets[q+1]]`` is q's prefix."""

    user: np.ndarray
    last: np.ndarray  # last prefix item
    prev2: np.ndarray  # second-to-last prefix item or -1
    ts: np.ndarray  # query time = time of last prefix event
    hour: np.ndarray
    dow: np.ndarray
    target: np.ndarray  # -1 when unknown (serving)
    prefix_offsets: np.ndarray
    prefix_items: np.ndarray
    prefix_ts: np.ndarray
    query_ids: list[str]
    lat: np.ndarray | None = None  # the user's location; None: the last prefix item's
    lng: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user)

    def prefix(self, q: int) -> np.ndarray:
        return self.prefix_items[self.prefix_offsets[q] : self.prefix_offsets[q + 1]]

    def prefix_len(self) -> np.ndarray:
        return np.diff(self.prefix_offsets)

    def select(self, idx: np.ndarray) -> QueryBatch:
        """Sub-batch with the queries at positions ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        lens = self.prefix_len()[idx]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        take = (
            np.concatenate(
                [np.arange(self.prefix_offsets[q], self.prefix_offsets[q + 1]) for q in idx]
            ).astype(np.int64)
            if len(idx)
            else np.zeros(0, dtype=np.int64)
        )
        return QueryBatch(
            self.user[idx],
            self.last[idx],
            self.prev2[idx],
            self.ts[idx],
            self.hour[idx],
            self.dow[idx],
            self.target[idx],
            offsets,
            self.prefix_items[take],
            self.prefix_ts[take],
            [self.query_ids[q] for q in idx],
            None if self.lat is None else self.lat[idx],
            None if self.lng is None else self.lng[idx],
        )

    def locations(
        self,
        item_lat: np.ndarray,
        item_lng: np.ndarray,
        home_lat: np.ndarray | None = None,
        home_lng: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query (lat, lng): the given location, else the last prefix item's, else the
        user's home (median of their history), else NaN."""
        has = self.last >= 0
        idx = np.maximum(self.last, 0)
        lat = np.where(has, item_lat[idx] if len(item_lat) else np.nan, np.nan)
        lng = np.where(has, item_lng[idx] if len(item_lng) else np.nan, np.nan)
        if home_lat is not None and home_lng is not None and len(home_lat):
            users = np.minimum(self.user, len(home_lat) - 1)
            lat = np.where(np.isnan(lat), home_lat[users], lat)
            lng = np.where(np.isnan(lng), home_lng[users], lng)
        if self.lat is not None and self.lng is not None:
            given = np.isfinite(self.lat) & np.isfinite(self.lng)
            lat, lng = np.where(given, self.lat, lat), np.where(given, self.lng, lng)
        return lat, lng

    @classmethod
    def from_trajectories(
        cls,
        trajs: Sequence[Trajectory],
        last_only: bool = True,
        min_prefix: int = 1,
        max_prefix: int | None = None,
        at_target: bool = False,
    ) -> QueryBatch:
        """Queries from trajectories.

        ``last_only``: one query per trajectory predicting its last event (GETNext protocol);
        otherwise one query per position ``p >= min_prefix`` (training data augmentation).
        ``max_prefix`` keeps only the most recent events of long prefixes. ``at_target``: the
        query is asked at the target's time (its hour and day too), not at the last prefix
        event's; the place stays the last prefix event's. A protocol variant (LLM4POI's prompt
        states the time of the check-in to predict), never the default.
        """
        rows: list[tuple[Trajectory, int]] = []
        for tr in trajs:
            if len(tr) < min_prefix + 1:
                continue
            positions = [len(tr) - 1] if last_only else range(min_prefix, len(tr))
            rows.extend((tr, p) for p in positions)
        return cls._from_rows(rows, max_prefix, at_target)

    @classmethod
    def _from_rows(
        cls, rows: list[tuple[Trajectory, int]], max_prefix: int | None, at_target: bool = False
    ) -> QueryBatch:
        n = len(rows)
        user = np.zeros(n, dtype=np.int64)
        last = np.zeros(n, dtype=np.int64)
        prev2 = np.full(n, -1, dtype=np.int64)
        ts = np.zeros(n)
        hour = np.zeros(n, dtype=np.int64)
        dow = np.zeros(n, dtype=np.int64)
        target = np.zeros(n, dtype=np.int64)
        items: list[np.ndarray] = []
        times: list[np.ndarray] = []
        lens = np.zeros(n, dtype=np.int64)
        ids: list[str] = []
        for q, (tr, p) in enumerate(rows):
            lo = 0 if max_prefix is None else max(0, p - max_prefix)
            if p >= 1:
                at = p if at_target else p - 1  # whose time the query is asked at
                user[q], last[q], ts[q] = tr.user, tr.items[p - 1], tr.ts[at]
                hour[q], dow[q], target[q] = tr.hour[at], tr.dow[at], tr.items[p]
            else:  # no prefix: the request comes just before the target, nothing more is known
                user[q], last[q], ts[q] = tr.user, -1, tr.ts[0] - 1.0
                hour[q], dow[q], target[q] = tr.hour[0], tr.dow[0], tr.items[0]
            if p >= 2:
                prev2[q] = tr.items[p - 2]
            items.append(tr.items[lo:p])
            times.append(tr.ts[lo:p])
            lens[q] = p - lo
            ids.append(f"{tr.traj_id}@{p}")
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        cat_i = np.concatenate(items).astype(np.int64) if items else np.zeros(0, dtype=np.int64)
        cat_t = np.concatenate(times) if times else np.zeros(0)
        return cls(user, last, prev2, ts, hour, dow, target, offsets, cat_i, cat_t, ids)

    @classmethod
    def single(
        cls,
        user: int,
        prefix_items: Sequence[int],
        prefix_ts: Sequence[float],
        now: float,
        hour: int,
        dow: int,
        lat: float = float("nan"),
        lng: float = float("nan"),
    ) -> QueryBatch:
        """One serving-time query (no target) from a user's recent events (may be none)."""
        items = np.asarray(prefix_items, dtype=np.int64)
        times = np.asarray(prefix_ts, dtype=np.float64)
        if len(items) != len(times):
            raise ValueError("prefix items and times differ in length")
        return cls(
            np.array([user], dtype=np.int64),
            np.array([items[-1] if len(items) else -1], dtype=np.int64),
            np.array([items[-2] if len(items) > 1 else -1], dtype=np.int64),
            np.array([float(now)]),
            np.array([hour], dtype=np.int64),
            np.array([dow], dtype=np.int64),
            np.array([-1], dtype=np.int64),
            np.array([0, len(items)], dtype=np.int64),
            items,
            times,
            ["serve"],
            np.array([lat], dtype=np.float64),
            np.array([lng], dtype=np.float64),
        )
