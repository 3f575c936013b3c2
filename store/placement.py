"""The placement table in Postgres: one versioned row (see models/placement.py), and the
shards' fences that make a change of it take effect inside every shard's next batch."""

from __future__ import annotations

import asyncpg

from models.placement import Placement
from store.db import Conn, Db


async def load(db: Db) -> Placement | None:
    row = await db.fetchrow(
        "SELECT version, shards, overrides, dedicated FROM placement WHERE id = 1"
    )
    return Placement.from_dict(dict(row)) if row else None


async def ensure(db: asyncpg.Pool, shards: tuple[str, ...]) -> Placement:
    """The stored table, created or re-versioned if its shard list differs from ``shards``."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE placement IN EXCLUSIVE MODE")
        current = await load(conn)
        if current is not None and current.shards == shards:
            return current
        table = current.with_shards(shards) if current else Placement(1, shards)
        await save(conn, table)
        return table


async def save(conn: Conn, table: Placement) -> None:
    """Put ``table`` in force, in the caller's transaction: the row, and every shard's fence
    at its version. Updating a fence waits for that shard's batch in flight (it holds a share
    lock on its fence until it commits); once this commits, a batch at an older version
    fails its fence (``FENCED``) and writes nothing (store/migrations/0009_fencing.sql)."""
    await conn.execute(
        "INSERT INTO placement (id, version, shards, overrides, dedicated)"
        " VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE"
        " SET version = $1, shards = $2, overrides = $3, dedicated = $4",
        table.version,
        list(table.shards),
        table.overrides,
        sorted(table.dedicated),
    )
    await conn.execute(
        "INSERT INTO shard_fences (shard, version) SELECT unnest($1::text[]), $2"
        " ON CONFLICT (shard) DO UPDATE SET version = $2",
        list(table.shards),
        table.version,
    )
    await conn.execute("UPDATE shard_fences SET version = $1 WHERE version <> $1", table.version)


FENCED = "HLF01"
"""The SQLSTATE of a batch whose shard's fence is at another placement version."""


def fenced(exc: BaseException) -> bool:
    """Did a statement fail its shard's fence?"""
    return isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == FENCED
