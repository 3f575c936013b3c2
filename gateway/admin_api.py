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
from gateway.control_api import act as _act
from gateway.control_api import query_args as _query
from gateway.http import read_json
from gateway.input_guard import check_text
from gateway.ops import Call, Op
from gateway.ratelimit import client_address
from models.errors import BadRequest, Unauthorized
from models.rbac import Staff
from services.admin import RefundBody, RolesBody, SuspendBody
from services.appeals import AppealBody, DecideBody
from services.disputes import ResolveDisputeBody
from services.moderation import RemoveBody, ReportBody, ResolveBody
from services.payout_holds import HoldBody, ReleaseBody


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


async def _body_act(
    request: web.Request, model: type[BaseModel], action: str, name: str, **more: Any
) -> web.Response:
    """An action on the object named by the path's ``name``, with the typed body."""
    body = await read_json(request, model)
    args = {name: request.match_info[name], "body": body.model_dump(mode="json"), **more}
    return await _act(request, action, args)


async def _list(request: web.Request, action: str, *also: str) -> web.Response:
    return await _act(request, action, _query(request, "status", "cursor", *also))


# -- moderation ---------------------------------------------------------------------------------
async def reports_view(request: web.Request) -> web.Response:
    return await _list(request, "reports.list")


async def resolve_view(request: web.Request) -> web.Response:
    return await _body_act(request, ResolveBody, "reports.resolve", "report_id")


async def remove_view(request: web.Request) -> web.Response:
    body = await read_json(request, RemoveBody)
    return await _act(request, "content.remove", {"body": body.model_dump(mode="json")})


# -- users --------------------------------------------------------------------------------------
async def user_view(request: web.Request) -> web.Response:
    return await _act(request, "users.get", {"user_id": request.match_info["user_id"]})


async def roles_view(request: web.Request) -> web.Response:
    return await _body_act(request, RolesBody, "users.roles", "user_id")


async def suspend_view(request: web.Request) -> web.Response:
    return await _body_act(request, SuspendBody, "users.suspend", "user_id")


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
    return await _list(request, "appeals.list")


async def decide_view(request: web.Request) -> web.Response:
    return await _body_act(request, DecideBody, "appeals.decide", "appeal_id")


# -- disputes (admin side; buyers and vendors: gateway/disputes_api.py) -------------------------
async def disputes_view(request: web.Request) -> web.Response:
    return await _list(request, "disputes.list")


async def dispute_resolve_view(request: web.Request) -> web.Response:
    return await _body_act(request, ResolveDisputeBody, "disputes.resolve", "dispute_id")


# -- money: refunds of orders, payout holds -----------------------------------------------------
def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 128:
        raise BadRequest("Idempotency-Key: 1 to 128 characters")
    return key


async def order_refund_view(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    return await _body_act(request, RefundBody, "orders.refund", "order_id", key=key)


async def holds_view(request: web.Request) -> web.Response:
    return await _list(request, "payouts.list", "vendor_id")


async def hold_view(request: web.Request) -> web.Response:
    body = await read_json(request, HoldBody)
    return await _act(request, "payouts.hold", {"body": body.model_dump(mode="json")}, 201)


async def release_view(request: web.Request) -> web.Response:
    body = ReleaseBody(note=None)
    if request.can_read_body:
        body = await read_json(request, ReleaseBody)
    args = {"hold_id": request.match_info["hold_id"], "body": body.model_dump(mode="json")}
    return await _act(request, "payouts.release", args)


# -- staff over the websocket: the same actions, the socket's roles checked again by the actor --
class _QueueReq(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(None, max_length=16)
    cursor: str | None = Field(None, max_length=256)


def _ws_staff(call: Call) -> Staff:
    principal = call.session.principal
    return Staff(principal.user_id, principal.roles)


async def op_admin_reports(call: Call, req: _QueueReq) -> dict[str, Any]:
    args = req.model_dump(exclude_none=True)
    return await call.services.control.call("reports.list", _ws_staff(call), args)


OPS: dict[str, Op] = {
    "report.create": Op(ReportBody, op_report_create, mutating=True),
    "admin.reports": Op(_QueueReq, op_admin_reports),
}


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
    app.router.add_post("/api/v1/admin/orders/{order_id}/refund", order_refund_view)
    app.router.add_get("/api/v1/admin/payouts/holds", holds_view)
    app.router.add_post("/api/v1/admin/payouts/holds", hold_view)
    app.router.add_post("/api/v1/admin/payouts/holds/{hold_id}/release", release_view)
