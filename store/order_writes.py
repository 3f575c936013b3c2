"""The checkout's order writes in the owning shard, each one statement (issue 20).

``reserve``: a vendor's part of a checkout in one round trip: its listings locked, every line
checked (on sale, enough stock, the price and currency the group saw), and only if all of them
pass, the stock taken and the pending order written with its lines. Nothing is written when any
line fails: the caller gets the locked rows back to say which (actors/market_ops.py raises the
typed refusal from them), and its refusal is clean (``Refused``: no rollback of the batch).

``step``: a system step that only moves an order's status (``confirm``, ``hold``: no stock, no
refund; models/market.py ``plain_step``), as one conditional ``UPDATE`` from the states it is
legal from, returning the order and its lines; None when the order is in none of them (the
caller then reads it and decides as for any step: repeated, illegal, missing).

``STEPS``: the same plain step decided from the owner's memory of the order, as a checked row
of the batch statement (no statement of its own).

``TAKEN``, ``ORDERS``, ``ORDER_LINES``: a reservation decided from the owner's memory of its
listings (actors/listing_memory.py) as rows of the batch statement: one compare-and-set row
per listing per batch (the stock the owner believed, to the stock after every reservation of
the batch; checked: a listing not as believed fails the whole statement and the batch runs
carefully, from SQL), and the orders with their lines, stamped by the owner's clock.

``PURCHASES``: a paid order's ``purchase`` interactions (the recommender's training data) as
rows of the shard's batch statement (store/batch_write.py): no statement of their own.

Both run inside the shard's group commit, so stock still moves only in its cell's owner, and
``CHECK (stock >= 0)`` stays the backstop behind the checks.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from models.recommend.listings import major_units
from store.batch_write import Table, TableRow
from store.db import Conn
from store.market_store import LISTING_COLUMNS, ORDER_COLUMNS

_ORDER_OUT = ", ".join(f"o.{c.strip()} AS o_{c.strip()}" for c in ORDER_COLUMNS.split(","))

_RESERVE = f"""
WITH w AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[])
        AS w(id, qty, unit_price, title)
), l AS (
    SELECT {LISTING_COLUMNS} FROM listings WHERE id = ANY($1::text[]) ORDER BY id
    FOR NO KEY UPDATE
), ok AS (
    SELECT count(*) = cardinality($1::text[]) AS ok FROM w JOIN l ON l.id = w.id
    WHERE l.active AND l.deleted_at IS NULL AND NOT l.vendor_suspended AND l.stock >= w.qty
        AND l.price = w.unit_price AND l.currency = $5
), t AS (
    UPDATE listings x SET stock = x.stock - w.qty, updated_at = now() FROM w, ok
    WHERE ok.ok AND x.id = w.id
    RETURNING x.id, x.stock, x.updated_at
), o AS (
    INSERT INTO orders (id, group_id, buyer_id, vendor_id, vendor_user_id, cell, status, total,
        currency, reserved_until, risk, announced)
    SELECT $6, $7, $8, $9, $10, $11, 'pending_payment', $12, $5,
        now() + make_interval(secs => $13), $14, $15
    FROM ok WHERE ok.ok
    RETURNING {ORDER_COLUMNS}
), ol AS (
    INSERT INTO order_lines (order_id, listing_id, title, qty, unit_price)
    SELECT o.id, w.id, w.title, w.qty, w.unit_price FROM o, w
)
SELECT l.*, t.stock AS taken_stock, t.updated_at AS taken_at, {_ORDER_OUT}
FROM l LEFT JOIN t ON t.id = l.id LEFT JOIN o ON true
"""
"""One vendor's part: lock, check, take, write; the locked listings, each with its stock
after (``taken_*``, NULL when nothing was taken) and the order written (``o_*``, NULL when
not)."""


class Reserved:
    """What ``reserve`` found and did: the locked listings by id (as they were), the listings
    taken (as they are now) and the order written, or no order and nothing taken."""

    __slots__ = ("locked", "order", "taken")

    def __init__(self, rows: list[asyncpg.Record]) -> None:
        self.locked: dict[str, asyncpg.Record] = {r["id"]: r for r in rows}
        self.taken: list[dict[str, Any]] = [
            {**dict(r), "stock": r["taken_stock"], "updated_at": r["taken_at"]}
            for r in rows
            if r["taken_stock"] is not None
        ]
        first = rows[0] if rows else None
        self.order: dict[str, Any] | None = None
        if first is not None and first["o_id"] is not None:
            self.order = {c.strip(): first[f"o_{c.strip()}"] for c in ORDER_COLUMNS.split(",")}


async def reserve(conn: Conn, order: dict[str, Any], items: list[dict[str, Any]]) -> Reserved:
    """Take ``items`` (``listing_id``, ``qty``, ``unit_price``, ``title``) for the pending
    ``order`` (its id, group, buyer, vendor, vendor's user, cell, total, currency, reservation
    seconds from now by the database clock, risk, whether it is ``announced``) if every line can be
    taken; else nothing."""
    rows = await conn.fetch(
        _RESERVE,
        [i["listing_id"] for i in items],
        [i["qty"] for i in items],
        [i["unit_price"] for i in items],
        [i["title"] for i in items],
        order["currency"],
        order["id"],
        order["group_id"],
        order["buyer_id"],
        order["vendor_id"],
        order["vendor_user_id"],
        order["cell"],
        order["total"],
        float(order["reservation_s"]),
        order.get("risk"),
        order["announced"],
    )
    return Reserved(rows)


_STEP = f"""
WITH u AS (
    UPDATE orders SET status = $2, reason = COALESCE($3, reason), updated_at = now(),
        reserved_until = CASE WHEN $2 = 'pending_payment' THEN reserved_until END
    WHERE id = $1 AND status = ANY($4::text[])
    RETURNING {ORDER_COLUMNS}
)
SELECT u.*, (SELECT coalesce(jsonb_agg(jsonb_build_object('listing_id', x.listing_id,
    'title', x.title, 'qty', x.qty, 'unit_price', x.unit_price) ORDER BY x.listing_id),
    '[]'::jsonb) FROM order_lines x WHERE x.order_id = u.id) AS lines
FROM u
"""


async def step(
    conn: Conn, order_id: str, target: str, reason: str, sources: frozenset[str]
) -> tuple[asyncpg.Record, list[dict[str, Any]]] | None:
    """Move the order to ``target`` if it is in one of ``sources``: its row and lines after;
    None (nothing written) if it is not (or there is no such order)."""
    row = await conn.fetchrow(_STEP, order_id, target, reason, sorted(sources))
    return None if row is None else (row, list(row["lines"]))


STEPS = Table(
    "orders",
    (
        ("id", "text"),
        ("expected", "text"),
        ("status", "text"),
        ("reason", "text"),
        ("at", "timestamptz"),
    ),
    statement=(
        "UPDATE orders o SET status = u.status, reason = COALESCE(u.reason, o.reason),"
        " updated_at = u.at,"
        " reserved_until = CASE WHEN u.status = 'pending_payment' THEN o.reserved_until END"
        " FROM {rows} WHERE o.id = u.id AND o.status = u.expected RETURNING 1"
    ),
    checked=True,
)
"""A plain step decided from the owner's memory of the order (actors/order_memory.py), as a
checked row of the batch statement: it moves the order from the status remembered
(``expected``) to ``status`` at ``at`` (the time its reply and events carry), or, if the order
was not there, fails the batch's fast path (it runs again carefully, from SQL)."""


TAKEN = Table(
    "listings",
    (
        ("id", "text"),
        ("expected", "int"),
        ("stock", "int"),
        ("at", "timestamptz"),
        ("price", "bigint"),
        ("currency", "text"),
    ),
    statement=(
        "UPDATE listings x SET stock = u.stock, updated_at = u.at FROM {rows}"
        " WHERE x.id = u.id AND x.stock = u.expected AND x.active AND x.deleted_at IS NULL"
        " AND NOT x.vendor_suspended AND x.price = u.price AND x.currency = u.currency"
        " RETURNING 1"
    ),
    checked=True,
)
"""The stock a batch's reservations took from one listing, decided from memory: from the stock
the owner believed (``expected``) to ``stock`` at ``at``, only while the listing is on sale at
the price and currency believed (what the reservations checked); else the batch's statement
fails (nothing written) and the batch runs carefully. ``CHECK (stock >= 0)`` still stands
behind it."""

ORDERS = Table(
    "orders",
    (
        ("id", "text"),
        ("group_id", "text"),
        ("buyer_id", "text"),
        ("vendor_id", "text"),
        ("vendor_user_id", "text"),
        ("cell", "text"),
        ("total", "bigint"),
        ("currency", "text"),
        ("reserved_until", "timestamptz"),
        ("at", "timestamptz"),
        ("risk", "text"),
        ("announced", "bool"),
    ),
    into=(
        "id",
        "group_id",
        "buyer_id",
        "vendor_id",
        "vendor_user_id",
        "cell",
        "status",
        "total",
        "currency",
        "reserved_until",
        "created_at",
        "updated_at",
        "risk",
        "announced",
    ),
    select=(
        "SELECT id, group_id, buyer_id, vendor_id, vendor_user_id, cell, 'pending_payment',"
        " total, currency, reserved_until, at, at, risk::jsonb, announced FROM {rows}"
    ),
)
"""A pending order reserved from memory, its timestamps (its reservation's end too) from the
owner's clock; ``risk`` as JSON text (a ``jsonb[]`` parameter would not take it whole);
``announced``: whether its inboxes hear of it now (a checkout's: at its payment's outcome)."""

ORDER_LINES = Table(
    "order_lines",
    (
        ("order_id", "text"),
        ("listing_id", "text"),
        ("title", "text"),
        ("qty", "int"),
        ("unit_price", "bigint"),
    ),
)
"""The lines of an order reserved from memory."""


PURCHASES = Table(
    "interactions",
    (("user_id", "text"), ("order_id", "text"), ("divisor", "float8")),
    into=("user_id", "item_kind", "item_id", "kind", "cell", "lat", "lng", "category", "price"),
    select=(
        "SELECT u.user_id, 'listing', ol.listing_id, 'purchase', l.cell, l.lat, l.lng,"
        " l.category, ol.unit_price / u.divisor FROM {rows}"
        " JOIN order_lines ol ON ol.order_id = u.order_id JOIN listings l ON l.id = ol.listing_id"
        " ORDER BY u.order_id, ol.listing_id"
    ),
)
"""One ``purchase`` per line of a paid order, at the price paid in major units of its
currency, written with the batch that confirms it."""


def purchases(buyer_id: str, order_id: str, currency: str) -> TableRow:
    """The ``PURCHASES`` row of a paid order (``Tx.defer`` it)."""
    return PURCHASES.row(buyer_id, order_id, float(round(1 / major_units(1, currency))))
