"""SQL of vendor analytics: the incremental rollup, the dashboard's reads, the order export.

**Rollup** (``rollup``): one run is one REPEATABLE READ transaction (one snapshot for every
table) under a session advisory lock (a second concurrent run answers ``busy`` and does
nothing). It lists the (vendor, UTC day) pairs with an order or a listing view / cart add
changed after the watermark less ``overlap_s``, recomputes each such day from the raw rows and
replaces that day's rollup rows, then moves the watermark to the run's start. A run therefore
reads only what changed (plus the overlap), and running it again over the same rows writes the
same figures: it is idempotent by construction (replace, never add). An order's day is the UTC
day it was placed; a refund a week later re-touches that day (its ``updated_at`` moves).

**Reads** (``dashboard``): five small scans of the rollups, in one read-only snapshot (every
figure from the same run); never a raw order, and none reads rows in proportion to the orders
(the series one row per day, the heatmap and top listings whole months and two partial ones,
the repeat-customer rate one row per customer by its GiST index of buyer spans). **Export**
(``export_rows``): the vendor's order lines of a range, from the raw tables through a
server-side cursor (an export is not a dashboard).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from models.analytics import COUNTED, month_split
from store.db import Db

ROLLUP_LOCK = 0x484C_414E  # "HLAN": one rollup run at a time, across every process
WATERMARK = "rollup"

# The (vendor, day) pairs to recompute: days of orders changed since the mark, and days of
# listing views / cart adds recorded since it. lo/hi bound the day in UTC.
_TOUCHED = [
    """CREATE TEMP TABLE hl_touched_orders ON COMMIT DROP AS
       SELECT DISTINCT vendor_id, (created_at AT TIME ZONE 'UTC')::date AS day
         FROM orders WHERE updated_at > $1::timestamptz""",
    """CREATE TEMP TABLE hl_touched_funnel ON COMMIT DROP AS
       SELECT DISTINCT l.vendor_id, (i.created_at AT TIME ZONE 'UTC')::date AS day
         FROM interactions i JOIN listings l ON l.id = i.item_id
        WHERE i.created_at > $1::timestamptz AND i.item_kind = 'listing'
          AND i.kind IN ('view', 'cart')""",
]

_DAY_ORDERS = """
SELECT t.day, o.id, o.vendor_id, o.buyer_id, o.currency, o.total - o.refunded AS revenue,
       o.created_at
  FROM hl_touched_orders t
  JOIN orders o ON o.vendor_id = t.vendor_id
   AND o.created_at >= (t.day::timestamp AT TIME ZONE 'UTC')
   AND o.created_at < ((t.day + 1)::timestamp AT TIME ZONE 'UTC')
 WHERE o.status = ANY($1::text[])
"""

_DELETE = [
    """DELETE FROM analytics_hourly h USING hl_touched_orders t
        WHERE h.vendor_id = t.vendor_id AND h.hour >= (t.day::timestamp AT TIME ZONE 'UTC')
          AND h.hour < ((t.day + 1)::timestamp AT TIME ZONE 'UTC')""",
    """DELETE FROM analytics_listing_days a USING hl_touched_orders t
        WHERE a.vendor_id = t.vendor_id AND a.day = t.day""",
    """DELETE FROM analytics_buyer_days a USING hl_touched_orders t
        WHERE a.vendor_id = t.vendor_id AND a.day = t.day""",
]

_INSERT = [  # $1: the counted states
    f"""INSERT INTO analytics_hourly (vendor_id, hour, currency, orders, units, revenue)
        SELECT d.vendor_id, date_trunc('hour', d.created_at, 'UTC'), d.currency, count(*),
               coalesce(sum((SELECT sum(qty) FROM order_lines WHERE order_id = d.id)), 0),
               sum(d.revenue)
          FROM ({_DAY_ORDERS}) d
         GROUP BY 1, 2, 3""",
    f"""INSERT INTO analytics_listing_days
               (vendor_id, day, listing_id, currency, orders, units, revenue)
        SELECT d.vendor_id, d.day, ol.listing_id, d.currency, count(*), sum(ol.qty),
               sum(ol.qty::bigint * ol.unit_price)
          FROM ({_DAY_ORDERS}) d JOIN order_lines ol ON ol.order_id = d.id
         GROUP BY 1, 2, 3, 4""",
    f"""INSERT INTO analytics_buyer_days (vendor_id, day, buyer_id, orders)
        SELECT d.vendor_id, d.day, d.buyer_id, count(*) FROM ({_DAY_ORDERS}) d
         GROUP BY 1, 2, 3""",
]

# Before the days are replaced: the buyers whose days this run touches (their spans are redone).
_TOUCHED_BUYERS = """
CREATE TEMP TABLE hl_touched_buyers ON COMMIT DROP AS
SELECT a.vendor_id, a.buyer_id FROM analytics_buyer_days a
  JOIN hl_touched_orders t ON a.vendor_id = t.vendor_id AND a.day = t.day
"""

# After: every touched buyer's (prev_day, day] spans and next days, redone whole; then the
# monthly and daily rollups of the touched months and days, remade from the hourly and daily
# rollups just written (replace, never add).
_AFTER_DAYS = [
    """INSERT INTO hl_touched_buyers SELECT a.vendor_id, a.buyer_id FROM analytics_buyer_days a
         JOIN hl_touched_orders t ON a.vendor_id = t.vendor_id AND a.day = t.day""",
    """UPDATE analytics_buyer_days a SET prev_day = w.prev_day, next_day = w.next_day
         FROM (SELECT b.vendor_id, b.buyer_id, b.day,
                      lag(b.day) OVER w AS prev_day, lead(b.day) OVER w AS next_day
                 FROM analytics_buyer_days b
                 JOIN (SELECT DISTINCT vendor_id, buyer_id FROM hl_touched_buyers) t
                   ON t.vendor_id = b.vendor_id AND t.buyer_id = b.buyer_id
               WINDOW w AS (PARTITION BY b.vendor_id, b.buyer_id ORDER BY b.day)) w
        WHERE a.vendor_id = w.vendor_id AND a.buyer_id = w.buyer_id AND a.day = w.day
          AND (a.prev_day IS DISTINCT FROM w.prev_day OR a.next_day IS DISTINCT FROM w.next_day)""",
    """CREATE TEMP TABLE hl_touched_months ON COMMIT DROP AS
       SELECT DISTINCT vendor_id, date_trunc('month', day)::date AS month FROM hl_touched_orders""",
    """DELETE FROM analytics_listing_months a USING hl_touched_months t
        WHERE a.vendor_id = t.vendor_id AND a.month = t.month""",
    """INSERT INTO analytics_listing_months
               (vendor_id, month, listing_id, currency, orders, units, revenue)
        SELECT d.vendor_id, t.month, d.listing_id, d.currency, sum(d.orders), sum(d.units),
               sum(d.revenue)
          FROM hl_touched_months t JOIN analytics_listing_days d ON d.vendor_id = t.vendor_id
           AND d.day >= t.month AND d.day < (t.month + interval '1 month')::date
         GROUP BY 1, 2, 3, 4""",
    """DELETE FROM analytics_heat_months a USING hl_touched_months t
        WHERE a.vendor_id = t.vendor_id AND a.month = t.month""",
    """INSERT INTO analytics_heat_months (vendor_id, month, isodow, hour, orders)
        SELECT h.vendor_id, t.month, extract(isodow FROM h.hour AT TIME ZONE 'UTC'),
               extract(hour FROM h.hour AT TIME ZONE 'UTC'), sum(h.orders)
          FROM hl_touched_months t JOIN analytics_hourly h ON h.vendor_id = t.vendor_id
           AND h.hour >= (t.month::timestamp AT TIME ZONE 'UTC')
           AND h.hour < ((t.month + interval '1 month') AT TIME ZONE 'UTC')
         GROUP BY 1, 2, 3, 4""",
    """DELETE FROM analytics_days a USING hl_touched_orders t
        WHERE a.vendor_id = t.vendor_id AND a.day = t.day""",
    """INSERT INTO analytics_days (vendor_id, day, currency, orders, units, revenue)
        SELECT h.vendor_id, t.day, h.currency, sum(h.orders), sum(h.units), sum(h.revenue)
          FROM hl_touched_orders t JOIN analytics_hourly h ON h.vendor_id = t.vendor_id
           AND h.hour >= (t.day::timestamp AT TIME ZONE 'UTC')
           AND h.hour < ((t.day + 1)::timestamp AT TIME ZONE 'UTC')
         GROUP BY 1, 2, 3""",
]

_REPLACE_FUNNEL = [
    """DELETE FROM analytics_funnel_days a USING hl_touched_funnel t
        WHERE a.vendor_id = t.vendor_id AND a.day = t.day""",
    """INSERT INTO analytics_funnel_days (vendor_id, day, views, carts)
        SELECT t.vendor_id, t.day, count(*) FILTER (WHERE i.kind = 'view'),
               count(*) FILTER (WHERE i.kind = 'cart')
          FROM hl_touched_funnel t
          JOIN listings l ON l.vendor_id = t.vendor_id
          JOIN interactions i ON i.item_id = l.id AND i.item_kind = 'listing'
           AND i.kind IN ('view', 'cart')
           AND i.created_at >= (t.day::timestamp AT TIME ZONE 'UTC')
           AND i.created_at < ((t.day + 1)::timestamp AT TIME ZONE 'UTC')
         GROUP BY 1, 2""",
]


@dataclass(frozen=True, slots=True)
class RollupRun:
    """What one run did: busy (another run held the lock), or the days it recomputed."""

    busy: bool
    since: datetime | None = None
    """Rows changed after this were read (None: the first run, everything)."""
    mark: datetime | None = None
    """The new watermark (the run's start)."""
    order_days: int = 0
    funnel_days: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "busy": self.busy,
            "since": self.since.isoformat() if self.since else None,
            "mark": self.mark.isoformat() if self.mark else None,
            "order_days": self.order_days,
            "funnel_days": self.funnel_days,
        }


async def rollup(conn: asyncpg.Connection, overlap_s: float) -> RollupRun:
    """One incremental run on ``conn`` (a connection of its own: it holds a session lock)."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", ROLLUP_LOCK):
        return RollupRun(busy=True)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            row = await conn.fetchrow(
                "SELECT now() AS started, (SELECT mark FROM analytics_watermarks WHERE name = $1)"
                " AS mark",
                WATERMARK,
            )
            assert row is not None
            mark: datetime | None = row["mark"]
            since = mark - timedelta(seconds=overlap_s) if mark is not None else None
            for sql in _TOUCHED:
                await conn.execute(sql, since or _BEGINNING)
            order_days = int(await conn.fetchval("SELECT count(*) FROM hl_touched_orders"))
            funnel_days = int(await conn.fetchval("SELECT count(*) FROM hl_touched_funnel"))
            await conn.execute(_TOUCHED_BUYERS)
            for sql in _DELETE:
                await conn.execute(sql)
            for sql in _INSERT:
                await conn.execute(sql, list(COUNTED))
            for sql in _AFTER_DAYS:
                await conn.execute(sql)
            for sql in _REPLACE_FUNNEL:
                await conn.execute(sql)
            await conn.execute(
                "INSERT INTO analytics_watermarks (name, mark) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET mark = EXCLUDED.mark,"
                " runs = analytics_watermarks.runs + 1, updated_at = now()",
                WATERMARK,
                row["started"],
            )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ROLLUP_LOCK)
    return RollupRun(False, since, row["started"], order_days, funnel_days)


_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
"""What the first run reads rows changed after: every row."""


async def watermark(db: Db) -> datetime | None:
    value: datetime | None = await db.fetchval(
        "SELECT mark FROM analytics_watermarks WHERE name = $1", WATERMARK
    )
    return value


# -- the dashboard --------------------------------------------------------------------------------
# Every read is bounded by the range's length, never by its orders (docs/analytics.md, "What a
# query reads"): the series one row per day and currency; the heatmap and the top listings the
# range's whole months from the monthly rollups ($2..$3) and only the partial months' edges
# ($4..$5, $6..$7: [start, end) days, empty when start = end) from the hourly and daily ones;
# the repeat-customer rate one row per customer (the buyer's span holding the first day).
_SERIES = """
SELECT day AS period, currency, orders, units, revenue FROM analytics_days
 WHERE vendor_id = $1 AND day BETWEEN $2 AND $3
"""

_EDGE_HOURS = """
SELECT extract(isodow FROM hour AT TIME ZONE 'UTC')::int AS isodow,
       extract(hour FROM hour AT TIME ZONE 'UTC')::int AS hour, orders
  FROM analytics_hourly WHERE vendor_id = $1
   AND hour >= (${a}::date::timestamp AT TIME ZONE 'UTC')
   AND hour < (${b}::date::timestamp AT TIME ZONE 'UTC')
"""

_HEAT = f"""
SELECT isodow, hour, sum(orders)::bigint AS orders FROM (
  SELECT isodow::int AS isodow, hour::int AS hour, orders FROM analytics_heat_months
   WHERE vendor_id = $1 AND month >= $2 AND month < $3
  UNION ALL {_EDGE_HOURS.format(a=4, b=5)}
  UNION ALL {_EDGE_HOURS.format(a=6, b=7)}
) x GROUP BY 1, 2
"""

_EDGE_DAYS = """
SELECT listing_id, currency, orders, units, revenue FROM analytics_listing_days
 WHERE vendor_id = $1 AND day >= ${a} AND day < ${b}
"""

_TOP = f"""
SELECT t.listing_id, l.title, t.currency, t.orders, t.units, t.revenue
  FROM (SELECT listing_id, currency, sum(orders)::bigint AS orders, sum(units)::bigint AS units,
               sum(revenue)::bigint AS revenue
          FROM (SELECT listing_id, currency, orders, units, revenue
                  FROM analytics_listing_months
                 WHERE vendor_id = $1 AND month >= $2 AND month < $3
                UNION ALL {_EDGE_DAYS.format(a=4, b=5)}
                UNION ALL {_EDGE_DAYS.format(a=6, b=7)}) u
         GROUP BY 1, 2
         ORDER BY revenue DESC, units DESC, listing_id
         LIMIT $8) t
  LEFT JOIN listings l ON l.id = t.listing_id
 ORDER BY t.revenue DESC, t.units DESC, t.listing_id
"""

# The buyer's span (prev_day, day] that holds $2: the first day it bought on or after $2; a
# customer of the range if that day is <= $3, a repeat one if it has 2+ orders or the next does.
_CUSTOMERS = """
SELECT count(*) AS customers, count(*) FILTER (WHERE orders >= 2 OR next_day <= $3) AS repeat
  FROM analytics_buyer_days
 WHERE vendor_id = $1 AND daterange(prev_day, day, '(]') @> $2::date AND day <= $3
"""

_FUNNEL = """
SELECT coalesce(sum(views), 0)::bigint AS views, coalesce(sum(carts), 0)::bigint AS carts
  FROM analytics_funnel_days WHERE vendor_id = $1 AND day BETWEEN $2 AND $3
"""


def split_args(first: date, last: date) -> tuple[date, ...]:
    """$2..$7 of ``_HEAT`` and ``_TOP``: the whole months, then two edges (empty: start=end)."""
    split = month_split(first, last)
    months = split.months or (first, first)
    edges = (*split.edges, (first, first), (first, first))[:2]
    return (*months, *edges[0], *edges[1])


@dataclass(frozen=True, slots=True)
class DashboardRows:
    """The rollup rows one dashboard answer is made of (shaped by models/analytics.py)."""

    series: list[asyncpg.Record]
    heatmap: list[asyncpg.Record]
    top: list[asyncpg.Record]
    customers: int
    repeat: int
    views: int
    carts: int
    as_of: datetime | None


async def dashboard(
    db: asyncpg.Pool, vendor_id: str, first: date, last: date, top: int
) -> DashboardRows:
    # one snapshot: every figure of the answer comes from the same rollup run
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        split = split_args(first, last)
        series = await conn.fetch(_SERIES, vendor_id, first, last)
        heat = await conn.fetch(_HEAT, vendor_id, *split)
        best = await conn.fetch(_TOP, vendor_id, *split, top)
        cust = await conn.fetchrow(_CUSTOMERS, vendor_id, first, last)
        funnel = await conn.fetchrow(_FUNNEL, vendor_id, first, last)
        mark = await watermark(conn)
    assert cust is not None and funnel is not None
    return DashboardRows(
        series, heat, best, int(cust["customers"]), int(cust["repeat"]),
        int(funnel["views"]), int(funnel["carts"]), mark,
    )  # fmt: skip


async def vendor_exists(db: Db, vendor_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM vendors WHERE id = $1)", vendor_id))


# -- the export -----------------------------------------------------------------------------------
EXPORT_COLUMNS = (
    "order_id", "created_at", "status", "buyer_id", "listing_id", "title", "qty", "unit_price",
    "line_total", "currency", "order_total", "order_refunded", "cell",
)  # fmt: skip
"""The columns of an export, one row per order line (every status: the dashboard counts only
``COUNTED`` ones; the status column tells them apart)."""

_EXPORT = """
SELECT o.id AS order_id, o.created_at, o.status, o.buyer_id, ol.listing_id, ol.title, ol.qty,
       ol.unit_price, ol.qty::bigint * ol.unit_price AS line_total, o.currency,
       o.total AS order_total, o.refunded AS order_refunded, o.cell
  FROM orders o JOIN order_lines ol ON ol.order_id = o.id
 WHERE o.vendor_id = $1 AND o.created_at >= ($2::date::timestamp AT TIME ZONE 'UTC')
   AND o.created_at < (($3::date + 1)::timestamp AT TIME ZONE 'UTC')
 ORDER BY o.created_at, o.id, ol.listing_id
"""


async def export_rows(
    db: asyncpg.Pool, vendor_id: str, first: date, last: date, chunk: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """The export's rows in chunks of at most ``chunk``, read through a server-side cursor
    (one connection, one snapshot, held while the caller consumes)."""
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(_EXPORT, vendor_id, first, last)
        while rows := await cursor.fetch(chunk):
            yield rows
