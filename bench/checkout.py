"""Checkout benchmark: concurrent buyers over many vendors and listings, on the real stack.

It starts a private deployment in a temp dir (embedded Postgres and Redis, a local Ray with the
shard actors) and the gateway in this process on a loopback port, then:

1. **setup**: ``--vendors`` vendors spread over the cells of a neighbourhood disk, each with
   ``--listings`` listings of ``--stock`` units (REST, as vendors would);
2. **checkout**: ``--buyers`` buyers on their own websockets, each filling a cart with 1-3 random
   listings and checking out (sandbox card), at most ``--concurrency`` at once. Demand exceeds
   stock on purpose, so the hot listings run out. Reported: orders/s, checkout latency
   (p50/p99), outcomes, and the **oversell count**: units sold beyond a listing's initial stock,
   summed (must be 0), checked from Postgres (initial - remaining == sold in paid orders);
3. **nearby**: ``listings.nearby`` at a fixed offered rate (``--rate``/s for ``--seconds``) over
   the websocket, then the same queries straight in SQL (the exact statement the gateway uses,
   store/market_store.nearby_sql) at the same rate; p99 of each and their ratio.

    python -m bench.checkout            # 40 vendors x 10 listings, 400 buyers, 100 req/s nearby
    python -m bench.checkout --quick    # a smoke run (well under a minute)

Client and gateway share this process's event loop (one core of a 2-core box), so latencies
include the client's own work; the SQL side runs on the same loop for a like-for-like ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import h3
from aiohttp.test_utils import TestServer

from cluster.config import Settings, load_settings
from cluster.runtime import Runtime
from gateway.app import build_app
from hyperlocal_client import Api, SignIn
from hyperlocal_client.ws import open_ws
from store import market_store as ms

BASE = (48.8566, 2.3522)  # Paris
CARD = {"provider": "sandbox", "card": "4242424242424242"}
QUERIES: list[dict[str, Any]] = [
    {},
    {"q": "bread"},
    {"category": "cheese"},
    {"max_price": 800, "sort": "price"},
    {"sort": "newest"},
    {"q": "fresh organic", "sort": "price"},
]
WORDS = ["bread", "cheese", "fresh", "organic", "honey", "wine", "coffee", "flowers"]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Socket:
    """A minimal websocket session over the client package's ``open_ws``: one request at a
    time per socket, its reply read in line (the measured checkout and nearby paths)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.next_id = ws, 0

    @classmethod
    async def open(cls, client: Api, token: str) -> Socket:
        sock = cls(await open_ws(client.http, client.base, token))
        await sock._reply(None)  # hello
        return sock

    async def _reply(self, ident: int | None) -> dict[str, Any]:
        while True:
            frame = json.loads((await self.ws.receive()).data)
            if ident is None or frame.get("re") == ident:
                return dict(frame)

    async def request(self, op: str, data: dict[str, Any], mutating: bool = False) -> Any:
        self.next_id += 1
        frame: dict[str, Any] = {"id": self.next_id, "op": op, "data": data}
        if mutating:
            frame["key"] = uuid.uuid4().hex
        await self.ws.send_str(json.dumps(frame))
        return await self._reply(self.next_id)


def cells(settings: Settings, radius: int) -> list[str]:
    center = h3.latlng_to_cell(BASE[0], BASE[1], settings.h3_resolution)
    return sorted(h3.grid_disk(center, radius))


async def signup(client: Api, name: str) -> SignIn:
    email = f"{name}-{uuid.uuid4().hex[:8]}@bench.test"
    return await client.signup(email, "bench password", name)


async def setup(client: Api, settings: Settings, args: argparse.Namespace) -> list[dict]:
    rand = random.Random(1)
    region = cells(settings, 3)
    listings: list[dict[str, Any]] = []
    for v in range(args.vendors):
        lat, lng = h3.cell_to_latlng(region[v % len(region)])
        user = await signup(client, f"vendor{v}")
        await client.become_vendor(user, f"vendor {v}", "grocery", lat, lng)
        for i in range(args.listings):
            words = " ".join(rand.sample(WORDS, 2))
            body = {"title": f"{words} #{i}", "description": f"{words} from vendor {v}",
                    "category": rand.choice(["bread", "cheese", "drinks"]),
                    "price": rand.randrange(100, 2000), "stock": args.stock}  # fmt: skip
            listings.append(await client.create_listing(user, **body))
    return listings


async def checkout_phase(
    client: Api, listings: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    rand = random.Random(2)
    hot = listings[: max(1, len(listings) // 10)]  # a tenth of the listings draw half the demand
    buyers = [await signup(client, f"buyer{i}") for i in range(args.buyers)]
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(args.concurrency)

    async def one(buyer: SignIn) -> None:
        async with gate:
            sock = await Socket.open(client, buyer.access_token)
            try:
                for _ in range(rand.randint(1, 3)):
                    pick = rand.choice(hot if rand.random() < 0.5 else listings)
                    data = {"listing_id": pick["id"], "qty": rand.randint(1, 2)}
                    await sock.request("cart.add", data, mutating=True)
                started = time.perf_counter()
                reply = await sock.request("checkout", {"payment": CARD}, mutating=True)
                latencies.append((time.perf_counter() - started) * 1000)
                code = "ok" if reply["ok"] else reply["error"]["code"]
                outcomes[code] = outcomes.get(code, 0) + 1
            finally:
                await sock.ws.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in buyers))
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "latencies": latencies, "outcomes": outcomes}


async def oversell(db: asyncpg.Connection, initial: int) -> tuple[int, int]:
    """(units oversold, orders paid), from Postgres."""
    rows = await db.fetch(
        "SELECT l.id, l.stock, COALESCE(sum(ol.qty) FILTER (WHERE o.status = 'paid'), 0) AS sold"
        " FROM listings l LEFT JOIN order_lines ol ON ol.listing_id = l.id"
        " LEFT JOIN orders o ON o.id = ol.order_id GROUP BY l.id, l.stock"
    )
    over = sum(max(0, r["sold"] - initial) + abs(initial - r["stock"] - r["sold"]) for r in rows)
    paid = await db.fetchval("SELECT count(*) FROM orders WHERE status = 'paid'")
    return int(over), int(paid)


async def fixed_rate(rate: float, seconds: float, call: Any) -> list[float]:
    """Open loop: start one call every 1/rate s regardless of answers; their latencies (ms)."""
    latencies: list[float] = []

    async def timed(i: int) -> None:
        started = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(timed(i)))
    await asyncio.gather(*tasks)
    return latencies


async def nearby_phase(
    client: Api, db: asyncpg.Pool, settings: Settings, args: argparse.Namespace
) -> dict[str, float]:
    region = cells(settings, 2)
    rand = random.Random(3)
    plan = []
    for _ in range(int(args.rate * args.seconds)):
        lat, lng = h3.cell_to_latlng(rand.choice(region))
        plan.append({"lat": lat, "lng": lng, **rand.choice(QUERIES)})
    user = await signup(client, "browser")
    socks = [await Socket.open(client, user.access_token) for _ in range(16)]
    locks = [asyncio.Lock() for _ in socks]

    async def over_ws(i: int) -> None:
        async with locks[i % len(socks)]:
            reply = await socks[i % len(socks)].request("listings.nearby", plan[i])
            assert reply["ok"], reply

    async def in_sql(i: int) -> None:
        q = plan[i]
        sort = q.get("sort", "distance")
        cell = h3.latlng_to_cell(q["lat"], q["lng"], settings.h3_resolution)
        ring = [cell, *sorted(h3.grid_ring(cell, settings.k_ring))]
        await db.fetch(
            ms.nearby_sql(sort, False), ring, q["lat"], q["lng"], q.get("category"),
            q.get("q"), q.get("max_price"), 21,
        )  # fmt: skip

    ws_lat = await fixed_rate(args.rate, args.seconds, over_ws)
    sql_lat = await fixed_rate(args.rate, args.seconds, in_sql)
    for sock in socks:
        await sock.ws.close()
    return {
        "ws_p50": pct(ws_lat, 50),
        "ws_p99": pct(ws_lat, 99),
        "sql_p50": pct(sql_lat, 50),
        "sql_p99": pct(sql_lat, 99),
        "ratio_p99": pct(ws_lat, 99) / pct(sql_lat, 99),
    }


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    server = TestServer(build_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    assert settings.database_url
    db = await asyncpg.create_pool(settings.database_url, min_size=2, max_size=8)
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with aiohttp.ClientSession() as http:
            client = Api(str(server.make_url("")), http)
            listings = await setup(client, settings, args)
            phase = await checkout_phase(client, listings, args)
            over, paid = await oversell(conn, args.stock)
            nearby = await nearby_phase(client, db, settings, args)
    finally:
        await conn.close()
        await db.close()
        await server.close()
    return {"listings": len(listings), "paid_orders": paid, "oversell": over,
            "orders_per_s": paid / phase["elapsed_s"], "elapsed_s": phase["elapsed_s"],
            "checkout_p50_ms": pct(phase["latencies"], 50),
            "checkout_p99_ms": pct(phase["latencies"], 99), "outcomes": phase["outcomes"],
            **nearby}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vendors", type=int, default=40)
    parser.add_argument("--listings", type=int, default=10)
    parser.add_argument("--stock", type=int, default=5)
    parser.add_argument("--buyers", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.vendors, args.buyers, args.concurrency, args.seconds = 8, 60, 30, 4.0
    root = Path(tempfile.mkdtemp(prefix="hl-bench-checkout-"))
    runtime = Runtime(load_settings(
        data_dir=root, port=0, shard_count=2, shard_num_cpus=0.1, argon2_time_cost=1,
        argon2_memory_kib=8192, rest_rate_per_min=10**7, ws_rate_per_s=10**4,
        ws_rate_burst=10**4, sandbox_payments=True,
    ))  # fmt: skip
    try:
        settings = runtime.start()
        result = asyncio.run(run(settings, args))
    finally:
        runtime.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"args": vars(args), **result}, indent=2, default=float))
    if result["oversell"]:
        raise SystemExit("OVERSOLD")


if __name__ == "__main__":
    main()
