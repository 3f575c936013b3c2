"""Marketplace websocket operations (buyers) and the marketplace's resources.

Thin adapters: each op validates its typed request and calls the one service function
(gateway/market_service.py, gateway/checkout.py) that the vendor REST API also uses. Every
mutating op needs the frame's idempotency key (the socket loop enforces it). A buyer reaches only
their own cart and orders: the service takes the user from the session, never from the request.

``market_ctx`` builds the services and starts this gateway's two background loops: the hook
dispatcher (gateway/hooks.py) and the sweeper (gateway/market_jobs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.checkout import Checkout
from gateway.context import DB, ROUTER, SERVICES, SETTINGS
from gateway.hooks import HookDispatcher
from gateway.market_context import CHECKOUT, MARKET
from gateway.market_jobs import Sweeper
from gateway.market_service import Actor, MarketService
from gateway.ops import Call, Op
from models.cells import Geo
from models.market import ORDER_STATES
from payments import providers_from

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Cursor = Annotated[str, StringConstraints(max_length=512)] | None


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ListingsNearby(_Req):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    category: Annotated[str, StringConstraints(max_length=64)] | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    max_price: int | None = Field(None, ge=0)
    sort: Literal["relevance", "distance", "newest", "price"] | None = None
    """None: relevance where a ranking model covers the cell, else distance."""
    cursor: Cursor = None
    limit: int = Field(20, ge=1, le=100)


class ListingRef(_Req):
    listing_id: Id


class CartAdd(_Req):
    listing_id: Id
    qty: int = Field(1, ge=1, le=999)


class Payment(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    provider: Annotated[str, StringConstraints(max_length=32)] = "sandbox"


class CheckoutReq(_Req):
    payment: Payment = Field(default_factory=Payment)


class OrdersList(_Req):
    status: Literal[ORDER_STATES] | None = None  # type: ignore[valid-type]
    cursor: Cursor = None
    limit: int = Field(20, ge=1, le=100)


class OrderRef(_Req):
    order_id: Id


class _Empty(_Req):
    pass


def market_of(call: Call) -> MarketService:
    market: MarketService = call.services.features["market"]
    return market


def _who(call: Call) -> Actor:
    assert call.key is not None
    return Actor(call.user_id, call.key)


async def op_nearby(call: Call, req: ListingsNearby) -> dict[str, Any]:
    filters = {"category": req.category, "q": req.q or None, "max_price": req.max_price}
    return await market_of(call).nearby(
        call.user_id, req.lat, req.lng, filters, req.sort, req.cursor, req.limit
    )


async def op_listing_get(call: Call, req: ListingRef) -> dict[str, Any]:
    return {"listing": await market_of(call).listing(req.listing_id, viewer=call.user_id)}


async def op_cart_add(call: Call, req: CartAdd) -> dict[str, Any]:
    return await market_of(call).cart_add(_who(call), req.listing_id, req.qty)


async def op_cart_remove(call: Call, req: ListingRef) -> dict[str, Any]:
    return await market_of(call).cart_remove(_who(call), [req.listing_id])


async def op_cart_get(call: Call, req: _Empty) -> dict[str, Any]:
    return await market_of(call).cart(call.user_id)


async def op_checkout(call: Call, req: CheckoutReq) -> dict[str, Any]:
    checkout: Checkout = call.services.features["checkout"]
    assert call.key is not None
    return await checkout.checkout(call.user_id, call.key, req.payment.model_dump())


async def op_orders_list(call: Call, req: OrdersList) -> dict[str, Any]:
    return await market_of(call).orders("buyer_id", call.user_id, req.status, req.cursor, req.limit)


async def op_order_get(call: Call, req: OrderRef) -> dict[str, Any]:
    return {"order": await market_of(call).buyer_order(call.user_id, req.order_id)}


async def op_order_cancel(call: Call, req: OrderRef) -> dict[str, Any]:
    result = await market_of(call).act(_who(call), req.order_id, "cancel", "buyer")
    return {"order": result["order"]}


async def op_order_complete(call: Call, req: OrderRef) -> dict[str, Any]:
    result = await market_of(call).act(_who(call), req.order_id, "complete", "buyer")
    return {"order": result["order"]}


OPS: dict[str, Op] = {
    "listings.nearby": Op(ListingsNearby, op_nearby),
    "listing.get": Op(ListingRef, op_listing_get),
    "cart.add": Op(CartAdd, op_cart_add, mutating=True),
    "cart.remove": Op(ListingRef, op_cart_remove, mutating=True),
    "cart.get": Op(_Empty, op_cart_get),
    "checkout": Op(CheckoutReq, op_checkout, mutating=True),
    "orders.list": Op(OrdersList, op_orders_list),
    "order.get": Op(OrderRef, op_order_get),
    "order.cancel": Op(OrderRef, op_order_cancel, mutating=True),
    "order.complete": Op(OrderRef, op_order_complete, mutating=True),
}


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def market_ctx(app: web.Application) -> AsyncIterator[None]:
    """The market and checkout services, the hook dispatcher and the sweeper."""
    settings = app[SETTINGS]
    providers = providers_from(settings)
    geo = Geo(settings.h3_resolution, settings.k_ring)
    market = app[MARKET] = MarketService(settings, app[DB], app[ROUTER], geo, providers)
    checkout = app[CHECKOUT] = Checkout(market)
    # Websocket ops reach the services through the shared Services object's feature slot.
    services = app[SERVICES]
    market.ranker = services.ranker  # one memory of cells without a model, feed and listings
    services.features.update(market=market, checkout=checkout)
    dispatcher = HookDispatcher(settings, app[DB])
    sweeper = Sweeper(market, checkout)
    tasks = [
        asyncio.create_task(dispatcher.run(), name="hook-dispatcher"),
        asyncio.create_task(sweeper.run(), name="market-sweeper"),
    ]
    yield
    for task in tasks:
        await _stop(task)
    await dispatcher.close()
    for provider in providers.values():
        await provider.close()


CONTEXTS = [market_ctx]
