"""SQL of the admin side: the audit log, roles and suspensions, moderation actions, reports.

Writers take a connection and run inside the caller's transaction: an action and its audit
entry commit together or not at all. The audit log is only ever inserted into (the database
refuses UPDATE, DELETE and TRUNCATE on it: migration 0006).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from models.admin import SeqCursor
from models.ids import new_id
from models.streams import Event, user_stream
from store import events
from store.db import Conn, Db


def iso(value: datetime | None) -> str | None:
    """A timestamp as the API shows it (ISO 8601), or None."""
    return value.isoformat() if value is not None else None


# -- audit log ----------------------------------------------------------------------------------
async def audit(
    conn: Db,
    actor_id: str | None,
    action: str,
    target: str,
    reason: str | None,
    result: dict[str, Any],
) -> str:
    entry_id = new_id()
    await conn.execute(
        "INSERT INTO audit_log (id, actor_id, action, target, reason, result)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        entry_id,
        actor_id,
        action,
        target,
        reason,
        result,
    )
    return entry_id


def _entry(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "actor_id": row["actor_id"],
        "action": row["action"],
        "target": row["target"],
        "reason": row["reason"],
        "result": row["result"],
        "at": iso(row["at"]),
    }


async def audit_page(
    db: Db,
    actor_id: str | None,
    target: str | None,
    action: str | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    before = SeqCursor.decode(cursor)
    rows = await db.fetch(
        "SELECT seq, id, actor_id, action, target, reason, result, at FROM audit_log"
        " WHERE ($1::text IS NULL OR actor_id = $1) AND ($2::text IS NULL OR target = $2)"
        " AND ($3::text IS NULL OR action = $3) AND ($4::bigint IS NULL OR seq < $4)"
        " ORDER BY seq DESC LIMIT $5",
        actor_id,
        target,
        action,
        before,
        limit + 1,
    )
    items = [_entry(r) for r in rows[:limit]]
    more = len(rows) > limit
    return {
        "items": items,
        "next_cursor": SeqCursor.encode(rows[limit - 1]["seq"]) if more else None,
    }


# -- users: roles and suspensions ---------------------------------------------------------------
_ADMIN_USER = (
    "id, email, display_name, roles, created_at, disabled_at, suspended_until, suspension_reason"
)


def admin_user(row: asyncpg.Record) -> dict[str, Any]:
    """A user as admins see it: the public fields plus the suspension."""
    suspended = row["disabled_at"] is not None
    return {
        "id": row["id"],
        "email": row["email"],
        "display_name": row["display_name"],
        "roles": list(row["roles"]),
        "created_at": iso(row["created_at"]),
        "suspended": suspended,
        "suspended_until": iso(row["suspended_until"]) if suspended else None,
        "suspension_reason": row["suspension_reason"] if suspended else None,
    }


async def user_row(db: Db, user_id: str, lock: bool = False) -> asyncpg.Record | None:
    sql = f"SELECT {_ADMIN_USER} FROM users WHERE id = $1"
    return await db.fetchrow(sql + (" FOR UPDATE" if lock else ""), user_id)


async def user_id_by_email(db: Db, email_norm: str) -> str | None:
    value = await db.fetchval("SELECT id FROM users WHERE email_norm = $1", email_norm)
    return str(value) if value is not None else None


async def set_roles(conn: Conn, user_id: str, roles: tuple[str, ...]) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"UPDATE users SET roles = $2 WHERE id = $1 RETURNING {_ADMIN_USER}", user_id, list(roles)
    )
    assert row is not None
    return row


async def suspend(conn: Conn, user_id: str, reason: str, until: datetime | None) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE users SET disabled_at = coalesce(disabled_at, now()), suspended_until = $2,"
        f" suspension_reason = $3 WHERE id = $1 RETURNING {_ADMIN_USER}",
        user_id,
        until,
        reason,
    )
    assert row is not None
    return row


async def unsuspend(conn: Conn, user_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE users SET disabled_at = NULL, suspended_until = NULL, suspension_reason = NULL"
        f" WHERE id = $1 RETURNING {_ADMIN_USER}",
        user_id,
    )
    assert row is not None
    return row


async def expired_suspensions(db: Db, limit: int = 100) -> list[str]:
    rows = await db.fetch(
        "SELECT id FROM users WHERE disabled_at IS NOT NULL AND suspended_until <= now()"
        " ORDER BY suspended_until LIMIT $1",
        limit,
    )
    return [r["id"] for r in rows]


async def suspension_of(db: Db, user_id: str) -> dict[str, Any] | None:
    """``{reason: "suspended", until}`` while the user is suspended, else None."""
    row = await db.fetchrow("SELECT disabled_at, suspended_until FROM users WHERE id = $1", user_id)
    if row is None or row["disabled_at"] is None:
        return None
    return {"reason": "suspended", "until": iso(row["suspended_until"])}


# -- moderation actions (what an appeal names) --------------------------------------------------
def action_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "target": {"kind": row["target_kind"], "id": row["target_id"]},
        "user_id": row["user_id"],
        "reason": row["reason"],
        "until": iso(row["until"]),
        "created_at": iso(row["created_at"]),
        "reversed": row["reversed_at"] is not None,
    }


async def add_action(
    conn: Conn,
    kind: str,
    target_kind: str,
    target_id: str,
    user_id: str,
    actor_id: str | None,
    reason: str,
    until: datetime | None = None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO moderation_actions (id, kind, target_kind, target_id, user_id, actor_id,"
        " reason, until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        new_id(),
        kind,
        target_kind,
        target_id,
        user_id,
        actor_id,
        reason,
        until,
    )
    assert row is not None
    return row


async def action_row(db: Db, action_id: str, lock: bool = False) -> asyncpg.Record | None:
    sql = "SELECT * FROM moderation_actions WHERE id = $1"
    return await db.fetchrow(sql + (" FOR UPDATE" if lock else ""), action_id)


async def open_suspension_actions(conn: Conn, user_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT id FROM moderation_actions WHERE user_id = $1 AND kind = 'suspend'"
        " AND reversed_at IS NULL",
        user_id,
    )
    return [r["id"] for r in rows]


async def reverse_actions(conn: Conn, action_ids: list[str], by: str | None) -> None:
    await conn.execute(
        "UPDATE moderation_actions SET reversed_at = now(), reversed_by = $2"
        " WHERE id = ANY($1::text[]) AND reversed_at IS NULL",
        action_ids,
        by,
    )


# -- inbox notices ------------------------------------------------------------------------------
async def inbox_event(conn: Conn, user_id: str, ev: str, data: dict[str, Any]) -> Event:
    """Append ``ev`` to ``user:<id>`` inside the caller's transaction (offsets by row lock:
    store/events.py); publish the returned event after commit."""
    stream = user_stream(user_id)
    epoch, offset = await events.reserve(conn, stream, 1)
    event = Event(stream, epoch, offset, ev, data)
    await conn.execute(
        'INSERT INTO stream_events (stream, "offset", ev, data)'
        " VALUES ($1, $2, $3, ($4::text)::jsonb)",
        stream,
        offset,
        ev,
        event.data_json,
    )
    return event
