"""Relevance scoring inside the shard that owns the user's cell: the ``recommend.rank`` read.

Asked with a ``RankRead`` (models/recommend/commands.py): ``user_id, lat, lng, items: [{id,
lat, lng, cell?, category?, author_id?, created_ms?, price?}]`` (at most 1000 items; posts use
their author as category, listings their category and price). Answer: ``{"model": {"scope",
"version"} | None, "scores": [float per item]}``;
``model`` None (and no scores) when no ranker covers the cell: the caller keeps its own order.

State (a cache of Postgres, rebuilt on demand; nothing is persisted here):
    * model bundles by scope, reloaded when a newer version appears (one indexed query a call);
    * a snapshot of the neighbourhood's recent interactions, kept ``recommend_context_ttl_s``.
Scoring of ``recommend_thread_min`` or more items, and snapshot building, run in a thread so the
shard's loop keeps serving (rule 6). Idempotent: a pure read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h3

from actors.singleflight import SingleFlight
from models.commands import ShardCommand, ShardRead
from models.errors import BadRequest
from models.recommend.commands import RankRead
from models.recommend.serving import Item, ModelBundle, Snapshot, model_scopes, rank
from store import recommend_store

if TYPE_CHECKING:
    from actors.cell_host import CellHost, Handler, Reader

MAX_ITEMS = 1000
log = logging.getLogger("hyperlocal.recommend")


@dataclass
class _State:
    bundles: dict[str, ModelBundle] = field(default_factory=dict)
    snapshots: dict[str, tuple[float, Snapshot]] = field(default_factory=dict)
    building: SingleFlight[str, Snapshot] = field(default_factory=SingleFlight)
    unreadable: set[tuple[str, int]] = field(default_factory=set)


_SNAPSHOTS_MAX = 1000


def _state(host: CellHost) -> _State:
    """This host's recommendation cache (in ``host.ext``: dropped on a placement change)."""
    state: _State | None = host.ext.get("recommend")
    if state is None:
        state = host.ext["recommend"] = _State()
    if len(state.snapshots) > _SNAPSHOTS_MAX:
        state.snapshots.clear()  # a bound, not an LRU: snapshots are cheap to rebuild
    return state


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a number")
    return float(value)


def parse_items(raw: Any) -> list[Item]:
    """Validate the candidate list; typed ``bad_request`` on anything malformed."""
    if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
        raise BadRequest(f"items must be a list of at most {MAX_ITEMS}")
    out = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise BadRequest("every item needs a string id")
        created = entry.get("created_ms")
        price = entry.get("price")
        out.append(
            Item(
                id=entry["id"],
                lat=_number(entry.get("lat"), "lat"),
                lng=_number(entry.get("lng"), "lng"),
                cell=entry.get("cell") if isinstance(entry.get("cell"), str) else None,
                category=str(entry.get("category") or entry.get("author_id") or "") or None,
                created_s=created / 1000.0 if isinstance(created, int | float) else math.nan,
                price=float(price) if isinstance(price, int | float) else math.nan,
            )
        )
    return out


async def _bundle(host: CellHost, cell: str) -> ModelBundle | None:
    """The newest usable model of the first scope that has one: cell, parents, global.

    A stored model this code cannot read (trained on another feature list, before an upgrade)
    is logged once and passed over for the next scope until a retrain replaces it."""
    assert host.pool is not None
    scopes = model_scopes(cell, host.settings.recommend_parent_levels)
    newest = await recommend_store.newest_versions(host.pool, scopes)
    state = _state(host)
    for scope in (s for s in scopes if s in newest):
        if (scope, newest[scope]) in state.unreadable:
            continue
        cached = state.bundles.get(scope)
        if cached is not None and cached.version == newest[scope]:
            return cached
        blob = await recommend_store.load_model(host.pool, scope, newest[scope])
        if blob is None:  # pruned between the two queries: use what we have
            if cached is not None:
                return cached
            continue
        try:
            bundle = await asyncio.to_thread(ModelBundle.from_bytes, blob)
        except ValueError as exc:
            log.warning("model %s v%d unreadable (%s); passed over", scope, newest[scope], exc)
            state.unreadable.add((scope, newest[scope]))
            continue
        state.bundles[scope] = bundle
        return bundle
    return None


async def _snapshot(host: CellHost, cell: str, bundle: ModelBundle) -> Snapshot:
    """The neighbourhood's interaction snapshot, shared by concurrent callers, TTL-cached."""
    state = _state(host)
    hit = state.snapshots.get(cell)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]

    async def build() -> Snapshot:
        settings = host.settings
        assert host.pool is not None
        cells = list(h3.grid_disk(cell, settings.k_ring))
        items, events = await recommend_store.load_events(
            host.pool,
            cells,
            recommend_store.since(settings.recommend_history_days),
            settings.recommend_max_events,
        )
        snap = await asyncio.to_thread(Snapshot, items, events, time.time(), bundle.recipe.stats)
        state.snapshots[cell] = (time.monotonic() + settings.recommend_context_ttl_s, snap)
        return snap

    return await state.building.run(cell, build)


async def recommend_rank(host: CellHost, read: RankRead) -> dict[str, Any]:
    if not read.user_id:
        raise BadRequest("user_id must be a string")
    lat, lng = _number(read.lat, "lat"), _number(read.lng, "lng")
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise BadRequest("lat/lng out of range")
    items = parse_items(list(read.items))
    cell = str(h3.latlng_to_cell(lat, lng, host.settings.h3_resolution))
    bundle = await _bundle(host, cell)
    if bundle is None:
        return {"model": None}
    model = {"scope": bundle.scope, "version": bundle.version}
    if not items:
        return {"model": model, "scores": []}
    snap = await _snapshot(host, cell, bundle)
    if len(items) >= host.settings.recommend_thread_min:
        scores = await asyncio.to_thread(rank, bundle, snap, read.user_id, lat, lng, items)
    else:
        scores = rank(bundle, snap, read.user_id, lat, lng, items)
    return {"model": model, "scores": [float(s) for s in scores]}


READERS: dict[type[ShardRead], Reader] = {RankRead: recommend_rank}
HANDLERS: dict[type[ShardCommand], Handler] = {}
