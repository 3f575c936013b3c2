"""The ledger's SQL: posting through ``hl_ledger_post``, balances, the release queue, revenue
and payouts (store/migrations/0016_ledger.sql; the rules are models/ledger.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from models import ledger as lg
from store.db import Conn, Db


async def post(
    conn: Conn,
    source: str,
    kind: str,
    currency: str,
    legs: Sequence[lg.Leg],
    *,
    order_id: str | None = None,
    vendor_id: str | None = None,
    cell: str | None = None,
) -> int | None:
    """Post one balanced transaction in the caller's transaction; its id, or None when nothing
    moves or ``(source, kind)`` was posted before (a retry adds nothing)."""
    wire = json.dumps([leg.wire() for leg in lg.balanced(legs)])
    txn = await conn.fetchval(
        "SELECT hl_ledger_post($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
        source,
        kind,
        currency,
        order_id,
        vendor_id,
        cell,
        wire,
    )
    return None if txn is None else int(txn)


async def owed_by_order(
    conn: Conn, vendor_id: str, account: str, currency: str | None = None
) -> dict[str, tuple[str, int]]:
    """What the vendor is owed in ``account``, per order: ``{order: (currency, amount)}``
    (non-zero only)."""
    rows = await conn.fetch(
        "SELECT order_id, currency, -sum(amount)::bigint AS owed FROM ledger_entries"
        " WHERE owner = $1 AND account = $2 AND ($3::text IS NULL OR currency = $3)"
        " AND order_id IS NOT NULL GROUP BY order_id, currency HAVING sum(amount) <> 0",
        vendor_id,
        account,
        currency,
    )
    return {r["order_id"]: (r["currency"], int(r["owed"])) for r in rows}


async def balances(db: Db, vendor_id: str) -> list[dict[str, Any]]:
    """The vendor's balances per currency: pending, available, held, in transit (owed to it:
    each account's credits less its debits), plus the currency of its newest transaction
    first."""
    rows = await db.fetch(
        "SELECT currency,"
        " -coalesce(sum(amount) FILTER (WHERE account = 'vendor_pending'), 0)::bigint AS pending,"
        " -coalesce(sum(amount) FILTER (WHERE account = 'vendor_available'), 0)::bigint"
        "   AS available,"
        " -coalesce(sum(amount) FILTER (WHERE account = 'vendor_held'), 0)::bigint AS held,"
        " -coalesce(sum(amount) FILTER (WHERE account = 'payouts_in_transit'), 0)::bigint"
        "   AS in_transit, max(txn_id) AS newest"
        " FROM ledger_entries WHERE owner = $1 AND account IN ('vendor_pending',"
        " 'vendor_available', 'vendor_held', 'payouts_in_transit')"
        " GROUP BY currency ORDER BY max(txn_id) DESC",
        vendor_id,
    )
    return [
        {k: (int(r[k]) if k != "currency" else r[k]) for k in
         ("currency", "available", "pending", "held", "in_transit")}
        for r in rows
    ]  # fmt: skip


async def due_releases(conn: Conn, cutoff: dt.datetime, limit: int) -> list[asyncpg.Record]:
    """Orders fulfilled at or before ``cutoff`` whose pending balance is not released yet,
    oldest first, locked (a second sweep skips them)."""
    return list(
        await conn.fetch(
            "SELECT q.order_id, q.vendor_id FROM ledger_release_queue q"
            " WHERE q.fulfilled_at <= $1 ORDER BY q.fulfilled_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            cutoff,
            limit,
        )
    )


async def lock_orders(conn: Conn, order_ids: Sequence[str]) -> set[str]:
    """Lock the orders' rows for this transaction, skipping any another transaction holds
    (a shard's batch writing it): the ones locked. Refunds and holds lock their order too
    (their triggers), so balances read after this stay put until commit."""
    rows = await conn.fetch(
        "SELECT id FROM orders WHERE id = ANY($1::text[]) ORDER BY id"
        " FOR NO KEY UPDATE SKIP LOCKED",
        list(order_ids),
    )
    return {r["id"] for r in rows}


async def post_releases(conn: Conn, order_ids: Sequence[str]) -> int:
    """Release the pending balance of each of ``order_ids`` (queued, locked by the caller) in
    one statement, and take them off the queue; how many left it. Per order with a capture:
    one ``release`` transaction (``order:<id>``, unique: a repeat posts nothing) of two legs,
    vendor_pending +pending and vendor_available -pending (balanced by construction, as
    models/ledger.py ``release_legs``; nothing pending: nothing posted)."""
    return int(
        await conn.fetchval(
            "WITH r AS ("
            "  SELECT q.order_id, q.vendor_id, c.currency, c.cell, (SELECT -coalesce("
            "   sum(e.amount), 0) FROM ledger_entries e WHERE e.order_id = q.order_id"
            "   AND e.account = 'vendor_pending' AND e.owner = q.vendor_id)::bigint AS pending"
            "  FROM ledger_release_queue q JOIN ledger_transactions c"
            "   ON c.source = 'order:' || q.order_id AND c.kind = 'capture'"
            "  WHERE q.order_id = ANY($1::text[])"
            "), t AS ("
            "  INSERT INTO ledger_transactions (source, kind, currency, order_id, vendor_id,"
            "   cell, amount)"
            "  SELECT 'order:' || order_id, 'release', currency, order_id, vendor_id, cell,"
            "   pending FROM r WHERE pending > 0 ORDER BY order_id"
            "  ON CONFLICT (source, kind) DO NOTHING RETURNING id, order_id"
            "), e AS ("
            "  INSERT INTO ledger_entries (txn_id, account, owner, order_id, amount, currency)"
            "  SELECT t.id, l.account, r.vendor_id, r.order_id, l.amount, r.currency"
            "   FROM t JOIN r ON r.order_id = t.order_id CROSS JOIN LATERAL (VALUES"
            "   ('vendor_pending', r.pending), ('vendor_available', -r.pending)) l(account, amount)"
            "), d AS ("
            "  DELETE FROM ledger_release_queue WHERE order_id = ANY($1::text[]) RETURNING 1"
            ") SELECT count(*) FROM d",
            list(order_ids),
        )
    )


_KEYS = {
    "day": "to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "cell": "coalesce(t.cell, '')",
    "vendor": "coalesce(t.vendor_id, '')",
}


async def revenue(db: Db, span: lg.ReportRange) -> list[dict[str, Any]]:
    """Revenue rows per key (day, cell or vendor) and currency over ``span``, from the ledger:
    GMV (captured order totals), captured orders, refunds recorded, net commission."""
    key = _KEYS[span.group]
    start = dt.datetime.combine(span.first, dt.time(), dt.UTC)
    end = dt.datetime.combine(span.last + dt.timedelta(days=1), dt.time(), dt.UTC)
    rows = await db.fetch(
        f"SELECT {key} AS key, t.currency,"
        " coalesce(sum(t.amount) FILTER (WHERE t.kind = 'capture'), 0)::bigint AS gmv,"
        " count(*) FILTER (WHERE t.kind = 'capture') AS orders,"
        " coalesce(sum(t.amount) FILTER (WHERE t.kind = 'refund'), 0)::bigint AS refunds,"
        " (-coalesce(sum(c.amount), 0))::bigint AS commission"
        " FROM ledger_transactions t LEFT JOIN LATERAL (SELECT sum(e.amount) AS amount"
        "  FROM ledger_entries e WHERE e.txn_id = t.id AND e.account = 'platform_commission') c"
        "  ON true"
        " WHERE t.kind IN ('capture', 'refund') AND t.created_at >= $1 AND t.created_at < $2"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        start,
        end,
    )
    return [
        {"key": r["key"], "currency": r["currency"], "gmv": int(r["gmv"]),
         "orders": int(r["orders"]), "refunds": int(r["refunds"]),
         "commission": int(r["commission"])}
        for r in rows
    ]  # fmt: skip


# -- payouts --------------------------------------------------------------------------------------
PAYOUT_COLUMNS = (
    "id, vendor_id, currency, amount, method, destination, status, reference, error, attempts,"
    " orders, created_at, updated_at, paid_at"
)


async def vendors_with_available(db: Db, after: str, limit: int) -> list[str]:
    """Up to ``limit`` vendors after ``after`` (in id order; "" for the first page) with a
    positive available balance in some currency: a keyset page, read in order off the partial
    index ``ledger_entries_available`` (migration 0026)."""
    rows = await db.fetch(
        "SELECT owner FROM (SELECT owner, currency, sum(amount) AS owed FROM ledger_entries"
        "  WHERE account = 'vendor_available' AND owner > $1 GROUP BY owner, currency) v"
        " WHERE owed < 0 GROUP BY owner ORDER BY owner LIMIT $2",
        after,
        limit,
    )
    return [r["owner"] for r in rows]


async def transfers_due(db: Db, first_s: float, cap_s: float, limit: int) -> list[asyncpg.Record]:
    """Pending transfer payouts whose next attempt is due, oldest first: never tried, or the
    n-th attempt at least ``min(cap_s, first_s * 2 ** (n - 1))`` ago (services/loops.py
    ``Backoff``), so transfers waiting out a backoff never hold back the others."""
    return list(
        await db.fetch(
            "SELECT id FROM payouts WHERE status = 'pending' AND method = 'stripe_transfer'"
            " AND (attempts = 0 OR updated_at + make_interval(secs => least($2::float8,"
            " $1::float8 * power(2, least(attempts - 1, 60)))) <= now())"
            " ORDER BY created_at LIMIT $3",
            first_s,
            cap_s,
            limit,
        )
    )


async def payout_taken(conn: Conn, payout_id: str) -> dict[str, int]:
    """What a payout took of each order's available balance (its ``payout`` transaction)."""
    rows = await conn.fetch(
        "SELECT e.order_id, e.amount FROM ledger_transactions t JOIN ledger_entries e"
        " ON e.txn_id = t.id WHERE t.source = $1 AND t.kind = 'payout'"
        " AND e.account = 'vendor_available'",
        f"payout:{payout_id}",
    )
    return {r["order_id"]: int(r["amount"]) for r in rows}


async def payouts_of(
    db: Db, vendor_id: str, before: tuple[dt.datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE vendor_id = $1"
            " AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))"
            " ORDER BY created_at DESC, id DESC LIMIT $4",
            vendor_id,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
    )
