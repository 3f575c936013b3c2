"""SQL for rooms, members and messages. Writers run inside the owning shard's transaction;
readers (membership checks, history, room lists) may run anywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from store.db import Conn, Db, one


def _iso(value: datetime) -> str:
    return value.isoformat()


def room_from_row(row: asyncpg.Record, members: list[str]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "cell": row["cell"],
        "title": row["title"],
        "members": members,
        "created_by": row["created_by"],
        "created_at": _iso(row["created_at"]),
    }


async def users_exist(db: Db, user_ids: list[str]) -> set[str]:
    rows = await db.fetch("SELECT id FROM users WHERE id = ANY($1::text[])", user_ids)
    return {r["id"] for r in rows}


async def create_room(
    conn: Conn,
    room_id: str,
    kind: str,
    cell: str,
    title: str | None,
    pair: str | None,
    created_by: str,
    members: list[str],
) -> bool:
    """Insert the room and its members; False if it already existed (nothing changed)."""
    status = await conn.execute(
        """INSERT INTO rooms (id, kind, cell, title, pair_key, created_by)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        room_id,
        kind,
        cell,
        title,
        pair,
        created_by,
    )
    if status == "INSERT 0 0":
        return False
    await conn.executemany(
        "INSERT INTO room_members (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(room_id, m) for m in members],
    )
    return True


async def get_room(db: Db, room_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT id, kind, cell, title, created_by, created_at FROM rooms WHERE id = $1", room_id
    )
    if row is None:
        return None
    return room_from_row(row, await members(db, room_id))


async def members(db: Db, room_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT user_id FROM room_members WHERE room_id = $1 ORDER BY joined_at, user_id", room_id
    )
    return [r["user_id"] for r in rows]


async def membership(db: Db, room_id: str, user_id: str) -> str:
    """'member', 'outsider' (the room exists, the user is not in it) or 'missing'."""
    row = one(
        await db.fetchrow(
            """SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2) AS m,
                  EXISTS (SELECT 1 FROM rooms WHERE id = $1) AS r""",
            room_id,
            user_id,
        )
    )
    if row["m"]:
        return "member"
    return "outsider" if row["r"] else "missing"


async def add_member(conn: Conn, room_id: str, user_id: str) -> bool:
    status = await conn.execute(
        "INSERT INTO room_members (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        room_id,
        user_id,
    )
    return status != "INSERT 0 0"


async def remove_member(conn: Conn, room_id: str, user_id: str) -> bool:
    status = await conn.execute(
        "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2", room_id, user_id
    )
    return status != "DELETE 0"


async def advance_read(conn: Conn, room_id: str, user_id: str, offset: int) -> bool:
    """Move the member's read position forward to ``offset``; False if it was not behind."""
    status = await conn.execute(
        """UPDATE room_members SET read_offset = $3
           WHERE room_id = $1 AND user_id = $2 AND read_offset < $3""",
        room_id,
        user_id,
        offset,
    )
    return status != "UPDATE 0"


async def history(db: Db, room_id: str, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` messages with offset < ``before``, newest first."""
    rows = await db.fetch(
        """SELECT id, room_id, cell, sender_id, text, "offset", created_at FROM messages
           WHERE room_id = $1 AND ($2::bigint IS NULL OR "offset" < $2) AND removed_at IS NULL
           ORDER BY "offset" DESC LIMIT $3""",
        room_id,
        before,
        limit,
    )
    return [
        {
            "id": r["id"],
            "room_id": r["room_id"],
            "cell": r["cell"],
            "sender_id": r["sender_id"],
            "text": r["text"],
            "offset": r["offset"],
            "created_at": _iso(r["created_at"]),
        }
        for r in rows
    ]


async def rooms_of(db: Db, user_id: str) -> list[dict[str, Any]]:
    """The user's direct and group rooms with their read position and last offset."""
    rows = await db.fetch(
        """SELECT r.id, r.kind, r.cell, r.title, r.created_by, r.created_at, m.read_offset,
                  COALESCE(s.last_offset, 0) AS last_offset,
                  ARRAY(SELECT user_id FROM room_members WHERE room_id = r.id
                        ORDER BY joined_at, user_id) AS members
           FROM room_members m JOIN rooms r ON r.id = m.room_id
           LEFT JOIN streams s ON s.name = 'room:' || r.id
           WHERE m.user_id = $1 ORDER BY r.created_at DESC LIMIT 500""",
        user_id,
    )
    out = []
    for r in rows:
        room = room_from_row(r, list(r["members"]))
        room.update(read_offset=r["read_offset"], last_offset=r["last_offset"])
        out.append(room)
    return out
