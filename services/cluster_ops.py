"""Ops on the placement table: move a cell to another shard, live (issue 13).

A move is a new version of the table with an override for the cell, put in force by
``store/placement.py: save``, which waits for the old owner's batch in flight (its fence's
share lock) and fences every later one: the old owner writes nothing after the move commits,
answers ``moved``, and the routers send the cell's commands to the new owner, which activates
it from Postgres. Streams continue from their committed heads (numbered by whoever writes
next), so subscribers see no gap and no duplicate; acknowledged writes are all in Postgres.
Holds no state of its own; concurrent changes of the table are serialised by its row lock.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from models.cells import Geo
from models.errors import Conflict, NotFound
from models.placement import Placement, cell_key
from store import placement

log = logging.getLogger("hyperlocal.cluster")


async def move_cell(db: asyncpg.Pool, geo: Geo, cell: str, shard: str) -> dict[str, Any]:
    """Make ``shard`` the owner of ``cell`` (pinned there by an override); the move's record.

    ``not_found`` for a cell that is not one of this deployment's resolution or a shard not in
    the table, ``conflict`` when ``shard`` owns it already."""
    if not geo.is_cell(cell):
        raise NotFound(f"no such cell {cell[:40]!r} at resolution {geo.resolution}")
    key = cell_key(cell)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM placement WHERE id = 1 FOR UPDATE")
        table = await placement.load(conn)
        if table is None:
            raise Conflict("no placement table yet: is the deployment up?")
        if shard not in table.shards:
            raise NotFound(f"no shard {shard!r} (shards: {', '.join(table.shards)})")
        before = table.owner(key)
        if before == shard:
            raise Conflict(f"{shard} owns {cell} already", shard=shard)
        moved = table.with_override(key, shard)
        await placement.save(conn, moved)
    log.info(
        "cell moved",
        extra={"cell": cell, "from": before, "to": shard, "placement_version": moved.version},
    )
    return {"cell": cell, "from": before, "shard": shard, "placement_version": moved.version}


async def unpin_cell(db: asyncpg.Pool, geo: Geo, cell: str) -> dict[str, Any]:
    """Drop ``cell``'s override: rendezvous hashing places it again (a move, if that is
    another shard). ``conflict`` if it has none."""
    if not geo.is_cell(cell):
        raise NotFound(f"no such cell {cell[:40]!r} at resolution {geo.resolution}")
    key = cell_key(cell)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM placement WHERE id = 1 FOR UPDATE")
        table = await placement.load(conn)
        if table is None or key not in table.overrides:
            raise Conflict(f"{cell} is not pinned")
        before = table.owner(key)
        overrides = {k: v for k, v in table.overrides.items() if k != key}
        unpinned = Placement(table.version + 1, table.shards, overrides)
        await placement.save(conn, unpinned)
    return {
        "cell": cell,
        "from": before,
        "shard": unpinned.owner(key),
        "placement_version": unpinned.version,
    }
