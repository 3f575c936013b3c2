"""Idempotency keys (rule 1): the first result of a mutation, unique per (user, key).

A batch's first results are written inside the writer's transaction with its other rows
(store/batch_write.py), so they commit with the effects. A retry fails the batch on the primary
key and the batch is re-run carefully, where ``lookup`` (inside the transaction) finds the
first result.
"""

from __future__ import annotations

from typing import Any

from models.errors import AppError, Conflict
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
    return _first(row, op, fingerprint)


def _first(row: Any, op: str, fingerprint: str | None) -> Any:
    if row["op"] != op:
        raise Conflict(f"idempotency key already used for {row['op']}")
    if fingerprint is not None and row["fingerprint"] not in (None, fingerprint):
        raise Conflict(f"idempotency key already used for {op} with other data")
    return row["result"]


async def lookup_many(
    conn: Conn, asks: list[tuple[str, str, str, str | None]]
) -> list[Any | AppError | None]:
    """``lookup`` of each ``(user_id, key, op, fingerprint)`` in one query: its first result,
    None, or the ``Conflict`` ``lookup`` would raise."""
    rows = await conn.fetch(
        "SELECT i.user_id, i.key, i.op, i.result, i.fingerprint FROM idempotency i"
        " JOIN unnest($1::text[], $2::text[]) AS a(user_id, key)"
        " ON i.user_id = a.user_id AND i.key = a.key",
        [a[0] for a in asks],
        [a[1] for a in asks],
    )
    found = {(r["user_id"], r["key"]): r for r in rows}
    out: list[Any | AppError | None] = []
    for user_id, key, op, fingerprint in asks:
        row = found.get((user_id, key))
        try:
            out.append(None if row is None else _first(row, op, fingerprint))
        except Conflict as err:
            out.append(err)
    return out
