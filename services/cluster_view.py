"""What ops see of the cluster: shards, their node, cells, load, hot cells (issue 13).

``ClusterView`` asks every shard of the placement table for its stats (through the router's
transport, in parallel, each bounded by ``shard_call_timeout_s``) and counts the cells each one
owns among the cells Postgres knows (those with a feed or a cell room stream). A shard that
does not answer is listed with ``up: false``, never an error: the view is what ops look at when
something is wrong. ``snapshot`` is cached ``cluster_view_cache_s`` for /metrics.
Holds only that cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import asyncpg

from cluster import gcpolicy
from models.errors import AppError, Conflict
from models.placement import Placement, cell_key
from services.router import ShardRouter
from store import placement

log = logging.getLogger("hyperlocal.cluster")

_CELL_STREAMS = (
    "SELECT DISTINCT CASE WHEN name LIKE 'feed:%' THEN substr(name, 6) ELSE substr(name, 11) END"
    " AS cell FROM streams WHERE name LIKE 'feed:%' OR name LIKE 'room:cell-%'"
)


class ClusterView:
    """Reads the shards' stats and the placement table; see the module docstring."""

    def __init__(
        self, db: asyncpg.Pool, router: ShardRouter, timeout_s: float, cache_s: float
    ) -> None:
        self.db = db
        self.router = router
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def table(self) -> Placement:
        table = await placement.load(self.db)
        if table is None:
            raise Conflict("no placement table yet: is the deployment up?")
        return table

    async def _stats(self, shard: str, cell: str | None = None) -> dict[str, Any]:
        try:
            stats = await asyncio.wait_for(self.router.stats(shard, cell), self.timeout_s)
        except (AppError, TimeoutError) as exc:
            log.warning("cluster view: shard %s did not answer: %r", shard, exc)
            return {"name": shard, "up": False}
        return {**stats, "up": True}

    async def _cells_by_owner(self, table: Placement) -> Counter[str]:
        rows = await self.db.fetch(_CELL_STREAMS)
        return Counter(table.owner(cell_key(r["cell"])) for r in rows)

    async def view(self, count_cells: bool = True) -> dict[str, Any]:
        """``{placement_version, shards: [{id, node, up, cells, active_cells, calls_per_s,
        batch_size_mean, commit_ms_mean, hot_cells, pinned, dedicated}], hot_cells}``.
        ``count_cells`` False skips the scan of the streams table (``cells`` are then 0)."""
        table = await self.table()
        stats, owned = await asyncio.gather(
            asyncio.gather(*(self._stats(s) for s in table.shards)),
            self._cells_by_owner(table) if count_cells else _no_cells(),
        )
        pinned = Counter(table.overrides.values())
        shards = [_shard_row(table, s, owned[s["name"]], pinned[s["name"]]) for s in stats]
        hot = sorted(
            ({**c, "shard": row["id"]} for row in shards for c in row["hot_cells"]),
            key=lambda c: -float(c["msgs_per_s"]),
        )
        return {
            "placement_version": table.version,
            "shards": shards,
            "hot_cells": hot[:20],
        }

    async def cell(self, key_cell: str) -> dict[str, Any]:
        """``{cell, shard, pinned, dedicated, active, msgs_per_s, placement_version}``."""
        table = await self.table()
        key = cell_key(key_cell)
        owner = table.owner(key)
        stats = await self._stats(owner, key_cell)
        here = stats.get("cell") or {}
        return {
            "cell": key_cell,
            "shard": owner,
            "pinned": key in table.overrides,
            "dedicated": owner in table.dedicated,
            "active": bool(here.get("active", False)),
            "msgs_per_s": float(here.get("msgs_per_s", 0.0)),
            "shard_up": stats["up"],
            "placement_version": table.version,
        }

    def last(self) -> dict[str, Any]:
        """The last ``snapshot`` taken (an empty view before the first)."""
        if self._cached is None:
            return {"placement_version": 0, "shards": [], "hot_cells": []}
        return self._cached[1]

    async def snapshot(self) -> dict[str, Any]:
        """``view()`` without the cell count (a scrape does not scan the streams table), at
        most ``cache_s`` old (a failure keeps the last one, logged)."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= self.cache_s:
            try:
                self._cached = (now, await self.view(count_cells=False))
            except (AppError, asyncpg.PostgresError, OSError) as exc:
                log.warning("cluster view for metrics failed: %r", exc)
        return self.last()


async def _no_cells() -> Counter[str]:
    return Counter()


def _shard_row(table: Placement, stats: dict[str, Any], cells: int, pinned: int) -> dict[str, Any]:
    name = str(stats["name"])
    return {
        "id": name,
        "node": stats.get("node"),
        "up": stats["up"],
        "cells": cells,
        "active_cells": int(stats.get("active_cells", 0)),
        "calls_per_s": float(stats.get("calls_per_s", 0.0)),
        "commands": int(stats.get("commands", 0)),
        "batches": int(stats.get("batches", 0)),
        "batch_size_mean": float(stats.get("batch_size_mean", 0.0)),
        "commit_ms_mean": float(stats.get("commit_ms_mean", 0.0)),
        "commit_s": float(stats.get("commit_s", 0.0)),
        # the shard process's collector: a pause stops every command of the cells it owns
        **{name: float(stats.get(name, 0.0)) for name in gcpolicy.GAUGES},
        "hot_cells": list(stats.get("hot_cells", [])),
        "pinned": pinned,
        "dedicated": name in table.dedicated,
    }
