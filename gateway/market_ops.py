"""Marketplace websocket operations (buyers).

Thin adapters: each op validates its typed request and calls the one service function
(services/market.py, services/checkout.py) that the vendor REST API also uses. Every
mutating op needs the frame's idempotency key (the socket loop enforces it). A buyer reaches only
their own cart and orders: the service takes the user from the session, never from the request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.ops import Call, Op
from models.market import CART_MAX_QTY, ORDER_STATES
from models.risk import RiskContext
from services.checkout import BUY_NOW_MAX_LINES
from services.market import Actor, MarketService

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Cursor = Annotated[str, StringConstraints(max_length=512)] | None


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListingsNearby(_Req):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    category: Annotated[str, StringConstraints(max_length=64)] | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    max_price: int | None = Field(None, ge=0, le=10**12)  # vendor_api.Price
    sort: Literal["relevance", "distance", "newest", "price"] | None = None
    """None: relevance where a ranking model covers the cell, else distance."""
    cursor: Cursor = None
    limit: int = Field(20, ge=1, le=100)


class ListingRef(_Req):
    listing_id: Id


class CartAdd(_Req):
    listing_id: Id
    qty: int = Field(1, ge=1, le=CART_MAX_QTY)


class Payment(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    provider: Annotated[str, StringConstraints(max_length=32)] = "sandbox"


class BuyLine(_Req):
    listing_id: Id
    qty: int = Field(1, ge=1, le=CART_MAX_QTY)


class CheckoutReq(_Req):
    payment: Payment = Field(default_factory=Payment)
    lines: list[BuyLine] | None = Field(None, min_length=1, max_length=BUY_NOW_MAX_LINES)
    """Buy now: these lines instead of the cart (which stays as it is)."""


class OrdersList(_Req):
    status: Literal[ORDER_STATES] | None = None  # type: ignore[valid-type]
    cursor: Cursor = None
    limit: int = Field(20, ge=1, le=100)


class OrderRef(_Req):
    order_id: Id


class _Empty(_Req):
    pass


def market_of(call: Call) -> MarketService:
    return call.services.market


def _who(call: Call) -> Actor:
    return Actor(call.user_id, call.caller.idempotency_key())


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


def risk_context(call: Call) -> RiskContext:
    """What the socket knows of the buyer, for the fraud rules (models/risk.py)."""
    client, here = call.session.client, call.session.location
    return RiskContext(
        address=client.address if client else None,
        device=client.device if client else None,
        here=here.point() if here else None,
        before=here.before if here else None,
    )


async def op_checkout(call: Call, req: CheckoutReq) -> dict[str, Any]:
    key = call.caller.idempotency_key()
    payment = req.payment.model_dump()
    lines = None if req.lines is None else [(x.listing_id, x.qty) for x in req.lines]
    return await call.services.checkout.checkout(
        call.user_id, key, payment, risk_context(call), lines
    )


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
