"""A shard batch's deferred rows in one statement: stream heads, events, chat messages and
idempotency records (actors/cell_host.py, fast path of actors/group_commit.py).

One round trip for the whole batch instead of one per command. The heads move by
compare-and-set: ``write`` returns False (and the caller must roll back) if any head was not
at the offset the shard believed, so two writers can never both commit the same offsets.
A duplicate idempotency key or message raises the unique violation, as separate inserts would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from models.streams import Event, compact_json

HeadChange = tuple[str, str, int, int]
"""(stream, epoch, expected last offset, new last offset)."""

_WRITE = """
WITH h AS (
    UPDATE streams s SET last_offset = v.new
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(name, epoch, old, new)
    WHERE s.name = v.name AND s.epoch = v.epoch AND s.last_offset = v.old
    RETURNING 1
), e AS (
    INSERT INTO stream_events (stream, "offset", ev, data)
    SELECT stream, "offset", ev, data::jsonb
    FROM unnest($5::text[], $6::bigint[], $7::text[], $8::text[]) AS x(stream, "offset", ev, data)
), m AS (
    INSERT INTO messages (id, room_id, cell, sender_id, text, "offset", created_at)
    SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                         $14::bigint[], $15::timestamptz[])
), i AS (
    INSERT INTO idempotency (user_id, key, op, result)
    SELECT user_id, key, op, result::jsonb
    FROM unnest($16::text[], $17::text[], $18::text[], $19::text[]) AS y(user_id, key, op, result)
)
SELECT count(*) FROM h
"""


async def write(
    conn: asyncpg.Connection,
    heads: list[HeadChange],
    events: list[Event],
    messages: list[dict[str, Any]],
    records: list[tuple[str, str, str, Any]],
) -> bool:
    """Write everything inside the caller's transaction; False if a head had moved."""
    if not (heads or events or messages or records):
        return True
    moved = await conn.fetchval(
        _WRITE,
        [h[0] for h in heads],
        [h[1] for h in heads],
        [h[2] for h in heads],
        [h[3] for h in heads],
        [e.stream for e in events],
        [e.offset for e in events],
        [e.ev for e in events],
        [e.data_json for e in events],
        [m["id"] for m in messages],
        [m["room_id"] for m in messages],
        [m["cell"] for m in messages],
        [m["sender_id"] for m in messages],
        [m["text"] for m in messages],
        [m["offset"] for m in messages],
        [datetime.fromisoformat(m["created_at"]) for m in messages],
        [r[0] for r in records],
        [r[1] for r in records],
        [r[2] for r in records],
        [compact_json(r[3]) for r in records],
    )
    return bool(moved == len(heads))
