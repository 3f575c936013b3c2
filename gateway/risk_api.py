"""The fraud review endpoints: thin adapters in front of the control actor (services/risk.py).

``GET /api/v1/admin/risk/orders`` lists held orders; ``POST /api/v1/admin/risk/orders/{id}/
release`` captures and confirms the order's checkout, ``.../reject`` voids and releases it.
Roles are checked by the control actor (``risk.list``, ``risk.review``: models/rbac.py), and
every call writes an audit entry there.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.control_api import ControlRoute, add_control_routes
from gateway.openapi_schema import Schema, errors, json_body, obj
from services.risk import ReviewBody

_ORDERS = "/api/v1/admin/risk/orders"
ROUTES = (
    ControlRoute("GET", _ORDERS, "risk.list", query=("cursor",)),
    ControlRoute("POST", _ORDERS + "/{order_id}/release", "risk.release", ("order_id",),
                 body=ReviewBody, body_key="body", body_optional=True),
    ControlRoute("POST", _ORDERS + "/{order_id}/reject", "risk.reject", ("order_id",),
                 body=ReviewBody, body_key="body", body_optional=True),
)  # fmt: skip


def add_routes(app: web.Application) -> None:
    add_control_routes(app, ROUTES)


# -- OpenAPI ------------------------------------------------------------------------------------
_STR: Schema = {"type": "string"}
_NSTR: Schema = {"type": ["string", "null"]}
_INT: Schema = {"type": "integer"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_SIGNAL = obj(["code", "points", "detail"], code=_STR, points=_INT, detail=_STR)
_DECISION = obj(
    ["orders", "payment"], orders={"type": "array", "items": _ref("Order")},
    payment={"type": "object"},
)  # fmt: skip
_ADMIN = "Needs the role admin; every call writes an audit entry."


def _decide_op(summary: str) -> Schema:
    return {
        "summary": summary,
        "description": f"{_ADMIN} The decision covers the order's whole checkout (one payment).",
        "security": [{"bearer": []}],
        "parameters": [{"name": "order_id", "in": "path", "required": True, "schema": _STR}],
        "requestBody": {"required": False, **json_body(obj([], note=_STR))},
        "responses": {"200": {"description": "ok", **json_body(_DECISION)},
                      **errors(400, 401, 403, 404, 409)},
    }  # fmt: skip


OPENAPI_SCHEMAS: dict[str, Any] = {
    "HeldOrder": obj(
        ["order", "risk", "buyer", "payment", "held_at"],
        order=_ref("Order"),
        risk=obj(["score", "reasons", "signals"], score=_INT,
                 reasons={"type": "array", "items": _STR},
                 signals={"type": "array", "items": _SIGNAL}),
        buyer=obj(["id"], id=_STR, email=_STR),
        payment=obj(["id", "status"], id=_STR, provider=_STR, status=_STR, amount=_INT,
                    currency=_STR),
        held_at=_STR,
    ),
}  # fmt: skip

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/admin/risk/orders": {
        "get": {
            "summary": "Orders held for fraud review, longest held first",
            "description": _ADMIN,
            "security": [{"bearer": []}],
            "parameters": [{"name": "cursor", "in": "query", "required": False,
                            "schema": _STR}],
            "responses": {"200": {"description": "ok", **json_body(obj(
                ["items", "next_cursor"], items={"type": "array", "items": _ref("HeldOrder")},
                next_cursor=_NSTR))}, **errors(400, 401, 403)},
        },
    },
    "/api/v1/admin/risk/orders/{order_id}/release": {
        "post": _decide_op("Release a held checkout: capture its payment, confirm its orders"),
    },
    "/api/v1/admin/risk/orders/{order_id}/reject": {
        "post": _decide_op("Reject a held checkout: void its payment, release its orders"),
    },
}  # fmt: skip
