"""Idempotency keys (rule 1): the first result of a mutation, unique per (user, key).

Both calls run inside the writer's transaction, so the record commits with the effect. A
concurrent duplicate that slips past ``lookup`` fails on the primary key and is retried by the
caller as a lookup.
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


async def record(conn: asyncpg.Connection, user_id: str, key: str, op: str, result: Any) -> None:
    await conn.execute(
        "INSERT INTO idempotency (user_id, key, op, result) VALUES ($1, $2, $3, $4)",
        user_id,
        key,
        op,
        result,
    )
