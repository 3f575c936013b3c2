"""Analytics benchmark: a vendor dashboard from the rollups against the same answer computed
from the raw orders in SQL, same run, same data.

Seeds one vendor with ``--orders`` orders (100k by default) over ``--days`` days from
``--buyers`` buyers, one or two lines each over ``--listings`` listings, a mix of states (some
refunded, cancelled or partly refunded), plus views and cart adds, straight into Postgres with
``generate_series`` (not through checkout), into a private embedded Postgres (or ``--dsn``: a
scratch database). It then times the first rollup (the backfill) and an incremental one after
100 more orders, and queries the whole range (``--range-days``) ``--queries`` times each way:

- ``rollups``: ``AnalyticsService.dashboard`` (services/analytics.py), the service call the
  REST route and GraphQL make, shaping included;
- ``raw SQL``: ``raw_dashboard`` below: the same figures from ``orders``, ``order_lines`` and
  ``interactions``, shaped by the same functions.

Both answers must be equal (``same_answer``, and ``same_answer_ranges`` over ranges that start
and end mid-month and mid-history); ``rows_read`` is what each query of either variant read,
from ``EXPLAIN (ANALYZE, BUFFERS)`` (rows out of every scan node: a count, not a timing, so it
means the same on a loaded machine). The target is a p99 of 50 ms or less for the
rollups. Figures are to be measured on a quiet machine (docs/benchmarks.md#analytics);
``--quick`` is a functional smoke (2k orders, 20 queries)::

    python -m bench.analytics
    python -m bench.analytics --quick --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import h3

from bench.loadgen import percentile
from bench.report import table
from cluster.config import Settings
from models import analytics as an
from services.analytics import AnalyticsQuery, AnalyticsService, run_rollup
from store import analytics_store as st
from store.db import Db, create_pool, migrate
from store.embedded import EmbeddedPostgres

CENTRE = (52.52, 13.405)
VENDOR = "bench-vendor"

_SEED = """
SELECT setseed(0.17);
INSERT INTO users (id, email, email_norm, password_hash, display_name)
SELECT 'bench-u' || g, 'u' || g || '@bench.test', 'u' || g || '@bench.test', 'x', 'buyer ' || g
  FROM generate_series(0, {buyers}) g;
INSERT INTO vendors (id, user_id, name, category, cell, lat, lng)
VALUES ('{vendor}', 'bench-u0', 'bench vendor', 'bakery', '{cell}', {lat}, {lng});
INSERT INTO listings (id, vendor_id, cell, kind, title, category, price, currency, stock, lat, lng)
SELECT '{vendor}-l' || g, '{vendor}', '{cell}', 'product', 'item ' || g, 'bread',
       100 + (g * 37) % 2000, 'usd', 100000, {lat}, {lng}
  FROM generate_series(1, {listings}) g;
"""

# One batch of orders numbered from {first}: placed over the last {days} days (or now).
_ORDERS = """
CREATE TEMP TABLE bench_o ON COMMIT DROP AS
SELECT g AS n, 'bench-o' || g AS id, 'bench-u' || (1 + floor(random() * {buyers}))::int AS buyer,
       now() - random() * interval '{days} days' AS at, random() AS r,
       1 + floor(random() * {listings})::int AS l1, random() < 0.3 AS two,
       1 + floor(random() * 3)::int AS q1
  FROM generate_series({first}, {last}) g;
INSERT INTO order_groups (id, buyer_id, idem_key, status, parts, amount, currency, created_at)
SELECT 'bench-g' || n, buyer, 'k' || n, 'completed', '[]', 0, 'usd', at FROM bench_o;
CREATE TEMP TABLE bench_l ON COMMIT DROP AS
SELECT o.id AS order_id, '{vendor}-l' || o.l1 AS listing_id, o.q1 AS qty FROM bench_o o
UNION ALL
SELECT o.id, '{vendor}-l' || (o.l1 % {listings} + 1), 1 FROM bench_o o WHERE o.two
  AND {listings} > 1;
INSERT INTO orders (id, group_id, buyer_id, vendor_id, vendor_user_id, cell, status, total,
                    refunded, currency, created_at, updated_at)
SELECT o.id, 'bench-g' || o.n, o.buyer, '{vendor}', 'bench-u0', '{cell}',
       CASE WHEN o.r < 0.05 THEN 'refunded' WHEN o.r < 0.08 THEN 'cancelled'
            WHEN o.r < 0.5 THEN 'completed' WHEN o.r < 0.7 THEN 'fulfilled' ELSE 'paid' END,
       t.total,
       CASE WHEN o.r < 0.05 THEN t.total WHEN o.r BETWEEN 0.08 AND 0.1 THEN t.total / 4 ELSE 0 END,
       'usd', o.at, o.at
  FROM bench_o o
  JOIN (SELECT b.order_id, sum(b.qty * l.price) AS total FROM bench_l b
          JOIN listings l ON l.id = b.listing_id GROUP BY 1) t ON t.order_id = o.id;
INSERT INTO order_lines (order_id, listing_id, title, qty, unit_price)
SELECT b.order_id, b.listing_id, l.title, b.qty, l.price FROM bench_l b
  JOIN listings l ON l.id = b.listing_id;
INSERT INTO interactions (user_id, item_kind, item_id, kind, cell, created_at)
SELECT 'bench-u' || (1 + floor(random() * {buyers}))::int, 'listing',
       '{vendor}-l' || (1 + floor(random() * {listings}))::int,
       CASE WHEN random() < 0.25 THEN 'cart' ELSE 'view' END, '{cell}',
       now() - random() * interval '{days} days'
  FROM generate_series(1, ({last} - {first} + 1) * 4);
"""


async def seed(conn: asyncpg.Connection, args: argparse.Namespace) -> None:
    cell = h3.latlng_to_cell(CENTRE[0], CENTRE[1], 8)
    lat, lng = h3.cell_to_latlng(cell)
    shape = dict(
        vendor=VENDOR, cell=cell, lat=lat, lng=lng, buyers=args.buyers, listings=args.listings
    )
    await conn.execute(_SEED.format(**shape))
    await add_orders(conn, args, 1, args.orders, args.days)


async def add_orders(
    conn: asyncpg.Connection, args: argparse.Namespace, first: int, last: int, days: float
) -> None:
    cell = h3.latlng_to_cell(CENTRE[0], CENTRE[1], 8)
    async with conn.transaction():
        shape = dict(vendor=VENDOR, cell=cell, buyers=args.buyers, listings=args.listings)
        await conn.execute(_ORDERS.format(**shape, first=first, last=last, days=days))


# -- the same answer from the raw rows --------------------------------------------------------
_RANGE = """o.vendor_id = $1 AND o.created_at >= ($2::date::timestamp AT TIME ZONE 'UTC')
   AND o.created_at < (($3::date + 1)::timestamp AT TIME ZONE 'UTC')
   AND o.status = ANY($4::text[])"""

_RAW_SERIES = f"""
SELECT (o.created_at AT TIME ZONE 'UTC')::date AS period, o.currency, count(*) AS orders,
       coalesce(sum((SELECT sum(qty) FROM order_lines WHERE order_id = o.id)), 0) AS units,
       sum(o.total - o.refunded) AS revenue
  FROM orders o WHERE {_RANGE} GROUP BY 1, 2
"""
_RAW_HEATMAP = f"""
SELECT extract(isodow FROM o.created_at AT TIME ZONE 'UTC')::int AS isodow,
       extract(hour FROM o.created_at AT TIME ZONE 'UTC')::int AS hour, count(*) AS orders
  FROM orders o WHERE {_RANGE} GROUP BY 1, 2
"""
_RAW_TOP = f"""
SELECT ol.listing_id, l.title, o.currency, count(*) AS orders, sum(ol.qty) AS units,
       sum(ol.qty::bigint * ol.unit_price) AS revenue
  FROM orders o JOIN order_lines ol ON ol.order_id = o.id
  LEFT JOIN listings l ON l.id = ol.listing_id
 WHERE {_RANGE}
 GROUP BY ol.listing_id, l.title, o.currency
 ORDER BY revenue DESC, units DESC, ol.listing_id LIMIT $5
"""
_RAW_CUSTOMERS = f"""
SELECT count(*) AS customers, count(*) FILTER (WHERE n >= 2) AS repeat
  FROM (SELECT o.buyer_id, count(*) AS n FROM orders o WHERE {_RANGE} GROUP BY 1) b
"""
_RAW_FUNNEL = """
SELECT count(*) FILTER (WHERE i.kind = 'view') AS views,
       count(*) FILTER (WHERE i.kind = 'cart') AS carts
  FROM listings l JOIN interactions i ON i.item_id = l.id AND i.item_kind = 'listing'
 WHERE l.vendor_id = $1 AND i.created_at >= ($2::date::timestamp AT TIME ZONE 'UTC')
   AND i.created_at < (($3::date + 1)::timestamp AT TIME ZONE 'UTC')
"""


async def raw_dashboard(db: Db, vendor_id: str, rng: an.Range, top: int) -> dict[str, Any]:
    """The dashboard's figures from the raw tables (no ``as_of``): what the rollups must equal."""
    args = (vendor_id, rng.first, rng.last, list(an.COUNTED))
    series = await db.fetch(_RAW_SERIES, *args)
    heat = await db.fetch(_RAW_HEATMAP, *args)
    best = await db.fetch(_RAW_TOP, *args, top)
    cust = await db.fetchrow(_RAW_CUSTOMERS, *args)
    funnel = await db.fetchrow(_RAW_FUNNEL, vendor_id, rng.first, rng.last)
    assert cust is not None and funnel is not None
    orders = sum(int(r["orders"]) for r in series)
    return {
        "series": an.series(rng, [dict(r) for r in series]),
        "funnel": {"views": funnel["views"], "carts": funnel["carts"], "orders": orders},
        "top_listings": [_top(r) for r in best],
        "customers": int(cust["customers"]),
        "repeat_customers": int(cust["repeat"]),
        "repeat_customer_rate": an.repeat_rate(int(cust["customers"]), int(cust["repeat"])),
        "hour_weekday": an.heatmap(dict(r) for r in heat),
    }


def _top(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "listing_id": r["listing_id"], "title": r["title"], "currency": r["currency"],
        "orders": int(r["orders"]), "units": int(r["units"]), "revenue": int(r["revenue"]),
    }  # fmt: skip


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """A dashboard answer without what the raw one has not (its range, vendor and ``as_of``)."""
    drop = {"vendor_id", "from", "to", "granularity", "timezone", "as_of"}
    return {k: v for k, v in answer.items() if k not in drop}


# -- what each query reads ----------------------------------------------------------------------
_SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")


def _scanned(node: dict[str, Any]) -> int:
    """Rows every table scan of a plan node and its children read: those it returned and those
    its filter or recheck removed (per loop x loops)."""
    own = 0
    if node.get("Node Type") in _SCANS:
        kept = int(node.get("Actual Rows", 0))
        dropped = int(node.get("Rows Removed by Filter", 0))
        dropped += int(node.get("Rows Removed by Index Recheck", 0))
        own = (kept + dropped) * int(node.get("Actual Loops", 1))
    return own + sum(_scanned(child) for child in node.get("Plans", []))


async def _rows(db: Db, sql: str, *args: Any) -> int:
    plan = await db.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *args)
    return _scanned(json.loads(plan)[0]["Plan"])


async def rows_read(db: Db, vendor_id: str, rng: an.Range, top: int) -> dict[str, Any]:
    """Rows each dashboard query scans, over the rollups and over the raw rows."""
    split = st.split_args(rng.first, rng.last)
    span = (vendor_id, rng.first, rng.last)
    raw = (*span, list(an.COUNTED))
    return {
        "rollups": {
            "series": await _rows(db, st._SERIES, *span),
            "hour_weekday": await _rows(db, st._HEAT, vendor_id, *split),
            "top_listings": await _rows(db, st._TOP, vendor_id, *split, top),
            "customers": await _rows(db, st._CUSTOMERS, *span),
            "funnel": await _rows(db, st._FUNNEL, *span),
        },
        "raw SQL": {
            "series": await _rows(db, _RAW_SERIES, *raw),
            "hour_weekday": await _rows(db, _RAW_HEATMAP, *raw),
            "top_listings": await _rows(db, _RAW_TOP, *raw, top),
            "customers": await _rows(db, _RAW_CUSTOMERS, *raw),
            "funnel": await _rows(db, _RAW_FUNNEL, *span),
        },
    }


def _ranges(today: date, days: int) -> list[tuple[date, date]]:
    """Ranges that start and end inside months and inside the history, and a whole month."""
    start = today - timedelta(days=days - 1)
    month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return [
        (start + timedelta(days=days // 3), today - timedelta(days=days // 5)),
        (start + timedelta(days=17), today - timedelta(days=3)),
        (today - timedelta(days=9), today),
        (month, today.replace(day=1) - timedelta(days=1)),
    ]


# -- the run ----------------------------------------------------------------------------------
async def _timed(n: int, call: Any) -> tuple[list[float], Any]:
    times, last = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        last = await call()
        times.append((time.perf_counter() - t0) * 1000)
    return times, last


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(percentile(ordered, 50), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2),
    }


async def bench(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    db = await create_pool(dsn, min_size=1, max_size=2)
    try:
        t0 = time.monotonic()
        await seed(conn, args)
        seed_s = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        first_run = await run_rollup(dsn, 300.0)
        backfill_s = round(time.monotonic() - t0, 2)
        # today's, within the last 3 minutes: inside the rollup's 5-minute overlap, as rows
        # just written are (their times are the seed's, not now(): one a day earlier than the
        # overlap, e.g. before midnight, would be missed by the run and fail same_answer)
        await add_orders(conn, args, args.orders + 1, args.orders + 100, 0.002)
        t0 = time.monotonic()
        again = await run_rollup(dsn, 300.0)
        incremental_s = round(time.monotonic() - t0, 2)
        settings = Settings(database_url=dsn, analytics_max_days=max(args.range_days, 1))
        service = AnalyticsService(settings, db)
        today = datetime.now(UTC).date()
        first = today - timedelta(days=args.range_days - 1)
        q = AnalyticsQuery(first.isoformat(), today.isoformat(), "day")
        viewer = an.Viewer(VENDOR)
        rng = an.Range(first, today, "day")
        await service.dashboard(viewer, q, today)  # warm plans and caches, both ways
        await raw_dashboard(db, VENDOR, rng, settings.analytics_top_listings)
        rolled_t, rolled = await _timed(args.queries, lambda: service.dashboard(viewer, q, today))
        raw_t, raw = await _timed(
            args.queries, lambda: raw_dashboard(db, VENDOR, rng, settings.analytics_top_listings)
        )
        top = settings.analytics_top_listings
        same_ranges = True
        for a, b in _ranges(today, args.range_days):
            other = AnalyticsQuery(a.isoformat(), b.isoformat(), "day")
            got = comparable(await service.dashboard(viewer, other, today))
            same_ranges &= got == await raw_dashboard(db, VENDOR, an.Range(a, b, "day"), top)
        return {
            "orders": args.orders + 100,
            "range_days": args.range_days,
            "queries": args.queries,
            "seed_s": seed_s,
            "rollup_backfill_s": backfill_s,
            "rollup_backfill_days": first_run.order_days,
            "rollup_incremental_s": incremental_s,
            "rollup_incremental_days": again.order_days,
            "same_answer": comparable(rolled) == raw,
            "same_answer_ranges": same_ranges,
            "rows_read": await rows_read(db, VENDOR, rng, top),
            "counted_orders": rolled["funnel"]["orders"],
            "variants": {"rollups": _summary(rolled_t), "raw SQL": _summary(raw_t)},
            "target_p99_ms": 50.0,
        }
    finally:
        await db.close()
        await conn.close()


def run_embedded(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark on a private embedded Postgres, stopped whatever happens."""
    with tempfile.TemporaryDirectory(prefix="hl-bench-analytics-") as root:
        pg = EmbeddedPostgres(Path(root)).start()
        try:
            return asyncio.run(bench(pg.url, args))
        finally:
            pg.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--buyers", type=int, default=3_000)
    p.add_argument("--listings", type=int, default=60)
    p.add_argument("--days", type=float, default=365.0, help="orders spread over this many")
    p.add_argument("--range-days", type=int, default=366, help="the range queried")
    p.add_argument("--queries", type=int, default=200, help="per variant")
    p.add_argument("--dsn", help="an existing scratch database instead of the embedded one")
    p.add_argument("--quick", action="store_true", help="a functional smoke: 2k orders")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.orders, args.buyers, args.listings, args.queries = 2_000, 200, 12, 20
    return args


def report(result: dict[str, Any]) -> str:
    header = ["p50 ms", "p99 ms", "max ms"]
    rows = [
        (name, [v["p50_ms"], v["p99_ms"], v["max_ms"]]) for name, v in result["variants"].items()
    ]
    head = (
        f"analytics: one vendor, {result['orders']} orders, a {result['range_days']}-day range,"
        f" {result['queries']} queries per variant; same answer: {result['same_answer']}"
        f" (other ranges: {result['same_answer_ranges']});"
        f" rollup backfill {result['rollup_backfill_s']} s ({result['rollup_backfill_days']}"
        f" days), incremental {result['rollup_incremental_s']} s"
        f" ({result['rollup_incremental_days']} days); target p99 <= 50 ms"
    )
    read = result["rows_read"]
    parts = list(read["rollups"])
    scanned = table([(name, [v[p] for p in parts]) for name, v in read.items()], parts)
    timing = table(rows, header)
    return f"{head}\n{timing}\nrows read per query (EXPLAIN ANALYZE):\n{scanned}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    result = asyncio.run(bench(args.dsn, args)) if args.dsn else run_embedded(args)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
