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
from collections.abc import Callable
from typing import Any

import asyncpg

from models.cells import Geo
from models.errors import Conflict, NotFound
from models.placement import Placement, cell_key
from store import placement

log = logging.getLogger("hyperlocal.cluster")


async def _change(
    db: asyncpg.Pool, change: Callable[[Placement], tuple[Placement, dict[str, Any]]]
) -> dict[str, Any]:
    """Put ``change(table in force)`` in force under the placement row's lock (the change may
    refuse with a typed error); its record, with the new version."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM placement WHERE id = 1 FOR UPDATE")
        table = await placement.load(conn)
        if table is None:
            raise Conflict("no placement table yet: is the deployment up?")
        new, record = change(table)
        await placement.save(conn, new)
    return {**record, "placement_version": new.version}


def _cell(geo: Geo, cell: str) -> str:
    if not geo.is_cell(cell):
        raise NotFound(f"no such cell {cell[:40]!r} at resolution {geo.resolution}")
    return cell_key(cell)


async def move_cell(db: asyncpg.Pool, geo: Geo, cell: str, shard: str) -> dict[str, Any]:
    """Make ``shard`` the owner of ``cell`` (pinned there by an override); the move's record.

    ``not_found`` for a cell that is not one of this deployment's resolution or a shard not in
    the table, ``conflict`` when ``shard`` owns it already."""
    key = _cell(geo, cell)

    def move(table: Placement) -> tuple[Placement, dict[str, Any]]:
        if shard not in table.shards:
            raise NotFound(f"no shard {shard!r} (shards: {', '.join(table.shards)})")
        before = table.owner(key)
        if before == shard:
            raise Conflict(f"{shard} owns {cell} already", shard=shard)
        return table.with_override(key, shard), {"cell": cell, "from": before, "shard": shard}

    record = await _change(db, move)
    log.info("cell moved", extra=record)
    return record


async def unpin_cell(db: asyncpg.Pool, geo: Geo, cell: str) -> dict[str, Any]:
    """Drop ``cell``'s override: rendezvous hashing places it again (a move, if that is
    another shard). ``conflict`` if it has none."""
    key = _cell(geo, cell)

    def unpin(table: Placement) -> tuple[Placement, dict[str, Any]]:
        if key not in table.overrides:
            raise Conflict(f"{cell} is not pinned")
        overrides = {k: v for k, v in table.overrides.items() if k != key}
        new = Placement(table.version + 1, table.shards, overrides)
        return new, {"cell": cell, "from": table.owner(key), "shard": new.owner(key)}

    record = await _change(db, unpin)
    log.info("cell unpinned", extra=record)
    return record
