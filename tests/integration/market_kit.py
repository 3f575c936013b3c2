"""Helpers of the marketplace integration tests: vendors, listings, REST calls, the database."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import h3
import ray

from cluster.config import Settings
from tests.integration.client import Api, User, Ws

# Berlin, away from the feed tests' Manhattan; every test takes its own neighbourhood.
BASE = (52.5200, 13.4050)
APPROVE = {"provider": "sandbox", "card": "4242424242424242"}
DECLINE = {"provider": "sandbox", "card": "4000000000000002"}
ACTION = {"provider": "sandbox", "card": "4000000000003220"}


def spot(settings: Settings, i: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(BASE[0], BASE[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 5 + 4 * i))[0])


def neighbour(settings: Settings, where: tuple[float, float]) -> tuple[float, float]:
    cell = h3.latlng_to_cell(where[0], where[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(cell, 1))[0])


async def rest(
    api: Api,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    hdrs = {"Authorization": f"Bearer {token}"} if token else {}
    hdrs.update(headers or {})
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    async with api.http.request(method, api.base + path, headers=hdrs, **kwargs) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


async def vendor(
    api: Api, where: tuple[float, float], name: str = "vendor", category: str = "bakery"
) -> tuple[User, dict[str, Any]]:
    user = await api.signup(name)
    body = {"name": name, "lat": where[0], "lng": where[1], "category": category}
    status, out = await rest(api, "POST", "/api/v1/vendors", body, user.access_token)
    assert status == 201, out
    return user, out["vendor"]


async def listing(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    body = {"title": "Sourdough loaf", "category": "bread", "price": 450, "stock": 10, **fields}
    status, out = await rest(api, "POST", "/api/v1/vendor/listings", body, token)
    assert status == 201, out
    return dict(out["listing"])


async def two_shops(
    api: Api, settings: Settings, i: int, tag: str, plenty: int, scarce: int
) -> tuple[User, dict[str, Any], User, dict[str, Any]]:
    """Two vendors in neighbouring cells (so two owning shards' worth of parts): one with
    ``plenty`` buns at 200, one with ``scarce`` cakes at 900. Each vendor's user and listing."""
    here = spot(settings, i)
    seller_a, _ = await vendor(api, here, f"{tag}-plenty")
    seller_b, _ = await vendor(api, neighbour(settings, here), f"{tag}-scarce")
    buns = await listing(api, seller_a.access_token, title="Buns", stock=plenty, price=200)
    cake = await listing(api, seller_b.access_token, title="Cake", stock=scarce, price=900)
    return seller_a, buns, seller_b, cake


async def buy(ws: Ws, listing_id: str, qty: int, payment: dict[str, Any]) -> dict[str, Any]:
    """cart.add then checkout; the checkout reply (ok or error)."""
    await ws.mutate("cart.add", {"listing_id": listing_id, "qty": qty})
    return await ws.request("checkout", {"payment": payment}, key=uuid.uuid4().hex, timeout=60)


async def run_out(settings: Settings, order_id: str) -> None:
    """Let time pass for an order's reservation: it ran out a second ago (the sweeper's next
    round expires it)."""
    conn = await db(settings)
    try:
        await conn.execute(
            "UPDATE orders SET reserved_until = now() - interval '1 second' WHERE id = $1",
            order_id,
        )
    finally:
        await conn.close()


async def order_event(
    ws: Ws, order_id: str, status: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """The next ``order.updated`` of ``order_id`` on ``ws`` (in ``status``, if given): its
    order; the others are skipped."""
    while True:
        event = await ws.next_event("order.updated", timeout=timeout)
        seen = dict(event["data"]["order"])
        if seen["id"] == order_id and status in (None, seen["status"]):
            return seen


async def db(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url
    return await asyncpg.connect(settings.database_url)


async def fetch(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    """``sql``'s rows, on a connection of its own (opened and closed here)."""
    conn = await db(settings)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def stock_of(settings: Settings, listing_id: str) -> int:
    conn = await db(settings)
    try:
        return int(await conn.fetchval("SELECT stock FROM listings WHERE id = $1", listing_id))
    finally:
        await conn.close()


async def order_status(settings: Settings, order_id: str) -> str:
    """The order's status as Postgres has it now."""
    conn = await db(settings)
    try:
        return str(await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id))
    finally:
        await conn.close()


async def refund_of(settings: Settings, order_id: str) -> asyncpg.Record:
    """The order's first refund row with its payment's ``refunded_amount``."""
    conn = await db(settings)
    try:
        row = await conn.fetchrow(
            "SELECT r.*, p.refunded_amount FROM refunds r"
            " JOIN payments p ON p.id = r.payment_id WHERE r.order_id = $1"
            " ORDER BY r.created_at LIMIT 1",
            order_id,
        )
    finally:
        await conn.close()
    assert row is not None, f"no refund for order {order_id}"
    return row


async def slow_batches(settings: Settings) -> int:
    """Careful re-runs of every shard's group committer so far (``stats``' ``slow_batches``)."""
    stats = [
        await ray.get_actor(name, namespace=settings.ray_namespace).stats.remote()
        for name in settings.shard_names()
    ]
    return sum(int(s["slow_batches"]) for s in stats)


async def open_group(settings: Settings, buyer_id: str, currency: str, amount: int = 0) -> str:
    """A new open order group of ``buyer_id`` (what a checkout makes first), its id."""
    group = uuid.uuid4().hex
    conn = await db(settings)
    try:
        await conn.execute(
            "INSERT INTO order_groups (id, buyer_id, idem_key, status, parts, amount, currency)"
            " VALUES ($1, $2, $1, 'open', '[]'::jsonb, $4, $3)",
            group,
            buyer_id,
            currency,
            amount,
        )
    finally:
        await conn.close()
    return group
