"""SQL of the notification centre and its delivery outbox (store/migrations/0012).

Rows are written by the ``hl_notify`` trigger in the transaction of their inbox event; this
module reads them, marks them read, and claims and settles deliveries for the notifier
(``FOR UPDATE SKIP LOCKED`` plus a lease on ``next_at``: several gateways never hold one row).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
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


_PROMOTION_ON = (
    "(s.settings -> 'kinds' -> 'promotion' ->> 'inapp' = 'true'"
    " OR s.settings -> 'kinds' -> 'promotion' ->> 'email' = 'true'"
    " OR s.settings -> 'kinds' -> 'promotion' ->> 'push' = 'true')"
)


async def promotion_audience(
    conn: Conn, vendor_user: str, cells: list[str], nearby_cap: int
) -> list[tuple[str, str]]:
    """``(user_id, reach)`` of a vendor's promotion, of the users who turned ``promotion`` on:
    its followers (``follower``) and the users whose ``nearby`` cell is one of ``cells`` and
    who do not follow it (``nearby``), unless they had ``nearby_cap`` such today (UTC)."""
    rows = await conn.fetch(
        "SELECT f.follower_id AS user_id, 'follower' AS reach FROM follows f"
        " JOIN notification_settings s ON s.user_id = f.follower_id"
        f" WHERE f.followee_id = $1 AND {_PROMOTION_ON}"
        " UNION ALL"
        " SELECT s.user_id, 'nearby' FROM notification_settings s"
        " WHERE s.settings ? 'nearby' AND s.settings -> 'nearby' ->> 'cell' = ANY($2::text[])"
        f" AND s.user_id <> $1 AND {_PROMOTION_ON}"
        " AND NOT EXISTS (SELECT 1 FROM follows f"
        " WHERE f.followee_id = $1 AND f.follower_id = s.user_id)"
        " AND (SELECT count(*) FROM notifications n WHERE n.user_id = s.user_id"
        " AND n.kind = 'promotion' AND n.data ->> 'reach' = 'nearby'"
        " AND n.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
        " < $3"
        " ORDER BY 1",
        vendor_user,
        cells,
        nearby_cap,
    )
    return [(r["user_id"], r["reach"]) for r in rows]


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


async def subscriptions(db: Db, user_ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    """The push devices of each of ``user_ids`` (one query for a whole batch)."""
    rows = await db.fetch(
        "SELECT user_id, endpoint, p256dh, auth FROM push_subscriptions"
        " WHERE user_id = ANY($1::text[]) ORDER BY user_id, endpoint",
        user_ids,
    )
    out: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        out.setdefault(row["user_id"], []).append(row)
    return out


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


async def sync_kinds(db: Db, rows: list[tuple[str, bool, bool, bool, bool]]) -> None:
    """Write the kinds' defaults the trigger decides channels with (models/notifications.py
    ``kind_rows``; the migration seeded the same)."""
    await db.execute(
        "INSERT INTO notification_kinds (kind, inapp, email, push, digest)"
        " SELECT * FROM unnest($1::text[], $2::boolean[], $3::boolean[], $4::boolean[],"
        " $5::boolean[]) ON CONFLICT (kind) DO UPDATE SET inapp = EXCLUDED.inapp,"
        " email = EXCLUDED.email, push = EXCLUDED.push, digest = EXCLUDED.digest",
        *(list(column) for column in zip(*rows, strict=True)),
    )


async def sync_channels(db: Db, open_channels: Mapping[str, bool]) -> None:
    """Write which channels the deployment can deliver on (the trigger writes no delivery row
    on a closed one: migration 0034), e.g. ``{"email": False, "push": True}`` without SMTP."""
    await db.execute(
        "INSERT INTO notification_channels (channel, open)"
        " SELECT * FROM unnest($1::text[], $2::boolean[])"
        " ON CONFLICT (channel) DO UPDATE SET open = EXCLUDED.open"
        " WHERE notification_channels.open IS DISTINCT FROM EXCLUDED.open",
        list(open_channels),
        list(open_channels.values()),
    )


async def claim(db: asyncpg.Pool, channels: list[str], limit: int, lease_s: float) -> list[Any]:
    """Due pending deliveries on ``channels`` with their recipient, leased for ``lease_s``."""
    return await db.fetch(
        "WITH due AS (SELECT id FROM notification_deliveries"
        " WHERE status = 'pending' AND next_at <= now() AND channel = ANY($1::text[])"
        " ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " UPDATE notification_deliveries d SET next_at = now() + make_interval(secs => $3)"
        " FROM due, users u WHERE d.id = due.id AND u.id = d.user_id"
        " RETURNING d.*, u.email, u.display_name, u.disabled_at,"
        " u.email_norm IS NOT NULL AS email_claimed,"
        " (SELECT settings FROM notification_settings s WHERE s.user_id = d.user_id) AS settings",
        channels,
        limit,
        lease_s,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one claimed delivery ended this time: ``pending`` again after ``retry_in_s`` (a
    retry, quiet hours) or final (``sent``, ``skipped``, ``dead``); ``done`` replaces the
    endpoints that accepted it when given."""

    id: int
    status: str
    error: str | None
    attempted: bool
    retry_in_s: float = 0.0
    done: list[str] | None = None


async def settle(db: Db, outcomes: list[Outcome]) -> None:
    """Record the outcomes of a batch in one statement (one commit however many rows); an
    account email's payload (its sealed token) is emptied once it is final."""
    if not outcomes:
        return
    await db.execute(
        "UPDATE notification_deliveries d SET status = o.status, last_error = o.error,"
        " attempts = d.attempts + CASE WHEN o.attempted THEN 1 ELSE 0 END,"
        " next_at = now() + make_interval(secs => o.retry_in),"
        " done = CASE WHEN o.done IS NULL THEN d.done"
        " ELSE ARRAY(SELECT jsonb_array_elements_text(o.done::jsonb)) END,"
        " finished_at = CASE WHEN o.status = 'pending' THEN NULL ELSE now() END,"
        " payload = CASE WHEN o.status <> 'pending' AND d.kind LIKE 'account.%' THEN '{}'"
        " ELSE d.payload END"
        " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::float8[],"
        " $6::text[]) AS o(id, status, error, attempted, retry_in, done) WHERE d.id = o.id",
        [o.id for o in outcomes],
        [o.status for o in outcomes],
        [o.error for o in outcomes],
        [o.attempted for o in outcomes],
        [o.retry_in_s for o in outcomes],
        [None if o.done is None else json.dumps(o.done) for o in outcomes],
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


async def pending(db: Db) -> dict[str, int]:
    """Pending deliveries by channel (the notifier's gauges; the due index's rows only)."""
    rows = await db.fetch(
        "SELECT channel, count(*) AS n FROM notification_deliveries"
        " WHERE status = 'pending' GROUP BY 1"
    )
    return {r["channel"]: int(r["n"]) for r in rows}


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
