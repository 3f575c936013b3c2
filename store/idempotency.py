"""Idempotency keys (rule 1): the first result of a mutation, unique per (user, key).

``lookup_many`` answers retries of committed commands before a batch starts; ``record_many``
writes a batch's first results inside the writer's transaction, so they commit with the
effects. A duplicate fails on the primary key and the batch is re-run carefully, where
``lookup`` (inside the transaction) finds the first result.
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


async def lookup_many(
    db: asyncpg.Pool | asyncpg.Connection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, Any]]:
    """Committed records of ``keys`` ((user, key) pairs): {(user, key): (op, result)}."""
    if not keys:
        return {}
    rows = await db.fetch(
        """SELECT i.user_id, i.key, i.op, i.result
           FROM idempotency i JOIN unnest($1::text[], $2::text[]) AS k(user_id, key)
             ON i.user_id = k.user_id AND i.key = k.key""",
        [u for u, _ in keys],
        [k for _, k in keys],
    )
    return {(r["user_id"], r["key"]): (r["op"], r["result"]) for r in rows}


async def record_many(conn: asyncpg.Connection, rows: list[tuple[str, str, str, Any]]) -> None:
    """Record several first results at once (a duplicate key fails the whole statement)."""
    await conn.executemany(
        "INSERT INTO idempotency (user_id, key, op, result) VALUES ($1, $2, $3, $4)", rows
    )
