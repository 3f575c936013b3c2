"""The per-stream event log in Postgres (rule 3: streams resume, never skip).

``reserve`` runs inside the writer's transaction: it takes the stream row's lock and assigns the
next offsets; the writer inserts the events in the same transaction (store/batch_write.py), so
offsets are gap-free and commit atomically with the change they describe. (The owner of a
single-writer stream assigns them from memory instead: actors/stream_heads.py.) Readers
(recovery) see only committed events.
"""

from __future__ import annotations

import secrets

from models.streams import Event, Position
from store.db import Conn, Db, one


def new_epoch() -> str:
    return secrets.token_hex(4)


async def reserve(conn: Conn, stream: str, count: int) -> tuple[str, int]:
    """Take the next ``count`` offsets of ``stream`` inside the caller's transaction.

    Returns (epoch, first offset). The stream row stays locked until the transaction ends, so
    offsets are gap-free and commit (or roll back) with the change they describe.
    """
    row = one(
        await conn.fetchrow(
            "INSERT INTO streams (name, epoch, last_offset) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO UPDATE SET last_offset = streams.last_offset + $3"
            " RETURNING epoch, last_offset",
            stream,
            new_epoch(),
            count,
        )
    )
    return row["epoch"], row["last_offset"] - count + 1


async def position(db: Db, stream: str) -> Position:
    """The stream's current committed position, creating the (empty) stream on first sight.

    A plain read when the stream exists (no write, no wait on a writer's row lock); only a
    stream's very first reader inserts it.
    """
    row = await db.fetchrow("SELECT epoch, last_offset FROM streams WHERE name = $1", stream)
    if row is None:
        row = await db.fetchrow(
            "INSERT INTO streams (name, epoch) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
            " RETURNING epoch, last_offset",
            stream,
            new_epoch(),
        )
        if row is None:  # created concurrently
            row = one(
                await db.fetchrow("SELECT epoch, last_offset FROM streams WHERE name = $1", stream)
            )
    return Position(row["epoch"], row["last_offset"])


async def read_range(db: Db, stream: str, epoch: str, after: int, upto: int | None) -> list[Event]:
    """Committed events with ``after < offset <= upto`` (``upto`` None: to the end), in order."""
    rows = await db.fetch(
        'SELECT "offset", ev, data FROM stream_events WHERE stream = $1 AND "offset" > $2'
        ' AND ($3::bigint IS NULL OR "offset" <= $3) ORDER BY "offset"',
        stream,
        after,
        upto,
    )
    return [Event(stream, epoch, r["offset"], r["ev"], r["data"]) for r in rows]
