"""The marketplace service: one function per use case, shared by the websocket ops
(gateway/market_ops.py) and the vendor REST API (gateway/vendor_api.py).

Mutations of cell state (vendors, listings, stock, orders) and of a buyer's cart go to their
owner shard as commands (actors/market_ops.py), keyed by the caller's idempotency key. Reads go
to Postgres with the caller's identity in the query (rule 7): a buyer reads only their own cart
and orders, a vendor only its own listings and orders; anything else is ``not_found``.
Checkout orchestration lives in gateway/checkout.py; refunds are executed here.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from cluster.config import Settings
from gateway.router import ShardRouter
from models.cells import Geo
from models.errors import AppError, BadRequest, NotFound
from models.ids import cell_of
from models.market import NearbyCursor, PageCursor, cart_totals
from models.placement import cell_key, user_key
from payments import PaymentProvider
from store import market_store as ms

log = logging.getLogger("hyperlocal.market")


@dataclass(frozen=True)
class Actor:
    """Who is asking: the user (idempotency namespace) and, for vendor calls, their vendor."""

    user_id: str
    key: str
    vendor: dict[str, Any] | None = None

    @property
    def vendor_id(self) -> str:
        assert self.vendor is not None
        return str(self.vendor["id"])


def fresh_key() -> str:
    """A key for a REST mutation sent without ``Idempotency-Key`` (no retry protection)."""
    return f"auto-{uuid.uuid4().hex}"


def _cell_of(entity_id: str, what: str) -> str:
    cell = cell_of(entity_id)
    if cell is None:
        raise NotFound(f"no such {what}")
    return cell


class MarketService:
    def __init__(
        self,
        settings: Settings,
        db: asyncpg.Pool,
        router: ShardRouter,
        geo: Geo,
        providers: dict[str, PaymentProvider],
    ) -> None:
        self.settings = settings
        self.db = db
        self.router = router
        self.geo = geo
        self.providers = providers

    async def mutate(self, who: Actor, op: str, route: str, data: dict[str, Any]) -> dict[str, Any]:
        command = {"op": op, "user_id": who.user_id, "key": who.key, "route": route, "data": data}
        return await self.router.call(command)

    def provider(self, name: str) -> PaymentProvider:
        provider = self.providers.get(name)
        if provider is None:
            offered = ", ".join(sorted(self.providers)) or "none"
            raise BadRequest(f"payment.provider: {name!r} is not offered here ({offered})")
        return provider

    # -- vendors --------------------------------------------------------------------------------
    async def create_vendor(self, who: Actor, body: dict[str, Any]) -> dict[str, Any]:
        cell = self.geo.cell_of(body["lat"], body["lng"])
        data = {**body, "cell": cell}
        return (await self.mutate(who, "vendor.create", cell_key(cell), data))["vendor"]

    async def vendor_of(self, user_id: str) -> dict[str, Any] | None:
        return await ms.vendor_of_user(self.db, user_id)

    # -- listings (vendor side) -----------------------------------------------------------------
    async def create_listing(self, who: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        vendor = who.vendor
        assert vendor is not None
        data = {**fields, "vendor_id": vendor["id"]}
        reply = await self.mutate(who, "listing.create", cell_key(vendor["cell"]), data)
        return dict(reply["listing"])

    async def _on_listing(
        self, who: Actor, op: str, listing_id: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        route = cell_key(_cell_of(listing_id, "listing"))
        data = {"listing_id": listing_id, "vendor_id": who.vendor_id, **extra}
        return dict((await self.mutate(who, op, route, data))["listing"])

    async def update_listing(
        self, who: Actor, listing_id: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._on_listing(who, "listing.update", listing_id, {"fields": fields})

    async def delete_listing(self, who: Actor, listing_id: str) -> dict[str, Any]:
        return await self._on_listing(who, "listing.delete", listing_id, {})

    async def adjust_stock(
        self, who: Actor, listing_id: str, delta: int | None, set_to: int | None
    ) -> dict[str, Any]:
        extra = {"delta": delta, "set": set_to}
        return await self._on_listing(who, "listing.stock", listing_id, extra)

    async def vendor_listing(self, vendor_id: str, listing_id: str) -> dict[str, Any]:
        row = await ms.listing_row(self.db, listing_id)
        if row is None or row["vendor_id"] != vendor_id or row["deleted_at"] is not None:
            raise NotFound("no such listing")
        return ms.listing_public(row)

    async def vendor_listings(
        self, vendor_id: str, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        items, next_cursor = await ms.vendor_listings(
            self.db, vendor_id, PageCursor.decode(cursor), limit
        )
        return {"items": items, "next_cursor": next_cursor}

    # -- browsing (buyer side) ------------------------------------------------------------------
    async def nearby(
        self, lat: float, lng: float, filters: dict[str, Any], sort: str, cursor: str | None,
        limit: int,
    ) -> dict[str, Any]:  # fmt: skip
        cells = self.geo.neighbourhood(self.geo.cell_of(lat, lng))
        after = NearbyCursor.decode(cursor, sort) if cursor else None
        items, next_cursor = await ms.nearby(self.db, cells, lat, lng, filters, sort, after, limit)
        return {"items": items, "next_cursor": next_cursor}

    async def listing(self, listing_id: str) -> dict[str, Any]:
        row = await ms.listing_row(self.db, listing_id)
        if row is None or row["deleted_at"] is not None or not row["active"]:
            raise NotFound("no such listing")
        return ms.listing_public(row)

    # -- carts ----------------------------------------------------------------------------------
    async def cart_add(self, who: Actor, listing_id: str, qty: int) -> dict[str, Any]:
        _cell_of(listing_id, "listing")
        data = {"listing_id": listing_id, "qty": qty}
        await self.mutate(who, "cart.add", user_key(who.user_id), data)
        return await self.cart(who.user_id)

    async def cart_remove(self, who: Actor, listing_ids: list[str]) -> dict[str, Any]:
        data = {"listing_ids": listing_ids}
        await self.mutate(who, "cart.remove", user_key(who.user_id), data)
        return await self.cart(who.user_id)

    async def cart(self, user_id: str) -> dict[str, Any]:
        items = await ms.cart(self.db, user_id)
        return {"items": items, "totals": cart_totals(items)}

    # -- orders ---------------------------------------------------------------------------------
    async def buyer_order(self, user_id: str, order_id: str) -> dict[str, Any]:
        order = await ms.order(self.db, order_id)
        if order is None or order["buyer_id"] != user_id:
            raise NotFound("no such order")
        return order

    async def vendor_order(self, vendor_id: str, order_id: str) -> dict[str, Any]:
        order = await ms.order(self.db, order_id)
        if order is None or order["vendor_id"] != vendor_id:
            raise NotFound("no such order")
        return order

    async def orders(
        self, column: str, owner: str, status: str | None, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        items, next_cursor = await ms.orders_where(
            self.db, column, owner, status, PageCursor.decode(cursor), limit
        )
        return {"items": items, "next_cursor": next_cursor}

    async def act(
        self, who: Actor, order_id: str, action: str, actor: str, reason: str | None = None
    ) -> dict[str, Any]:
        """One order step (models/market.py decides if it is legal); runs a refund it owes."""
        route = cell_key(_cell_of(order_id, "order"))
        data: dict[str, Any] = {"order_id": order_id, "action": action, "actor": actor}
        if actor == "vendor":
            data["vendor_id"] = who.vendor_id
        if reason:
            data["reason"] = reason
        result = await self.mutate(who, "order.act", route, data)
        if result.get("refund_id"):
            await self.run_refund(str(result["refund_id"]))
        return result

    async def run_refund(self, refund_id: str) -> bool:
        """Execute a pending refund at the provider (idempotent by its id); True when done.

        A failure leaves it pending: the sweeper (gateway/market_jobs.py) tries again.
        """
        row = await self.db.fetchrow(
            "SELECT r.id, r.amount, r.status, p.provider, p.provider_ref FROM refunds r"
            " JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
            refund_id,
        )
        if row is None or row["status"] != "pending":
            return row is not None
        try:
            provider = self.provider(row["provider"])
            ref = await provider.refund(row["provider_ref"], row["amount"], f"refund-{row['id']}")
        except AppError as err:
            log.warning("refund %s not executed yet: %s", refund_id, err.message)
            await self.db.execute(
                "UPDATE refunds SET attempts = attempts + 1, updated_at = now() WHERE id = $1",
                refund_id,
            )
            return False
        async with self.db.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE refunds SET status = 'succeeded', provider_ref = $2, updated_at = now()"
                " WHERE id = $1 AND status = 'pending' RETURNING amount",
                refund_id,
                ref,
            )
            if done is not None:
                await conn.execute(
                    "UPDATE payments SET refunded_amount = refunded_amount + $2,"
                    " updated_at = now() WHERE id = (SELECT payment_id FROM refunds"
                    " WHERE id = $1)",
                    refund_id,
                    done,
                )
        return True
