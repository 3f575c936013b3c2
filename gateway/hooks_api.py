"""REST hooks management for vendors: subscribe, list, delete, inspect deliveries, replay the
dead letters. Deliveries themselves are services/hooks.py's job.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.context import SERVICES
from gateway.http import parse_model, read_json
from gateway.oauth import require_vendor
from models.errors import NotFound
from models.ids import new_id
from models.market_hooks import check_events, is_token
from services.hooks import check_target, new_secret
from store import hooks_store


class HookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_url: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)]
    events: list[Annotated[str, StringConstraints(max_length=64)]] = Field(max_length=16)


DeliveryId = Annotated[str, StringConstraints(pattern=r"^[!-~]{1,64}$")]
"""Printable ASCII, no spaces: NUL and control characters are a 400, never sent to Postgres."""


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery_ids: list[DeliveryId] | None = Field(None, max_length=1000)


class DeliveriesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["pending", "delivered", "dead", "gone"] | None = None
    limit: int = Field(50, ge=1, le=500)


async def _own_hook(request: web.Request, scope: str) -> str:
    caller = await require_vendor(request, scope)
    hook_id = request.match_info["hook_id"]
    if not is_token(hook_id):  # NUL, controls, surrogates: no hook has such an id
        raise NotFound("no such hook")
    if await hooks_store.hook_of(request.app[SERVICES].db, caller.vendor["id"], hook_id) is None:
        raise NotFound("no such hook")
    return hook_id


async def create_hook_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "hooks:write")
    body = await read_json(request, HookBody)
    events = check_events(list(body.events))
    await check_target(body.target_url, request.app[SERVICES].settings.hooks_allow_private)
    secret, hook_id = new_secret(), new_id()
    sealed = request.app[SERVICES].keys.seal(secret, f"hook:{hook_id}")  # at rest: sealed
    row = await hooks_store.create_hook(
        request.app[SERVICES].db, hook_id, caller.vendor["id"], body.target_url, events, sealed
    )
    return web.json_response({**hooks_store.hook_public(row), "secret": secret}, status=201)


async def list_hooks_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "hooks:read")
    rows = await hooks_store.hooks_of(request.app[SERVICES].db, caller.vendor["id"])
    return web.json_response({"items": [hooks_store.hook_public(r) for r in rows]})


async def delete_hook_view(request: web.Request) -> web.Response:
    hook_id = await _own_hook(request, "hooks:write")
    await hooks_store.disable(request.app[SERVICES].db, hook_id, "deleted by the vendor")
    await hooks_store.cancel_pending(request.app[SERVICES].db, hook_id)
    return web.Response(status=204)


async def deliveries_view(request: web.Request) -> web.Response:
    hook_id = await _own_hook(request, "hooks:read")
    q = parse_model(DeliveriesQuery, dict(request.query))
    rows = await hooks_store.deliveries(request.app[SERVICES].db, hook_id, q.status, q.limit)
    return web.json_response({"items": [hooks_store.delivery_public(r) for r in rows]})


async def replay_view(request: web.Request) -> web.Response:
    hook_id = await _own_hook(request, "hooks:write")
    body = ReplayBody(delivery_ids=None)
    if request.can_read_body:
        body = await read_json(request, ReplayBody)
    replayed = await hooks_store.replay(request.app[SERVICES].db, hook_id, body.delivery_ids)
    return web.json_response({"replayed": replayed})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/vendor/hooks", create_hook_view)
    r.add_get("/api/v1/vendor/hooks", list_hooks_view)
    r.add_delete("/api/v1/vendor/hooks/{hook_id}", delete_hook_view)
    r.add_get("/api/v1/vendor/hooks/{hook_id}/deliveries", deliveries_view)
    r.add_post("/api/v1/vendor/hooks/{hook_id}/replay", replay_view)
