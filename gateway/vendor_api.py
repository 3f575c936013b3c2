"""The vendor REST API: profile, listings CRUD and stock, orders and their steps.

Thin adapters over services/market.py. Every endpoint authenticates through
``require_vendor`` (gateway/oauth.py) with the scope it needs, and acts only on the caller's own
vendor: another vendor's listing or order is ``not_found``, never revealed. Mutations accept an
``Idempotency-Key`` header (a retry with the same key returns the first result).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from gateway.auth import require_principal
from gateway.commands import MediaId
from gateway.context import SERVICES
from gateway.http import parse_model, read_json
from gateway.oauth import actor, idempotency_key, require_vendor
from gateway.vendor_openapi import OPENAPI_PATHS, OPENAPI_SCHEMAS
from models.errors import NotFound
from models.market import ORDER_STATES
from services.market import Actor, fresh_key
from services.vendor_apps import VendorCaller

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "add_routes"]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Category = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=64)
]
Currency = Annotated[str, StringConstraints(to_lower=True, pattern=r"^[A-Za-z]{3}$")]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _not_a_boolean(value: object) -> object:
    """JSON's true is not the number 1 (pydantic's lax mode would take it)."""
    if isinstance(value, bool):
        raise ValueError("a number, not a boolean")
    return value


Whole = Annotated[int, BeforeValidator(_not_a_boolean)]
Price = Annotated[Whole, Field(ge=0, le=10**12)]
Stock = Annotated[Whole, Field(ge=0, le=10**7)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VendorBody(_Body):
    name: Name
    category: Category
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)


class ListingBody(_Body):
    title: Title
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    category: Category
    price: Price
    currency: Currency = "usd"
    stock: Stock = 0
    images: list[MediaId] = Field(default_factory=list, max_length=10)
    kind: Literal["product", "service"] = "product"
    active: StrictBool = True  # "active": 0 is not a boolean


class ListingPatch(_Body):
    title: Title | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    category: Category | None = None
    price: Price | None = None
    currency: Currency | None = None
    images: list[MediaId] | None = Field(None, max_length=10)
    kind: Literal["product", "service"] | None = None
    active: StrictBool | None = None

    @model_validator(mode="after")
    def _some(self) -> ListingPatch:
        if not self.model_dump(exclude_none=True):
            raise ValueError("give at least one field to change")
        return self


class StockBody(_Body):
    delta: Whole | None = Field(None, ge=-(10**7), le=10**7)
    set: Stock | None = None

    @model_validator(mode="after")
    def _one(self) -> StockBody:
        if (self.delta is None) == (self.set is None):
            raise ValueError("give exactly one of delta or set")
        return self


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cursor: Annotated[str, StringConstraints(max_length=512)] | None = None
    """An empty one is no cursor: the first page."""

    @field_validator("cursor", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    limit: int = Field(20, ge=1, le=100)


class OrdersQuery(ListQuery):
    status: Literal[ORDER_STATES] | None = None  # type: ignore[valid-type]


def _query(request: web.Request, model: type[ListQuery]) -> Any:
    return parse_model(model, dict(request.query))


# -- vendor profile -----------------------------------------------------------------------------
async def create_vendor_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, VendorBody)
    key = idempotency_key(request) or fresh_key()
    vendor = await request.app[SERVICES].market.create_vendor(
        Actor(principal.user_id, key), body.model_dump()
    )
    return web.json_response({"vendor": vendor}, status=201)


async def my_vendor_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:read")
    return web.json_response({"vendor": caller.vendor})


# -- listings -----------------------------------------------------------------------------------
async def create_listing_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:write")
    body = await read_json(request, ListingBody)
    listing = await request.app[SERVICES].market.create_listing(
        actor(caller, request), body.model_dump()
    )
    return web.json_response({"listing": listing}, status=201)


async def list_listings_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:read")
    q = _query(request, ListQuery)
    page = await request.app[SERVICES].market.vendor_listings(
        caller.vendor["id"], q.cursor, q.limit
    )
    return web.json_response(page)


async def get_listing_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:read")
    listing_id = request.match_info["listing_id"]
    listing = await request.app[SERVICES].market.vendor_listing(caller.vendor["id"], listing_id)
    return web.json_response({"listing": listing})


async def patch_listing_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:write")
    body = await read_json(request, ListingPatch)
    listing = await request.app[SERVICES].market.update_listing(
        actor(caller, request), request.match_info["listing_id"], body.model_dump(exclude_none=True)
    )
    return web.json_response({"listing": listing})


async def delete_listing_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:write")
    await request.app[SERVICES].market.delete_listing(
        actor(caller, request), request.match_info["listing_id"]
    )
    return web.Response(status=204)


async def stock_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:write")
    body = await read_json(request, StockBody)
    listing = await request.app[SERVICES].market.adjust_stock(
        actor(caller, request), request.match_info["listing_id"], body.delta, body.set
    )
    return web.json_response({"listing": listing})


# -- orders -------------------------------------------------------------------------------------
async def list_orders_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "orders:read")
    q = _query(request, OrdersQuery)
    page = await request.app[SERVICES].market.orders(
        "vendor_id", caller.vendor["id"], q.status, q.cursor, q.limit
    )
    return web.json_response(page)


async def get_order_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "orders:read")
    order = await request.app[SERVICES].market.vendor_order(
        caller.vendor["id"], request.match_info["order_id"]
    )
    return web.json_response({"order": order})


_ACTIONS = {"accept": "accept", "fulfil": "fulfil", "cancel": "cancel"}


async def order_action_view(request: web.Request) -> web.Response:
    caller: VendorCaller = await require_vendor(request, "orders:write")
    action = _ACTIONS.get(request.match_info["action"])
    if action is None:
        raise NotFound("no such order action: accept, fulfil or cancel")
    result = await request.app[SERVICES].market.act(
        actor(caller, request), request.match_info["order_id"], action, "vendor"
    )
    return web.json_response({"order": result["order"]})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/vendors", create_vendor_view)
    r.add_get("/api/v1/vendors/me", my_vendor_view)
    r.add_post("/api/v1/vendor/listings", create_listing_view)
    r.add_get("/api/v1/vendor/listings", list_listings_view)
    r.add_get("/api/v1/vendor/listings/{listing_id}", get_listing_view)
    r.add_patch("/api/v1/vendor/listings/{listing_id}", patch_listing_view)
    r.add_delete("/api/v1/vendor/listings/{listing_id}", delete_listing_view)
    r.add_post("/api/v1/vendor/listings/{listing_id}/stock", stock_view)
    r.add_get("/api/v1/vendor/orders", list_orders_view)
    r.add_get("/api/v1/vendor/orders/{order_id}", get_order_view)
    r.add_post("/api/v1/vendor/orders/{order_id}/{action}", order_action_view)
