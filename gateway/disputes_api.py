"""Disputes for buyers (``dispute.open`` over the websocket) and vendors (REST): thin adapters
over services/disputes.py. The admin side is in gateway/admin_api.py (the control actor)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import SERVICES
from gateway.http import read_json
from gateway.oauth import require_vendor
from gateway.ops import Call, Op
from models.errors import BadRequest
from services.disputes import DisputeBody, RespondBody


async def op_dispute_open(call: Call, req: DisputeBody) -> dict[str, Any]:
    return await call.services.disputes.open(call.user_id, req, call.key)


OPS: dict[str, Op] = {"dispute.open": Op(DisputeBody, op_dispute_open, mutating=True)}


def _arg(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and len(value) > 256:
        raise BadRequest(f"{name}: too long")
    return value


async def vendor_disputes_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "orders:read")
    page = await request.app[SERVICES].disputes.of_vendor(
        caller.vendor_id, _arg(request, "status"), _arg(request, "cursor")
    )
    return web.json_response(page)


async def vendor_respond_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "orders:write")
    body = await read_json(request, RespondBody)
    result = await request.app[SERVICES].disputes.respond(
        caller.vendor_id, request.match_info["dispute_id"], body
    )
    return web.json_response(result)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/vendor/disputes", vendor_disputes_view)
    app.router.add_post("/api/v1/vendor/disputes/{dispute_id}/respond", vendor_respond_view)
