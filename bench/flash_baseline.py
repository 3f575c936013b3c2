"""The flash-sale benchmark's baseline: one plain asyncpg transaction per checkout, over HTTP.

What an engineer would write without actors: a small aiohttp server whose ``POST /checkout``
takes a buyer's lines and, in **one transaction** on a pooled asyncpg connection (asyncpg's
default pool, 10 connections), runs per line (in listing-id order, so two checkouts never lock
the same rows in opposite orders)::

    UPDATE listings SET stock = stock - $qty, updated_at = now()
     WHERE id = $id AND active AND deleted_at IS NULL AND stock >= $qty

rolling the whole checkout back if any line finds too little stock (answer ``409
out_of_stock``), then inserts one ``paid`` order per vendor and its ``order_lines``, and commits
(fsync on, synchronous commit, as the stack's Postgres runs). Its tables live in the schema
``flash_baseline`` of whatever database it is given, copied from the stack's own
(``CREATE TABLE ... (LIKE public.<table> INCLUDING ALL)``: the same columns, CHECKs, defaults
and indexes; no foreign keys), so the flash-sale benchmark points it at the *same* embedded
Postgres as ``ours``, with its own fresh stock.

Not included (so the comparison is read honestly): authentication, websockets, carts (the lines
come in the request), idempotency records, the order group and payment rows, the payment
provider call, the event log, Redis, ``listing.updated`` / ``order.updated`` events to anyone,
webhook outbox rows, reservation expiry. ``POST /listings`` seeds listings (not measured).

    python -m bench.flash_baseline --port 9100 --dsn postgresql://user:pw@127.0.0.1:5432/db

It prints ``flash baseline on http://127.0.0.1:<port>`` once serving; SIGINT stops it (exit 0).
"""

from __future__ import annotations

import argparse
import itertools
import os
from typing import Any

import asyncpg
from aiohttp import web

from cluster import gcpolicy
from cluster.config import load_settings

SCHEMA = "flash_baseline"
READY = "flash baseline on"
TABLES = ("listings", "orders", "order_lines")
TAKE = (
    f"UPDATE {SCHEMA}.listings SET stock = stock - $2, updated_at = now()"
    " WHERE id = $1 AND active AND deleted_at IS NULL AND stock >= $2"
    " RETURNING vendor_id, cell, title, price, currency"
)
INSERT_ORDER = (
    f"INSERT INTO {SCHEMA}.orders (id, group_id, buyer_id, vendor_id, vendor_user_id, cell,"
    " status, total, currency) VALUES ($1, $2, $3, $4, $5, $6, 'paid', $7, $8)"
)
INSERT_LINE = (
    f"INSERT INTO {SCHEMA}.order_lines (order_id, listing_id, title, qty, unit_price)"
    " VALUES ($1, $2, $3, $4, $5)"
)
INSERT_LISTING = (
    f"INSERT INTO {SCHEMA}.listings (id, vendor_id, cell, kind, title, description, category,"
    " price, currency, stock, lat, lng) VALUES ($1, $2, $3, 'product', $4, $5, $6, $7, 'eur',"
    " $8, $9, $10)"
)
POOL = web.AppKey("pool", asyncpg.Pool)


async def create_schema(conn: asyncpg.Connection) -> None:
    """The baseline's tables, shaped like the stack's (a fresh schema each start)."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    for table in TABLES:
        await conn.execute(f"CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)")


class OutOfStock(Exception):
    pass


_ids = itertools.count(1)
_prefix = f"b{os.getpid()}-"


def new_id() -> str:
    return f"{_prefix}{next(_ids)}"


async def checkout(request: web.Request) -> web.Response:
    body = await request.json()
    buyer = str(body["buyer_id"])
    lines = sorted(body["lines"], key=lambda line: str(line["listing_id"]))
    pool = request.app[POOL]
    try:
        async with pool.acquire() as conn, conn.transaction():
            parts: dict[str, list[tuple[dict[str, Any], asyncpg.Record]]] = {}
            for line in lines:
                row = await conn.fetchrow(TAKE, str(line["listing_id"]), int(line["qty"]))
                if row is None:
                    raise OutOfStock(line["listing_id"])
                parts.setdefault(row["vendor_id"], []).append((line, row))
            group, orders, order_lines = new_id(), [], []
            for vendor, items in parts.items():
                order_id = new_id()
                total = sum(int(line["qty"]) * row["price"] for line, row in items)
                cell, currency = items[0][1]["cell"], items[0][1]["currency"]
                orders.append(
                    (order_id, group, buyer, vendor, f"user-of-{vendor}", cell, total, currency)
                )
                order_lines += [
                    (order_id, row_line["listing_id"], row["title"], int(row_line["qty"]),
                     row["price"])
                    for row_line, row in items
                ]  # fmt: skip
            await conn.executemany(INSERT_ORDER, orders)
            await conn.executemany(INSERT_LINE, order_lines)
    except OutOfStock as missing:
        error = {"code": "out_of_stock", "message": f"not enough of {missing.args[0]}"}
        return web.json_response({"error": error}, status=409)
    return web.json_response({"orders": [{"id": o[0], "total": o[6]} for o in orders]})


async def seed(request: web.Request) -> web.Response:
    """``{listings: [{vendor_id, cell, title, description, category, price, stock, lat, lng}]}``
    → ``{ids}`` (setup, not measured)."""
    body = await request.json()
    rows, ids = [], []
    for item in body["listings"]:
        ids.append(new_id())
        rows.append(
            (ids[-1], item["vendor_id"], item["cell"], item["title"], item["description"],
             item["category"], int(item["price"]), int(item["stock"]), float(item["lat"]),
             float(item["lng"]))
        )  # fmt: skip
    async with request.app[POOL].acquire() as conn:
        await conn.executemany(INSERT_LISTING, rows)
    return web.json_response({"ids": ids})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(dsn: str) -> web.Application:
    app = web.Application(client_max_size=2**22)

    async def pool_context(app: web.Application) -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            await create_schema(conn)
        finally:
            await conn.close()
        app[POOL] = await asyncpg.create_pool(dsn)  # asyncpg's defaults: 10 connections
        gcpolicy.settle(load_settings())  # the stack's serving processes do the same
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool_context)
    app.router.add_post("/checkout", checkout)
    app.router.add_post("/listings", seed)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dsn", required=True)
    args = p.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}"
    web.run_app(
        build_app(args.dsn),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=lambda _: print(f"{READY} {url}", flush=True),
    )


if __name__ == "__main__":
    main()
