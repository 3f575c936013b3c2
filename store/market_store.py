"""SQL for vendors, listings, carts and orders.

Writers take a connection and run inside the caller's transaction (a shard's group commit for
everything that lives in a cell: listings, stock, orders). Readers take a pool or a connection.
Stock only ever moves through ``take_stock`` / ``put_back`` / ``adjust_stock`` in the owning
shard; the ``CHECK (stock >= 0)`` constraint backs that up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from models.errors import Conflict
from models.market import NearbyCursor, PageCursor
from store.db import Conn, Db, one

LISTING_COLUMNS = (
    "id, vendor_id, cell, kind, title, description, category, price, currency, stock, images,"
    " active, lat, lng, created_at, updated_at, deleted_at, vendor_suspended"
)
ORDER_COLUMNS = (
    "id, group_id, buyer_id, vendor_id, vendor_user_id, cell, status, total, currency,"
    " reserved_until, reason, created_at, updated_at, risk, refunded"
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- vendors ------------------------------------------------------------------------------------
def vendor_public(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "name": row["name"],
        "category": row["category"],
        "cell": row["cell"],
        "lat": row["lat"],
        "lng": row["lng"],
        "created_at": _iso(row["created_at"]),
    }


async def insert_vendor(conn: Conn, v: dict[str, Any]) -> dict[str, Any]:
    try:
        row = await conn.fetchrow(
            "INSERT INTO vendors (id, user_id, name, category, cell, lat, lng)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            v["id"],
            v["user_id"],
            v["name"],
            v["category"],
            v["cell"],
            v["lat"],
            v["lng"],
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("you already have a vendor profile") from None
    return vendor_public(one(row))


async def vendor_of_user(db: Db, user_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow("SELECT * FROM vendors WHERE user_id = $1", user_id)
    return vendor_public(row) if row else None


async def vendor_by_id(db: Db, vendor_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow("SELECT * FROM vendors WHERE id = $1", vendor_id)
    return vendor_public(row) if row else None


# -- listings -----------------------------------------------------------------------------------
def listing_public(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "vendor_id": row["vendor_id"],
        "cell": row["cell"],
        "kind": row["kind"],
        "title": row["title"],
        "description": row["description"],
        "category": row["category"],
        "price": row["price"],
        "currency": row["currency"],
        "stock": row["stock"],
        "images": row["images"],
        "active": row["active"] and row["deleted_at"] is None and not row["vendor_suspended"],
        "lat": row["lat"],
        "lng": row["lng"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    if row["deleted_at"] is not None:
        out["deleted"] = True
    if row["vendor_suspended"]:
        out["vendor_suspended"] = True
    if "distance_m" in row.keys():  # noqa: SIM118 - asyncpg.Record has no __contains__ by key
        out["distance_m"] = round(row["distance_m"], 1)
    return out


async def insert_listing(conn: Conn, x: dict[str, Any]) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"INSERT INTO listings (id, vendor_id, cell, kind, title, description, category, price,"
        f" currency, stock, images, active, lat, lng) VALUES"
        f" ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        f" RETURNING {LISTING_COLUMNS}",
        x["id"],
        x["vendor_id"],
        x["cell"],
        x["kind"],
        x["title"],
        x["description"],
        x["category"],
        x["price"],
        x["currency"],
        x["stock"],
        x["images"],
        x["active"],
        x["lat"],
        x["lng"],
    )
    return listing_public(one(row))


async def listing_row(db: Db, listing_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await db.fetchrow(
        f"SELECT {LISTING_COLUMNS} FROM listings WHERE id = $1{suffix}", listing_id
    )


_EDITABLE = ("title", "description", "category", "price", "currency", "images", "active", "kind")


async def update_listing(conn: Conn, listing_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    names = [k for k in _EDITABLE if k in fields]
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    row = await conn.fetchrow(
        f"UPDATE listings SET {sets + ', ' if sets else ''}updated_at = now()"
        f" WHERE id = $1 RETURNING {LISTING_COLUMNS}",
        listing_id,
        *(fields[n] for n in names),
    )
    return listing_public(one(row))


async def delete_listing(conn: Conn, listing_id: str) -> dict[str, Any]:
    """Soft delete, in the listing's cell owner. Buyers' cart rows for it are left alone: they
    belong to each buyer's own key (rule 2); carts and checkout skip listings not on sale."""
    row = await conn.fetchrow(
        f"UPDATE listings SET active = false, deleted_at = now(), updated_at = now()"
        f" WHERE id = $1 RETURNING {LISTING_COLUMNS}",
        listing_id,
    )
    return listing_public(one(row))


async def set_stock(conn: Conn, listing_id: str, stock: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"UPDATE listings SET stock = $2, updated_at = now() WHERE id = $1"
        f" RETURNING {LISTING_COLUMNS}",
        listing_id,
        stock,
    )
    return listing_public(one(row))


async def lock_listings(conn: Conn, listing_ids: list[str]) -> dict[str, asyncpg.Record]:
    """The listings of ``listing_ids`` there are, locked for this transaction, by id.

    ``FOR NO KEY UPDATE``, the lock the stock UPDATE takes anyway: it does not block the
    ``KEY SHARE`` a foreign key check takes, so other shards adding these listings to carts
    (``cart_items`` references ``listings``) do not wait for this shard's commit."""
    rows = await conn.fetch(
        f"SELECT {LISTING_COLUMNS} FROM listings WHERE id = ANY($1::text[]) ORDER BY id"
        f" FOR NO KEY UPDATE",
        listing_ids,
    )
    return {r["id"]: r for r in rows}


async def take_stock(conn: Conn, listing_id: str, qty: int) -> asyncpg.Record | None:
    """Take ``qty`` units if the listing is on sale and has them; None otherwise."""
    return await conn.fetchrow(
        f"UPDATE listings SET stock = stock - $2, updated_at = now()"
        f" WHERE id = $1 AND active AND deleted_at IS NULL AND NOT vendor_suspended"
        f" AND stock >= $2"
        f" RETURNING {LISTING_COLUMNS}",
        listing_id,
        qty,
    )


async def take_stocks(conn: Conn, lines: list[tuple[str, int]]) -> list[asyncpg.Record]:
    """Take each ``(listing id, qty)`` of distinct listings in one statement, where the
    listing is on sale and has them; the rows taken, by id (a line short is missing)."""
    rows = await conn.fetch(
        f"UPDATE listings l SET stock = l.stock - v.qty, updated_at = now()"
        f" FROM unnest($1::text[], $2::int[]) AS v(id, qty)"
        f" WHERE l.id = v.id AND l.active AND l.deleted_at IS NULL AND NOT l.vendor_suspended"
        f" AND l.stock >= v.qty"
        f" RETURNING {_listing_alias('l')}",
        [listing_id for listing_id, _ in lines],
        [qty for _, qty in lines],
    )
    return sorted(rows, key=lambda r: str(r["id"]))


async def put_back(conn: Conn, listing_id: str, qty: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"UPDATE listings SET stock = stock + $2, updated_at = now() WHERE id = $1"
        f" RETURNING {LISTING_COLUMNS}",
        listing_id,
        qty,
    )
    return listing_public(one(row))


def _page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """Rows of this page and the cursor after its last row (None on the last page)."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], PageCursor(last["created_at"].isoformat(), last["id"]).encode()


def _before(cursor: PageCursor | None) -> tuple[datetime | None, str | None]:
    if cursor is None:
        return None, None
    return datetime.fromisoformat(cursor.created_at), cursor.last_id


async def vendor_listings(
    db: Db, vendor_id: str, cursor: PageCursor | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    at, last_id = _before(cursor)
    rows = await db.fetch(
        f"SELECT {LISTING_COLUMNS} FROM listings WHERE vendor_id = $1 AND deleted_at IS NULL"
        f" AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))"
        f" ORDER BY created_at DESC, id DESC LIMIT $4",
        vendor_id,
        at,
        last_id,
        limit + 1,
    )
    page, next_cursor = _page(rows, limit)
    return [listing_public(r) for r in page], next_cursor


# Equirectangular distance in metres: exact enough within a k-ring of a few kilometres.
_DISTANCE = (
    "6371008.8 * sqrt(power(radians(lat - $2), 2)"
    " + power(radians(lng - $3) * cos(radians(($2 + lat) / 2)), 2))"
)
_ORDER_BY = {
    "distance": ("distance_m", "ASC", ">"),
    "price": ("price", "ASC", ">"),
    "newest": ("created_at", "DESC", "<"),
}


def nearby_sql(sort: str, with_cursor: bool) -> str:
    """The browse query; shared with bench/checkout.py so the bench compares like with like."""
    key, direction, cmp = _ORDER_BY[sort]
    cursor = ""
    if with_cursor:
        value = "$8::timestamptz" if sort == "newest" else "$8::float8"
        cursor = f" AND ({key}, id) {cmp} ({value}, $9)"
    return (
        f"SELECT * FROM (SELECT {LISTING_COLUMNS}, {_DISTANCE} AS distance_m FROM listings"
        f" WHERE cell = ANY($1::text[]) AND active AND deleted_at IS NULL"
        f" AND NOT vendor_suspended"
        f" AND ($4::text IS NULL OR category = $4)"
        f" AND ($5::text IS NULL OR search @@ websearch_to_tsquery('english', $5))"
        f" AND ($6::bigint IS NULL OR price <= $6)) AS x"
        f" WHERE true{cursor} ORDER BY {key} {direction}, id {direction} LIMIT $7"
    )


async def nearby(
    db: Db,
    cells: list[str],
    lat: float,
    lng: float,
    filters: dict[str, Any],
    sort: str,
    cursor: NearbyCursor | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of listings on sale in ``cells`` and the cursor of the next page (or None)."""
    args: list[Any] = [
        cells,
        lat,
        lng,
        filters.get("category"),
        filters.get("q"),
        filters.get("max_price"),
        limit + 1,
    ]
    if cursor is not None:
        value: Any = cursor.value
        if sort == "newest":
            value = datetime.fromisoformat(str(value))
        args += [value, cursor.last_id]
    rows = await db.fetch(nearby_sql(sort, cursor is not None), *args)
    items = [listing_public(r) for r in rows[:limit]]
    if len(rows) <= limit:
        return items, None
    last = rows[limit - 1]
    key = _ORDER_BY[sort][0]
    value = last[key].isoformat() if sort == "newest" else float(last[key])
    return items, NearbyCursor(sort, value, last["id"]).encode()


# -- carts --------------------------------------------------------------------------------------
async def cart_add(conn: Conn, user_id: str, listing_id: str, qty: int, most: int) -> int | None:
    """Add ``qty`` of a listing on sale to the cart, up to ``most`` in all; the quantity now
    in the cart, or None with nothing written (no such listing on sale, or over ``most``).
    An add also records a ``cart`` interaction (the analytics funnel's middle step), in the
    same statement."""
    value = await conn.fetchval(
        "WITH added AS (INSERT INTO cart_items (user_id, listing_id, qty)"
        " SELECT $1, l.id, $3 FROM listings l"
        " WHERE l.id = $2 AND l.active AND l.deleted_at IS NULL AND NOT l.vendor_suspended"
        " ON CONFLICT (user_id, listing_id) DO UPDATE SET qty = cart_items.qty + EXCLUDED.qty"
        " WHERE cart_items.qty + EXCLUDED.qty <= $4 RETURNING qty),"
        " noted AS (INSERT INTO interactions (user_id, item_kind, item_id, kind, cell, lat, lng,"
        " category) SELECT $1, 'listing', l.id, 'cart', l.cell, l.lat, l.lng, l.category"
        " FROM listings l WHERE l.id = $2 AND EXISTS (SELECT 1 FROM added))"
        " SELECT qty FROM added",
        user_id,
        listing_id,
        qty,
        most,
    )
    return None if value is None else int(value)


async def cart_remove(conn: Conn, user_id: str, listing_ids: list[str]) -> int:
    status = await conn.execute(
        "DELETE FROM cart_items WHERE user_id = $1 AND listing_id = ANY($2::text[])",
        user_id,
        listing_ids,
    )
    return int(status.split()[-1])


async def cart(db: Db, user_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT c.qty, c.added_at, l.vendor_id AS l_vendor, {_listing_alias('l')}"
        f" FROM cart_items c JOIN listings l ON l.id = c.listing_id"
        f" WHERE c.user_id = $1 AND l.active AND l.deleted_at IS NULL ORDER BY c.added_at, l.id",
        user_id,
    )
    return [{"listing_id": r["id"], "qty": r["qty"], "listing": listing_public(r)} for r in rows]


def _listing_alias(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in LISTING_COLUMNS.split(","))


# -- orders -------------------------------------------------------------------------------------
def order_public(
    row: asyncpg.Record | dict[str, Any], lines: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": row["id"],
        "group_id": row["group_id"],
        "buyer_id": row["buyer_id"],
        "vendor_id": row["vendor_id"],
        "status": row["status"],
        "items": lines,
        "total": row["total"],
        "refunded": row["refunded"],
        "currency": row["currency"],
        "reserved_until": _iso(row["reserved_until"]),
        "reason": row["reason"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "risk": row["risk"],  # {score, reasons} of its checkout (models/risk.py); None before
    }


async def insert_order(
    conn: Conn, o: dict[str, Any], lines: list[dict[str, Any]]
) -> dict[str, Any]:
    """A pending order and its lines; reserved for ``o["reservation_s"]`` seconds from now by
    the database clock (the one expiry is decided by). The order's public shape."""
    row = await conn.fetchrow(
        f"WITH o AS (INSERT INTO orders (id, group_id, buyer_id, vendor_id, vendor_user_id, cell,"
        f" status, total, currency, reserved_until, risk) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
        f" $9, now() + make_interval(secs => $10), $15) RETURNING {ORDER_COLUMNS}),"
        f" l AS (INSERT INTO order_lines (order_id, listing_id, title, qty, unit_price)"
        f" SELECT o.id, x.* FROM o, unnest($11::text[], $12::text[], $13::int[], $14::bigint[])"
        f" AS x(listing_id, title, qty, unit_price))"
        f" SELECT * FROM o",
        o["id"],
        o["group_id"],
        o["buyer_id"],
        o["vendor_id"],
        o["vendor_user_id"],
        o["cell"],
        o["status"],
        o["total"],
        o["currency"],
        float(o["reservation_s"]),
        [x["listing_id"] for x in lines],
        [x["title"] for x in lines],
        [x["qty"] for x in lines],
        [x["unit_price"] for x in lines],
        o.get("risk"),
    )  # the order and its lines in one statement
    return order_public(one(row), lines)


async def _lines(db: Db, order_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT order_id, listing_id, title, qty, unit_price FROM order_lines"
        " WHERE order_id = ANY($1::text[]) ORDER BY order_id, listing_id",
        order_ids,
    )
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in order_ids}
    for r in rows:
        out[r["order_id"]].append(
            {
                "listing_id": r["listing_id"],
                "title": r["title"],
                "qty": r["qty"],
                "unit_price": r["unit_price"],
            }
        )
    return out


async def _orders(db: Db, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    lines = await _lines(db, [r["id"] for r in rows])
    return [order_public(r, lines[r["id"]]) for r in rows]


async def order_row(db: Db, order_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await db.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{suffix}", order_id)


async def order_locked(
    conn: Conn, order_id: str
) -> tuple[asyncpg.Record, list[dict[str, Any]]] | None:
    """The order's row, locked for this transaction (with ``announced``: whether its inboxes
    heard of it yet), and its lines, in one round trip."""
    row = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS}, (SELECT coalesce(jsonb_agg(jsonb_build_object("
        f"'listing_id', x.listing_id, 'title', x.title, 'qty', x.qty, 'unit_price', x.unit_price)"
        f" ORDER BY x.listing_id), '[]'::jsonb) FROM order_lines x WHERE x.order_id = o.id)"
        f" AS lines, o.announced FROM orders o WHERE o.id = $1 FOR UPDATE OF o",
        order_id,
    )
    return None if row is None else (row, list(row["lines"]))


async def mark_announced(conn: Conn, order_id: str) -> bool:
    """Note that a pending order reserved unannounced is on its inboxes now: True if this
    call changed it (it was unannounced), so an announcement is made once."""
    done = await conn.fetchval(
        "UPDATE orders SET announced = true WHERE id = $1 AND NOT announced RETURNING true",
        order_id,
    )
    return bool(done)


async def order(db: Db, order_id: str) -> dict[str, Any] | None:
    row = await order_row(db, order_id)
    return (await _orders(db, [row]))[0] if row else None


async def set_order_status(
    conn: Conn, order_id: str, status: str, reason: str | None, refunded: int = 0
) -> asyncpg.Record:
    """The order's new ``status``, with ``refunded`` more of it refunded (a refund row's)."""
    row = await conn.fetchrow(
        f"UPDATE orders SET status = $2, reason = COALESCE($3, reason), updated_at = now(),"
        f" reserved_until = CASE WHEN $2 = 'pending_payment' THEN reserved_until END,"
        f" refunded = refunded + $4 WHERE id = $1 RETURNING {ORDER_COLUMNS}",
        order_id,
        status,
        reason,
        refunded,
    )
    return one(row)


async def orders_where(
    db: Db, column: str, owner: str, status: str | None, cursor: PageCursor | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Orders of a buyer (``column='buyer_id'``) or vendor, newest first, and the next cursor."""
    assert column in ("buyer_id", "vendor_id")
    at, last_id = _before(cursor)
    rows = await db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE {column} = $1"
        f" AND ($2::text IS NULL OR status = $2)"
        f" AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))"
        f" ORDER BY created_at DESC, id DESC LIMIT $5",
        owner,
        status,
        at,
        last_id,
        limit + 1,
    )
    page, next_cursor = _page(rows, limit)
    return await _orders(db, page), next_cursor


async def orders_of_group(db: Db, group_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE group_id = $1 ORDER BY vendor_id", group_id
    )
    return await _orders(db, rows)


async def reservation_over(conn: Conn, order_id: str) -> bool:
    """A ``pending_payment`` order whose ``reserved_until`` has passed by the database clock
    (the one the sweeper selects with), inside the caller's transaction."""
    return bool(
        await conn.fetchval(
            "SELECT status = 'pending_payment' AND reserved_until <= now() FROM orders"
            " WHERE id = $1",
            order_id,
        )
    )


async def sync_refunded(db: Db, payment_id: str, provider_total: int = 0) -> None:
    """Set a payment's ``refunded_amount`` from what is known, never by adding to it.

    It is the largest of: its current value, the sum of its refunds done (``succeeded`` by us,
    ``external`` at the provider), and ``provider_total`` (the provider's own cumulative figure,
    e.g. Stripe's ``amount_refunded``). Every writer may run in any order and any number of
    times: our refund and the provider's webhook about that same refund count it once. One
    statement: on the pool, or on a connection inside the caller's transaction.
    """
    await db.execute(
        "UPDATE payments SET refunded_amount = GREATEST(refunded_amount, $2::bigint,"
        " (SELECT COALESCE(sum(amount), 0) FROM refunds WHERE payment_id = $1"
        " AND status IN ('succeeded', 'external'))), updated_at = now() WHERE id = $1",
        payment_id,
        provider_total,
    )


async def expired_orders(db: Db, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, group_id, buyer_id FROM orders WHERE status = 'pending_payment'"
        " AND reserved_until <= now() ORDER BY reserved_until LIMIT $1",
        limit,
    )


# -- the risk review queue (services/risk.py) ---------------------------------------------------
async def held_orders(db: Db, offset: int, limit: int) -> list[dict[str, Any]]:
    """Held orders, longest held first, each with its checkout's stored risk, its buyer and
    its payment (``limit`` of them from ``offset``)."""
    rows = await db.fetch(
        f"SELECT {', '.join('o.' + c.strip() for c in ORDER_COLUMNS.split(','))},"
        " g.risk AS group_risk, g.amount AS group_amount, u.email AS buyer_email,"
        " p.id AS payment_id, p.provider, p.status AS payment_status"
        " FROM orders o JOIN order_groups g ON g.id = o.group_id"
        " JOIN users u ON u.id = o.buyer_id LEFT JOIN payments p ON p.group_id = o.group_id"
        " WHERE o.status = 'held' ORDER BY o.updated_at, o.id OFFSET $1 LIMIT $2",
        offset,
        limit,
    )
    orders = await _orders(db, rows)
    return [
        {
            "order": order,
            "risk": row["group_risk"],
            "buyer": {"id": row["buyer_id"], "email": row["buyer_email"]},
            "payment": {
                "id": row["payment_id"],
                "provider": row["provider"],
                "status": row["payment_status"],
                "amount": row["group_amount"],
                "currency": row["currency"],
            },
            "held_at": _iso(row["updated_at"]),
        }
        for row, order in zip(rows, orders, strict=True)
    ]


async def stale_holds(db: Db, held_s: float, limit: int) -> list[str]:
    """Ids of orders held longer than ``held_s`` (by the database clock)."""
    rows = await db.fetch(
        "SELECT id FROM orders WHERE status = 'held'"
        " AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2",
        float(held_s),
        limit,
    )
    return [str(r["id"]) for r in rows]
