"""SQL for REST hooks: subscriptions and the delivery outbox.

A delivery is written in the transaction that produces its event (a shard's group commit:
``delivery_rows`` for its batch statement; ``enqueue`` for a transaction of its own), so it
exists if and only if its event committed: the transactional outbox. The dispatcher
(services/hooks.py) claims due rows with ``FOR UPDATE SKIP LOCKED`` and pushes their ``next_at``
forward as a lease, so several gateways never deliver one row at the same time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from models.ids import new_id
from models.streams import compact_json
from store.batch_write import Table, TableRow
from store.db import Conn, Db, one


def hook_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "target_url": row["target_url"],
        "events": list(row["events"]),
        "active": row["active"],
        "disabled_reason": row["disabled_reason"],
        "created_at": row["created_at"].isoformat(),
    }


def delivery_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "hook_id": row["hook_id"],
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_at": row["next_at"].isoformat(),
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "created_at": row["created_at"].isoformat(),
        "payload": row["payload"],
    }


DELIVERIES = Table(
    "hook_deliveries",
    (("id", "text"), ("vendor_id", "text"), ("event_type", "text"), ("payload", "text")),
    into=("id", "hook_id", "event_type", "payload"),
    select=(
        "SELECT u.id || '.' || h.id, h.id, u.event_type, u.payload::jsonb FROM {rows}"
        " JOIN hooks h ON h.vendor_id = u.vendor_id AND h.active AND u.event_type = ANY(h.events)"
    ),
)
"""The outbox as rows of a shard's batch statement (store/batch_write.py): one given row per
event, one delivery per active hook of the vendor subscribed to it, written with the batch
(no query of its own: most vendors have no hooks, and then nothing is written)."""


def delivery_rows(vendor_id: str, events: list[tuple[str, dict[str, Any]]]) -> list[TableRow]:
    """``DELIVERIES`` rows queueing each ``(event_type, data)``, in order, for the hooks of
    ``vendor_id`` subscribed to it once the batch is written (``Tx.defer`` each)."""
    now = datetime.now(UTC).isoformat()
    base = f"msg_{new_id()}"
    return [
        DELIVERIES.row(
            f"{base}{i:03d}",
            vendor_id,
            event_type,
            compact_json({"type": event_type, "timestamp": now, "data": data}),
        )
        for i, (event_type, data) in enumerate(events)
    ]


async def enqueue(conn: Conn, vendor_id: str, event_type: str, data: dict[str, Any]) -> int:
    """Queue ``event_type`` for every active hook of the vendor subscribed to it."""
    return await enqueue_many(conn, vendor_id, [(event_type, data)])


async def enqueue_many(conn: Conn, vendor_id: str, events: list[tuple[str, dict[str, Any]]]) -> int:
    """Queue each ``(event_type, data)`` for every active hook of the vendor subscribed to it,
    in order: one query for the vendor's hooks (the whole cost when it has none), one insert
    for all the deliveries. How many deliveries were queued."""
    if not events:
        return 0
    hooks = await conn.fetch(
        "SELECT id, events FROM hooks WHERE vendor_id = $1 AND active AND events && $2::text[]",
        vendor_id,
        sorted({event_type for event_type, _ in events}),
    )
    if not hooks:
        return 0
    now = datetime.now(UTC).isoformat()
    rows = [
        (
            f"msg_{new_id()}",
            h["id"],
            event_type,
            {"type": event_type, "timestamp": now, "data": data},
        )
        for event_type, data in events
        for h in hooks
        if event_type in h["events"]
    ]
    await conn.executemany(
        "INSERT INTO hook_deliveries (id, hook_id, event_type, payload) VALUES ($1, $2, $3, $4)",
        rows,
    )
    return len(rows)


async def create_hook(
    db: Db, hook_id: str, vendor_id: str, url: str, events: list[str], secret: str
) -> asyncpg.Record:
    row = await db.fetchrow(
        "INSERT INTO hooks (id, vendor_id, target_url, events, secret)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING *",
        hook_id,
        vendor_id,
        url,
        events,
        secret,
    )
    return one(row)


async def hooks_of(db: Db, vendor_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM hooks WHERE vendor_id = $1 ORDER BY created_at DESC", vendor_id
    )


async def hook_of(db: Db, vendor_id: str, hook_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM hooks WHERE id = $1 AND vendor_id = $2", hook_id, vendor_id
    )


async def disable(db: Db, hook_id: str, reason: str) -> None:
    await db.execute(
        "UPDATE hooks SET active = false, disabled_reason = $2 WHERE id = $1 AND active",
        hook_id,
        reason,
    )


_CANDIDATES = 500  # due rows looked at per claim, oldest first (busy hooks' rows excluded)


async def claim_due(
    db: asyncpg.Pool,
    limit: int,
    lease_s: float,
    skip_hooks: list[str] | None = None,
    per_hook: int = 4,
    room: dict[str, int] | None = None,
) -> list[asyncpg.Record]:
    """Due pending deliveries with their hook, leased for ``lease_s`` to this dispatcher,
    oldest first: none of the hooks in ``skip_hooks`` (those the dispatcher already has enough
    in flight), at most ``room[hook]`` (else ``per_hook``) of any one hook. The cap holds within
    the claim too, so one hook's backlog never fills a claim (nor the dispatcher's slots)."""
    hooks = list(room or {})
    async with db.acquire() as conn, conn.transaction():
        return await conn.fetch(
            "WITH cand AS (SELECT id, hook_id, next_at FROM hook_deliveries"
            " WHERE status = 'pending' AND next_at <= now() AND hook_id <> ALL($3::text[])"
            " ORDER BY next_at LIMIT $4),"
            " ranked AS (SELECT c.id, c.next_at, COALESCE(a.room, $5) AS room,"
            " row_number() OVER (PARTITION BY c.hook_id ORDER BY c.next_at, c.id) AS n"
            " FROM cand c LEFT JOIN unnest($6::text[], $7::int[]) AS a(hook_id, room)"
            " ON a.hook_id = c.hook_id),"
            " due AS (SELECT d.id FROM hook_deliveries d JOIN ranked r ON r.id = d.id"
            " WHERE r.n <= r.room AND d.status = 'pending' AND d.next_at <= now()"
            " ORDER BY r.next_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED)"
            " UPDATE hook_deliveries d SET next_at = now() + make_interval(secs => $2)"
            " FROM due, hooks h WHERE d.id = due.id AND h.id = d.hook_id"
            " RETURNING d.id, d.hook_id, d.event_type, d.payload, d.attempts,"
            " h.target_url, h.secret, h.active",
            limit,
            lease_s,
            skip_hooks or [],
            _CANDIDATES,
            per_hook,
            hooks,
            [(room or {})[h] for h in hooks],
        )


async def record_attempt(
    db: Db,
    delivery_id: str,
    status: str,
    http_status: int | None,
    error: str | None,
    retry_in_s: float,
) -> None:
    await db.execute(
        "UPDATE hook_deliveries SET status = $2, attempts = attempts + 1, last_status = $3,"
        " last_error = $4, next_at = now() + make_interval(secs => $5),"
        " delivered_at = CASE WHEN $2 = 'delivered' THEN now() END WHERE id = $1",
        delivery_id,
        status,
        http_status,
        error,
        retry_in_s,
    )


async def cancel_pending(db: Db, hook_id: str) -> None:
    """A hook that is gone (410, deleted) keeps its history; its pending rows stop."""
    await db.execute(
        "UPDATE hook_deliveries SET status = 'gone' WHERE hook_id = $1 AND status = 'pending'",
        hook_id,
    )


async def deliveries(db: Db, hook_id: str, status: str | None, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM hook_deliveries WHERE hook_id = $1 AND ($2::text IS NULL OR status = $2)"
        " ORDER BY created_at DESC, id DESC LIMIT $3",
        hook_id,
        status,
        limit,
    )


async def replay(db: Db, hook_id: str, ids: list[str] | None) -> int:
    """Put dead-lettered deliveries (all, or those ``ids``) back in the queue, attempts reset."""
    status = await db.execute(
        "UPDATE hook_deliveries SET status = 'pending', attempts = 0, next_at = now(),"
        " last_error = NULL WHERE hook_id = $1 AND status = 'dead'"
        " AND ($2::text[] IS NULL OR id = ANY($2::text[]))",
        hook_id,
        ids,
    )
    return int(status.split()[-1])
