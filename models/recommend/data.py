"""Interaction data model for the recommender: ids, item metadata, columnar event logs.

Owns:
    * ``Interaction`` - one product event (view, like, comment, purchase, check-in).
    * ``Catalog`` - dense ``0..n-1`` ids for users, items and categories plus item metadata
      (location, category, H3 cell, creation time, price). For posts the "category" is the author,
      for listings their category, for venues their venue category.
    * ``InteractionLog`` - a time-sorted columnar view of interactions encoded against a catalog.
    * ``Trajectory`` - an ordered run of one user's interactions (a GETNext "trajectory").
    * Row parsers for the Foursquare NYC files (``checkin_rows``, ``getnext_rows``): they take
      already-read rows; opening files is the caller's job (cluster/recommend_eval.py).

Guarantees: an ``InteractionLog`` is sorted by timestamp (stable) and its arrays have equal
lengths. Timestamps are UTC unix seconds; ``hour``/``dow`` are local time (Monday = 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

#: Weight of each interaction kind when counting "visits" (a purchase says more than a view).
KIND_WEIGHTS: dict[str, float] = {
    "view": 0.25,
    "cart": 1.0,  # a listing put in a cart (recorded since migration 0018)
    "like": 1.0,
    "comment": 1.5,
    "checkin": 1.0,
    "purchase": 3.0,
}


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user -> item event, the unit the product feeds into the recommender."""

    user_id: str
    item_id: str
    timestamp: float  # UTC unix seconds
    kind: str = "checkin"
    lat: float = math.nan
    lng: float = math.nan
    cell: str | None = None  # H3 cell of the item, if known
    category: str | None = None
    tz_offset_min: int = 0  # local time = UTC + offset


@dataclass
class Catalog:
    """Dense integer ids for users/items/categories plus item metadata (first value wins)."""

    user_ids: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    item_lat: list[float] = field(default_factory=list)
    item_lng: list[float] = field(default_factory=list)
    item_cat: list[int] = field(default_factory=list)
    item_cell: list[str | None] = field(default_factory=list)
    item_created: list[float] = field(default_factory=list)
    item_price: list[float] = field(default_factory=list)
    _user_index: dict[str, int] = field(default_factory=dict, repr=False)
    _item_index: dict[str, int] = field(default_factory=dict, repr=False)
    _cat_index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_categories(self) -> int:
        return max(len(self.categories), 1)

    def user(self, user_id: str) -> int:
        """The id of ``user_id``, registering it if new."""
        idx = self._user_index.get(user_id)
        if idx is None:
            idx = self._user_index[user_id] = len(self.user_ids)
            self.user_ids.append(user_id)
        return idx

    def category(self, name: str | None) -> int:
        key = name if name is not None else ""
        idx = self._cat_index.get(key)
        if idx is None:
            idx = self._cat_index[key] = len(self.categories)
            self.categories.append(key)
        return idx

    def item(
        self,
        item_id: str,
        lat: float = math.nan,
        lng: float = math.nan,
        category: str | None = None,
        cell: str | None = None,
        created: float = math.nan,
        price: float = math.nan,
    ) -> int:
        """The id of ``item_id``, registering it (with its metadata) if new."""
        idx = self._item_index.get(item_id)
        if idx is None:
            idx = self._item_index[item_id] = len(self.item_ids)
            self.item_ids.append(item_id)
            self.item_lat.append(float(lat))
            self.item_lng.append(float(lng))
            self.item_cat.append(self.category(category))
            self.item_cell.append(cell)
            self.item_created.append(float(created))
            self.item_price.append(float(price))
        return idx

    def find_user(self, user_id: str) -> int | None:
        return self._user_index.get(user_id)

    def find_item(self, item_id: str) -> int | None:
        return self._item_index.get(item_id)

    def lat_array(self) -> np.ndarray:
        return np.asarray(self.item_lat, dtype=np.float64)

    def lng_array(self) -> np.ndarray:
        return np.asarray(self.item_lng, dtype=np.float64)

    def cat_array(self) -> np.ndarray:
        return np.asarray(self.item_cat, dtype=np.int64)


@dataclass
class InteractionLog:
    """Columnar, time-sorted interactions encoded against a ``Catalog``."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64
    ts: np.ndarray  # float64 UTC seconds
    hour: np.ndarray  # int64 local hour 0..23
    dow: np.ndarray  # int64 local day of week, Monday=0
    weight: np.ndarray  # float64 kind weight

    def __post_init__(self) -> None:
        order = np.argsort(self.ts, kind="stable")
        if not np.all(order == np.arange(len(order))):
            for name in ("user", "item", "ts", "hour", "dow", "weight"):
                setattr(self, name, getattr(self, name)[order])

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> InteractionLog:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, np.zeros(0), none, none, np.zeros(0))

    def subset(self, mask: np.ndarray) -> InteractionLog:
        """Rows where ``mask`` is true (order preserved)."""
        return InteractionLog(
            self.user[mask],
            self.item[mask],
            self.ts[mask],
            self.hour[mask],
            self.dow[mask],
            self.weight[mask],
        )

    def before(self, cutoff: float) -> InteractionLog:
        """Rows strictly before ``cutoff`` (UTC seconds)."""
        return self.subset(self.ts < cutoff)

    @classmethod
    def from_interactions(
        cls,
        events: Iterable[Interaction],
        catalog: Catalog,
        kind_weights: Mapping[str, float] | None = None,
    ) -> InteractionLog:
        """Encode product events, registering unseen users/items in ``catalog``."""
        weights = kind_weights or KIND_WEIGHTS
        rows = [
            (
                catalog.user(ev.user_id),
                catalog.item(ev.item_id, ev.lat, ev.lng, ev.category, ev.cell),
                ev.timestamp,
                ev.tz_offset_min,
                weights.get(ev.kind, 1.0),
            )
            for ev in events
        ]
        if not rows:
            return cls.empty()
        arr = np.asarray(rows, dtype=np.float64)
        hour, dow = local_hour_dow(arr[:, 2], arr[:, 3])
        return cls(
            arr[:, 0].astype(np.int64),
            arr[:, 1].astype(np.int64),
            arr[:, 2],
            hour,
            dow,
            arr[:, 4],
        )


@dataclass
class Trajectory:
    """An ordered run of one user's interactions; the last one is the prediction target."""

    traj_id: str
    user: int
    items: np.ndarray  # int64
    ts: np.ndarray  # float64
    hour: np.ndarray  # int64
    dow: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.items)


def local_hour_dow(ts: np.ndarray, tz_offset_min: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local hour (0..23) and day of week (Mon=0) from UTC seconds and minute offsets."""
    local = np.asarray(ts, dtype=np.float64) + np.asarray(tz_offset_min, dtype=np.float64) * 60.0
    days = np.floor(local / 86400.0)
    hour = np.floor((local - days * 86400.0) / 3600.0).astype(np.int64)
    dow = ((days.astype(np.int64) + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    return hour, dow


def split_trajectories(log: InteractionLog, max_gap_s: float = 86400.0) -> list[Trajectory]:
    """Cut each user's interactions into trajectories at gaps longer than ``max_gap_s``."""
    if len(log) == 0:
        return []
    order = np.lexsort((log.ts, log.user))
    user, ts = log.user[order], log.ts[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (np.diff(ts) > max_gap_s)
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(order))
    out: list[Trajectory] = []
    for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
        idx = order[s:e]
        out.append(
            Trajectory(
                f"{int(user[s])}_{k}",
                int(user[s]),
                log.item[idx],
                log.ts[idx],
                log.hour[idx],
                log.dow[idx],
            )
        )
    return out


# -- Foursquare NYC (TSMC2014) and GETNext files: parsers of rows the caller has read ----------

TSMC_TIME = "%a %b %d %H:%M:%S %z %Y"


@dataclass
class CheckinData:
    """The full check-in log, its catalog and the per-row split labels (aligned with ``log``)."""

    catalog: Catalog
    log: InteractionLog
    split: np.ndarray


def checkin_rows(rows: Iterable[Mapping[str, str]], split: Iterable[str]) -> CheckinData:
    """Encode TSMC2014 rows (``user_id, venue_id, category_id, latitude, longitude,
    timezone_offset, utc_time``) with their split labels, one label per row in file order."""
    catalog = Catalog()
    users: list[int] = []
    items: list[int] = []
    times: list[float] = []
    offsets: list[float] = []
    for r in rows:
        users.append(catalog.user(r["user_id"]))
        lat, lng = float(r["latitude"]), float(r["longitude"])
        items.append(catalog.item(r["venue_id"], lat, lng, r["category_id"]))
        times.append(datetime.strptime(r["utc_time"], TSMC_TIME).timestamp())
        offsets.append(float(r["timezone_offset"]))
    labels = np.asarray(list(split))
    if len(labels) != len(users):
        raise ValueError(f"split has {len(labels)} labels for {len(users)} check-ins")
    ts = np.asarray(times)
    hour, dow = local_hour_dow(ts, np.asarray(offsets))
    order = np.argsort(ts, kind="stable")
    log = InteractionLog(
        np.asarray(users, dtype=np.int64)[order],
        np.asarray(items, dtype=np.int64)[order],
        ts[order],
        hour[order],
        dow[order],
        np.ones(len(ts)),
    )
    return CheckinData(catalog, log, labels[order])


def getnext_rows(rows: Iterable[Mapping[str, str]], catalog: Catalog) -> list[Trajectory]:
    """Trajectories of a GETNext val/test file, in order of first appearance.

    Users/POIs unknown to ``catalog`` get id ``-1`` so the caller applies the GETNext "unseen"
    filter explicitly.
    """
    groups: dict[str, list[tuple[float, int, int, float]]] = {}
    for r in rows:
        ts = datetime.fromisoformat(r["UTC_time"]).timestamp()
        user = catalog.find_user(r["user_id"])
        item = catalog.find_item(r["POI_id"])
        groups.setdefault(r["trajectory_id"], []).append(
            (ts, -1 if user is None else user, -1 if item is None else item, float(r["timezone"]))
        )
    out: list[Trajectory] = []
    for traj_id, events in groups.items():
        events.sort(key=lambda e: e[0])
        times = np.array([e[0] for e in events])
        hour, dow = local_hour_dow(times, np.array([e[3] for e in events]))
        items = np.array([e[2] for e in events], dtype=np.int64)
        out.append(Trajectory(traj_id, events[0][1], items, times, hour, dow))
    return out
