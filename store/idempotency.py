"""Idempotency keys (rule 1): the first result of a mutation, unique per (user, key).

``record_many`` writes a batch's first results inside the writer's transaction, so they commit
with the effects. A retry fails the batch on the primary key and the batch is re-run
carefully, where ``lookup`` (inside the transaction) finds the first result.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from models.errors import Conflict


async def lookup(conn: asyncpg.Connection, user_id: str, key: str, op: str) -> Any | None:
    row = await conn.fetchrow(
        "SELECT op, result FROM idempotency WHERE user_id = $1 AND key = $2", user_id, key
    )
    if row is None:
        return None
    if row["op"] != op:
        raise Conflict(f"idempotency key already used for {row['op']}")
    return row["result"]


async def record_many(conn: asyncpg.Connection, rows: list[tuple[str, str, str, Any]]) -> None:
    """Record several first results at once (a duplicate key fails the whole statement)."""
    await conn.executemany(
        "INSERT INTO idempotency (user_id, key, op, result) VALUES ($1, $2, $3, $4)", rows
    )
