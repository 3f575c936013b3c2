"""The ledger's REST endpoints (docs/payments.md): a vendor's balance and payouts, and the
admin's revenue report and payouts.

Thin adapters: the vendor's own figures come from services/ledger.py and services/payouts.py
(``require_vendor`` with ``orders:read``: a vendor sees only its own); the admin endpoints go
through the control actor (``revenue.report``, ``payouts.run``, ``payouts.paid``,
``payouts.listed``), which checks the role (models/rbac.py) and writes the audit entry.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.context import SERVICES
from gateway.control_api import act, query_args
from gateway.http import read_json
from gateway.oauth import require_vendor
from gateway.openapi_schema import Schema, errors, json_body, obj
from models.errors import BadRequest


class PaidBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1, max_length=200)
    """The operator's reference of the payment made (a bank transfer's, ...)."""


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise BadRequest("limit: a whole number 1 to 100")
    return int(raw)


async def balance_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "orders:read")
    balance = await request.app[SERVICES].ledger.balance(caller.vendor["id"])
    return web.json_response(balance)


async def vendor_payouts_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "orders:read")
    cursor = request.query.get("cursor") or None
    page = await request.app[SERVICES].payouts.of_vendor(
        caller.vendor["id"], cursor, _limit(request)
    )
    return web.json_response(page)


async def revenue_view(request: web.Request) -> web.Response:
    return await act(request, "revenue.report", query_args(request, "from", "to", "group"))


async def payouts_view(request: web.Request) -> web.Response:
    return await act(request, "payouts.listed", query_args(request, "status"))


async def run_view(request: web.Request) -> web.Response:
    return await act(request, "payouts.run", {})


async def paid_view(request: web.Request) -> web.Response:
    body = await read_json(request, PaidBody)
    args = {"payout_id": request.match_info["payout_id"], "reference": body.reference}
    return await act(request, "payouts.paid", args)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/vendor/balance", balance_view)
    app.router.add_get("/api/v1/vendor/payouts", vendor_payouts_view)
    app.router.add_get("/api/v1/admin/revenue", revenue_view)
    app.router.add_get("/api/v1/admin/payouts", payouts_view)
    app.router.add_post("/api/v1/admin/payouts/run", run_view)
    app.router.add_post("/api/v1/admin/payouts/{payout_id}/paid", paid_view)


# -- OpenAPI ------------------------------------------------------------------------------------
_STR: Schema = {"type": "string"}
_NSTR: Schema = {"type": ["string", "null"]}
_INT: Schema = {"type": "integer"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_ADMIN = "Needs the role admin; every call writes an audit entry."
_DAY: Schema = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "description": "a UTC day, YYYY-MM-DD"}  # fmt: skip


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _q(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _get(summary: str, description: str, schema: Schema, *errs: int, **more: Any) -> Schema:
    return {"summary": summary, "description": description, "security": _BEARER,
            "responses": {"200": {"description": "ok", **json_body(schema)}, **errors(*errs)},
            **more}  # fmt: skip


_FIGURES = dict(currency=_STR, gmv=_INT, orders=_INT, refunds=_INT, commission=_INT)
_BALANCE = obj(["currency", "available", "pending", "held", "in_transit"], currency=_STR,
               available=_INT, pending=_INT, held=_INT, in_transit=_INT)  # fmt: skip
_VENDOR_HOLD = obj(["id", "order_id", "dispute_id", "reason", "created_at"], id=_STR,
                   order_id=_NSTR, dispute_id=_NSTR, reason=_STR, created_at=_STR)  # fmt: skip
_PAGE = obj(["items", "next_cursor"], items={"type": "array", "items": _ref("Payout")},
            next_cursor=_NSTR)  # fmt: skip
_VENDOR = "A vendor user token or an app token with the scope orders:read; the caller's own."

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Payout": obj(
        ["id", "vendor_id", "amount", "currency", "method", "status", "orders", "created_at"],
        id=_STR, vendor_id=_STR, amount=_INT, currency=_STR,
        method={"enum": ["stripe_transfer", "manual"]},
        status={"enum": ["pending", "paid", "failed"]},
        destination=_NSTR, reference=_NSTR, error=_NSTR, orders={"type": "array", "items": _STR},
        created_at=_STR, paid_at=_NSTR,
    ),
}  # fmt: skip

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/vendor/balance": {
        "get": _get("The vendor's balance: available (payable), pending (before fulfilment and"
                    " the hold period), held (disputes), in transit (payouts made); the open"
                    " holds that stop its payouts and whether a suspension does", _VENDOR,
                    {**_BALANCE,
                     "required": [*_BALANCE["required"], "balances", "holds",
                                  "payouts_suspended"],
                     "properties": {**_BALANCE["properties"],
                                    "balances": {"type": "array", "items": _BALANCE},
                                    "holds": {"type": "array", "items": _VENDOR_HOLD},
                                    "payouts_suspended": {"type": "boolean"}}},
                    401, 403),
    },
    "/api/v1/vendor/payouts": {
        "get": _get("The vendor's payouts, newest first", _VENDOR, _PAGE, 400, 401, 403,
                    parameters=[_q("cursor", _STR),
                                _q("limit", {"type": "integer", "minimum": 1,
                                             "maximum": 100})]),
    },
    "/api/v1/admin/revenue": {
        "get": _get("Revenue from the ledger by day, cell or vendor: GMV, captured orders,"
                    " refunds, net commission per currency, with totals per currency", _ADMIN,
                    obj(["from", "to", "group", "rows", "totals"], **{"from": _STR}, to=_STR,
                        group=_STR,
                        rows={"type": "array", "items": obj(["key", *_FIGURES], key=_STR,
                                                            **_FIGURES)},
                        totals={"type": "array", "items": obj(list(_FIGURES), **_FIGURES)}),
                    400, 401, 403,
                    parameters=[_q("from", _DAY), _q("to", _DAY),
                                _q("group", {"enum": ["day", "cell", "vendor"]})]),
    },
    "/api/v1/admin/payouts": {
        "get": _get("Payouts of every vendor, newest first (100 at most)", _ADMIN, _PAGE,
                    400, 401, 403,
                    parameters=[_q("status", {"enum": ["pending", "paid", "failed"]})]),
    },
    "/api/v1/admin/payouts/run": {
        "post": {"summary": "Run a payout batch now: releases due, payouts made; its transfers"
                            " queued (pending) for the control actor's money loop to send",
                 "description": _ADMIN, "security": _BEARER,
                 "responses": {"200": {"description": "ok", **json_body(obj(
                     ["released", "payouts", "transfers"], released=_INT,
                     payouts={"type": "array", "items": _ref("Payout")},
                     transfers={"type": "array", "items": _ref("Payout")}))},
                     **errors(401, 403)}},
    },
    "/api/v1/admin/payouts/{payout_id}/paid": {
        "post": {"summary": "Mark a manual payout paid, with the operator's reference",
                 "description": _ADMIN, "security": _BEARER,
                 "parameters": [{"name": "payout_id", "in": "path", "required": True,
                                 "schema": _STR}],
                 "requestBody": json_body(obj(["reference"], reference={
                     "type": "string", "minLength": 1, "maxLength": 200})),
                 "responses": {"200": {"description": "ok",
                                       **json_body(obj(["payout"], payout=_ref("Payout")))},
                               **errors(400, 401, 403, 404, 409)}},
    },
}  # fmt: skip
