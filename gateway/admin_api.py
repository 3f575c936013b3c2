"""Admin REST endpoints and ``report.create``: thin adapters in front of the control actor.

Every admin handler authenticates the caller (roles as Postgres has them now), validates the
body into its typed model (a ``bad_request`` never reaches the actor) and calls one action of
the control actor (services/control.py), which checks the permission (models/rbac.py) and runs
it. Reports are a user's own op, served by the moderation service directly (websocket and REST).
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.admin_openapi import OPENAPI_PATHS, OPENAPI_SCHEMAS  # noqa: F401 - registry reads
from gateway.auth import require_principal
from gateway.context import SERVICES, SETTINGS
from gateway.http import read_json
from gateway.input_guard import check_text
from gateway.ops import Call, Op
from gateway.ratelimit import client_address
from models.errors import BadRequest, Unauthorized
from models.rbac import Staff
from services.admin import RolesBody, SuspendBody
from services.appeals import AppealBody, DecideBody
from services.disputes import ResolveDisputeBody
from services.moderation import RemoveBody, ReportBody, ResolveBody


async def _staff(request: web.Request) -> Staff:
    principal = await require_principal(request)
    return Staff(principal.user_id, principal.roles)


async def _act(
    request: web.Request, action: str, args: dict[str, Any], status: int = 200
) -> web.Response:
    staff = await _staff(request)
    result = await request.app[SERVICES].control.call(action, staff, args)
    return web.json_response(result, status=status)


def _query(request: web.Request, *names: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = request.query.get(name)
        if value is not None:
            if len(value) > 256:
                raise BadRequest(f"{name}: too long")
            out[name] = value
    return out


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit():
        raise BadRequest("limit: must be a whole number")
    return int(raw)


# -- reports (any signed-in user) ---------------------------------------------------------------
async def report_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, ReportBody)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 128:
        raise BadRequest("Idempotency-Key: 1 to 128 characters")
    result = await request.app[SERVICES].moderation.report(principal.user_id, body, key)
    return web.json_response(result, status=201)


async def op_report_create(call: Call, req: ReportBody) -> dict[str, Any]:
    return await call.services.moderation.report(call.user_id, req, call.key)


OPS: dict[str, Op] = {"report.create": Op(ReportBody, op_report_create, mutating=True)}


# -- moderation ---------------------------------------------------------------------------------
async def reports_view(request: web.Request) -> web.Response:
    return await _act(request, "reports.list", _query(request, "status", "cursor"))


async def resolve_view(request: web.Request) -> web.Response:
    body = await read_json(request, ResolveBody)
    args = {"report_id": request.match_info["report_id"], "body": body.model_dump(mode="json")}
    return await _act(request, "reports.resolve", args)


async def remove_view(request: web.Request) -> web.Response:
    body = await read_json(request, RemoveBody)
    return await _act(request, "content.remove", {"body": body.model_dump(mode="json")})


# -- users --------------------------------------------------------------------------------------
async def user_view(request: web.Request) -> web.Response:
    return await _act(request, "users.get", {"user_id": request.match_info["user_id"]})


async def roles_view(request: web.Request) -> web.Response:
    body = await read_json(request, RolesBody)
    args = {"user_id": request.match_info["user_id"], "body": body.model_dump(mode="json")}
    return await _act(request, "users.roles", args)


async def suspend_view(request: web.Request) -> web.Response:
    body = await read_json(request, SuspendBody)
    args = {"user_id": request.match_info["user_id"], "body": body.model_dump(mode="json")}
    return await _act(request, "users.suspend", args)


class _Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=500)


async def unsuspend_view(request: web.Request) -> web.Response:
    reason = None
    if request.can_read_body:
        reason = (await read_json(request, _Reason)).reason
    return await _act(
        request, "users.unsuspend", {"user_id": request.match_info["user_id"], "reason": reason}
    )


async def audit_view(request: web.Request) -> web.Response:
    args = _query(request, "actor_id", "target", "action", "cursor")
    args["limit"] = _limit(request)
    return await _act(request, "audit.list", args)


# -- appeals ------------------------------------------------------------------------------------
async def _appellant(request: web.Request) -> str:
    """The appealing user: a Bearer token, or (suspended users, whose tokens are refused)
    ``Authorization: Basic base64(email:password)``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return (await require_principal(request)).user_id
    try:
        email, sep, password = (
            base64.b64decode(value.strip(), validate=True).decode().partition(":")
        )
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("Basic credentials are not valid base64 of email:password") from None
    if not sep:
        raise Unauthorized("Basic credentials must be email:password")
    try:
        check_text(email + password, "credentials")
    except BadRequest:
        raise Unauthorized("Basic credentials hold a NUL byte or a lone surrogate") from None
    address = client_address(request, request.app[SETTINGS].trusted_proxy_hops)
    user = await request.app[SERVICES].accounts.check_credentials(email, password, address)
    return user.id


async def appeal_view(request: web.Request) -> web.Response:
    user_id = await _appellant(request)
    body = await read_json(request, AppealBody)
    return web.json_response(await request.app[SERVICES].appeals.create(user_id, body), status=201)


async def my_moderation_view(request: web.Request) -> web.Response:
    user_id = await _appellant(request)
    return web.json_response(await request.app[SERVICES].appeals.mine(user_id))


async def appeals_view(request: web.Request) -> web.Response:
    return await _act(request, "appeals.list", _query(request, "status", "cursor"))


async def decide_view(request: web.Request) -> web.Response:
    body = await read_json(request, DecideBody)
    args = {"appeal_id": request.match_info["appeal_id"], "body": body.model_dump(mode="json")}
    return await _act(request, "appeals.decide", args)


# -- disputes (admin side; buyers and vendors: gateway/disputes_api.py) -------------------------
async def disputes_view(request: web.Request) -> web.Response:
    return await _act(request, "disputes.list", _query(request, "status", "cursor"))


async def dispute_resolve_view(request: web.Request) -> web.Response:
    body = await read_json(request, ResolveDisputeBody)
    args = {"dispute_id": request.match_info["dispute_id"], "body": body.model_dump(mode="json")}
    return await _act(request, "disputes.resolve", args)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/reports", report_view)
    app.router.add_get("/api/v1/admin/reports", reports_view)
    app.router.add_post("/api/v1/admin/reports/{report_id}/resolve", resolve_view)
    app.router.add_post("/api/v1/admin/content/remove", remove_view)
    app.router.add_get("/api/v1/admin/users/{user_id}", user_view)
    app.router.add_post("/api/v1/admin/users/{user_id}/roles", roles_view)
    app.router.add_post("/api/v1/admin/users/{user_id}/suspend", suspend_view)
    app.router.add_post("/api/v1/admin/users/{user_id}/unsuspend", unsuspend_view)
    app.router.add_get("/api/v1/admin/audit", audit_view)
    app.router.add_post("/api/v1/appeals", appeal_view)
    app.router.add_get("/api/v1/me/moderation", my_moderation_view)
    app.router.add_get("/api/v1/admin/appeals", appeals_view)
    app.router.add_post("/api/v1/admin/appeals/{appeal_id}/decide", decide_view)
    app.router.add_get("/api/v1/admin/disputes", disputes_view)
    app.router.add_post("/api/v1/admin/disputes/{dispute_id}/resolve", dispute_resolve_view)
