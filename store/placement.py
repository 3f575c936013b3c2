"""The placement table in Postgres: one versioned row (see models/placement.py)."""

from __future__ import annotations

import asyncpg

from models.placement import Placement
from store.db import Db


async def load(db: Db) -> Placement | None:
    row = await db.fetchrow("SELECT version, shards, overrides FROM placement WHERE id = 1")
    return Placement.from_dict(dict(row)) if row else None


async def ensure(db: asyncpg.Pool, shards: tuple[str, ...]) -> Placement:
    """The stored table, created or re-versioned if its shard list differs from ``shards``."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE placement IN EXCLUSIVE MODE")
        current = await load(conn)
        if current is not None and current.shards == shards:
            return current
        table = current.with_shards(shards) if current else Placement(1, shards)
        await conn.execute(
            "INSERT INTO placement (id, version, shards, overrides) VALUES (1, $1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET version = $1, shards = $2, overrides = $3",
            table.version,
            list(table.shards),
            table.overrides,
        )
        return table
