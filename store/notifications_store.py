"""SQL of the notification centre and its delivery outbox (store/migrations/0012).

Rows are written by the ``hl_notify`` trigger in the transaction of their inbox event; this
module reads them, marks them read, and claims and settles deliveries for the notifier
(``FOR UPDATE SKIP LOCKED`` plus a lease on ``next_at``: several gateways never hold one row).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from store.db import Conn, Db


def item_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "data": row["data"],
        "created_at": row["created_at"].isoformat(),
        "read": row["read_at"] is not None,
        "count": row["fold_count"],
        "actors": list(row["fold_actors"]),
    }


async def page(
    db: Db, user_id: str, before: int | None, limit: int, unread_only: bool
) -> list[asyncpg.Record]:
    """Newest-first heads (a folded group is one item) with ``id < before``."""
    return await db.fetch(
        "SELECT * FROM notifications WHERE user_id = $1 AND head"
        " AND ($2::bigint IS NULL OR id < $2) AND (NOT $3 OR read_at IS NULL)"
        " ORDER BY id DESC LIMIT $4",
        user_id,
        before,
        unread_only,
        limit,
    )


async def unread(db: Db, user_id: str) -> int:
    """Unread items (heads): what a badge shows."""
    value = await db.fetchval(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND head AND read_at IS NULL",
        user_id,
    )
    return int(value or 0)


async def mark_read(db: Db, user_id: str, ids: list[int] | None) -> int:
    """Mark the items ``ids`` (each with every row it folds), or all (None), read; how many
    rows changed. Ids of other users' rows change nothing."""
    status = await db.execute(
        "WITH picked AS (SELECT group_key, id FROM notifications"
        " WHERE user_id = $1 AND id = ANY($2::bigint[]))"
        " UPDATE notifications n SET read_at = now()"
        " WHERE n.user_id = $1 AND n.read_at IS NULL AND ($2::bigint[] IS NULL"
        " OR n.id = ANY($2::bigint[])"
        " OR EXISTS (SELECT 1 FROM picked p WHERE p.group_key = n.group_key AND n.id < p.id))",
        user_id,
        ids,
    )
    return int(status.split()[-1])


async def settings_of(db: Db, user_id: str) -> dict[str, Any] | None:
    row = await db.fetchval(
        "SELECT settings FROM notification_settings WHERE user_id = $1", user_id
    )
    return dict(row) if row is not None else None


async def save_settings(db: Db, user_id: str, settings: dict[str, Any]) -> None:
    await db.execute(
        "INSERT INTO notification_settings (user_id, settings) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()",
        user_id,
        settings,
    )


# -- push subscriptions -------------------------------------------------------------------------
async def add_subscription(db: Db, user_id: str, endpoint: str, p256dh: str, auth: str) -> None:
    """One row per device; a device that re-subscribes (or changes hands) takes its endpoint."""
    await db.execute(
        "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (endpoint) DO UPDATE SET user_id = $2, p256dh = $3, auth = $4,"
        " created_at = now()",
        endpoint,
        user_id,
        p256dh,
        auth,
    )


async def remove_subscription(db: Db, endpoint: str, user_id: str | None = None) -> bool:
    status = await db.execute(
        "DELETE FROM push_subscriptions WHERE endpoint = $1 AND ($2::text IS NULL OR user_id = $2)",
        endpoint,
        user_id,
    )
    return status.endswith(" 1")


async def subscriptions(db: Db, user_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT endpoint, p256dh, auth FROM push_subscriptions"
        " WHERE user_id = $1 ORDER BY endpoint",
        user_id,
    )


# -- the outbox ---------------------------------------------------------------------------------
async def enqueue(
    conn: Conn, user_id: str, kind: str, channel: str, source: str, payload: dict[str, Any]
) -> bool:
    """A delivery of its own (account emails, promotions' fan-out); False if ``source`` was
    queued on ``channel`` already (dedupe)."""
    status = await conn.execute(
        "INSERT INTO notification_deliveries (user_id, kind, channel, source, payload)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        user_id,
        kind,
        channel,
        source,
        payload,
    )
    return status.endswith(" 1")


async def claim(db: asyncpg.Pool, channels: list[str], limit: int, lease_s: float) -> list[Any]:
    """Due pending deliveries on ``channels`` with their recipient, leased for ``lease_s``."""
    return await db.fetch(
        "WITH due AS (SELECT id FROM notification_deliveries"
        " WHERE status = 'pending' AND next_at <= now() AND channel = ANY($1::text[])"
        " ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " UPDATE notification_deliveries d SET next_at = now() + make_interval(secs => $3)"
        " FROM due, users u WHERE d.id = due.id AND u.id = d.user_id"
        " RETURNING d.*, u.email, u.display_name, u.disabled_at,"
        " (SELECT settings FROM notification_settings s WHERE s.user_id = d.user_id) AS settings",
        channels,
        limit,
        lease_s,
    )


async def settle(
    db: Db,
    delivery_id: int,
    status: str,
    error: str | None,
    *,
    attempted: bool,
    retry_in_s: float = 0.0,
    done: list[str] | None = None,
) -> None:
    """Record an outcome: ``pending`` again (after ``retry_in_s``) or final."""
    await db.execute(
        "UPDATE notification_deliveries SET status = $2, last_error = $3,"
        " attempts = attempts + CASE WHEN $4 THEN 1 ELSE 0 END,"
        " next_at = now() + make_interval(secs => $5), done = coalesce($6::text[], done),"
        " finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END,"
        " payload = CASE WHEN $2 <> 'pending' AND kind LIKE 'account.%' THEN '{}' ELSE payload END"
        " WHERE id = $1",
        delivery_id,
        status,
        error,
        attempted,
        retry_in_s,
        done,
    )


async def digests_due(conn: Conn, period_s: float, limit: int) -> list[asyncpg.Record]:
    """Users on a daily digest whose last one is older than ``period_s``, claimed (their
    ``last_digest_at`` moved to now, inside the caller's transaction), with when it was."""
    return await conn.fetch(
        "WITH due AS (SELECT user_id, last_digest_at FROM notification_settings"
        " WHERE settings ->> 'digest' = 'daily'"
        " AND coalesce(last_digest_at, '-infinity') < now() - make_interval(secs => $1)"
        " ORDER BY user_id LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " UPDATE notification_settings s SET last_digest_at = now() FROM due"
        " WHERE s.user_id = due.user_id RETURNING s.user_id, due.last_digest_at AS since",
        period_s,
        limit,
    )


async def digest_items(
    conn: Conn, user_id: str, since: Any, kinds: list[str], limit: int
) -> tuple[list[asyncpg.Record], int]:
    """The newest unread items of ``kinds`` made after ``since`` (None: ever), and how many."""
    rows = await conn.fetch(
        "SELECT kind, data, actor_id, fold_count, count(*) OVER () AS total FROM notifications"
        " WHERE user_id = $1 AND head AND read_at IS NULL AND kind = ANY($2::text[])"
        " AND created_at > coalesce($3::timestamptz, '-infinity') ORDER BY id DESC LIMIT $4",
        user_id,
        kinds,
        since,
        limit,
    )
    return list(rows), int(rows[0]["total"]) if rows else 0


async def names(db: Db, user_ids: list[str]) -> dict[str, str]:
    rows = await db.fetch("SELECT id, display_name FROM users WHERE id = ANY($1::text[])", user_ids)
    return {r["id"]: r["display_name"] for r in rows}


async def counts(db: Db) -> dict[tuple[str, str], int]:
    """Deliveries by (channel, status): the notifier's gauges."""
    rows = await db.fetch(
        "SELECT channel, status, count(*) AS n FROM notification_deliveries GROUP BY 1, 2"
    )
    return {(r["channel"], r["status"]): int(r["n"]) for r in rows}


async def purge(db: Db, keep_days: int) -> int:
    """Finished deliveries older than ``keep_days`` are dropped (the centre keeps the rows)."""
    status = await db.execute(
        "DELETE FROM notification_deliveries WHERE status <> 'pending'"
        " AND finished_at < now() - make_interval(days => $1)",
        keep_days,
    )
    return int(status.split()[-1])


# -- generated secrets --------------------------------------------------------------------------
async def app_secret(db: Db, name: str, candidate: str) -> str:
    """The stored (sealed) value of ``name``, storing ``candidate`` if there is none yet: the
    first gateway to start generates it, every other one reads that one."""
    await db.execute(
        "INSERT INTO app_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        name,
        candidate,
    )
    value = await db.fetchval("SELECT value FROM app_secrets WHERE name = $1", name)
    return str(value)
