"""Idempotency keys (rule 1): the first result of a mutation, unique per (user, key).

A batch's first results are written inside the writer's transaction with its other rows
(store/batch_write.py), so they commit with the effects. A retry fails the batch on the primary
key and the batch is re-run carefully, where ``lookup`` (inside the transaction) finds the
first result.
"""

from __future__ import annotations

from typing import Any

from models.errors import Conflict
from store.db import Conn


async def lookup(
    conn: Conn, user_id: str, key: str, op: str, fingerprint: str | None = None
) -> Any | None:
    """The first result under ``(user_id, key)``, or None; ``conflict`` if the key was used
    for another op, or for this op with other data (its ``fingerprint`` differs)."""
    row = await conn.fetchrow(
        "SELECT op, result, fingerprint FROM idempotency WHERE user_id = $1 AND key = $2",
        user_id,
        key,
    )
    if row is None:
        return None
    if row["op"] != op:
        raise Conflict(f"idempotency key already used for {row['op']}")
    if fingerprint is not None and row["fingerprint"] not in (None, fingerprint):
        raise Conflict(f"idempotency key already used for {op} with other data")
    return row["result"]
