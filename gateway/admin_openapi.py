"""The admin endpoints' part of the OpenAPI document (merged by gateway/registry.py)."""

from __future__ import annotations

from typing import Any

from gateway.openapi_schema import Schema, errors, json_body, obj
from models.admin import DISPUTE_STATES
from models.rbac import ROLES

_STR: Schema = {"type": "string"}
_NSTR: Schema = {"type": ["string", "null"]}
_INT: Schema = {"type": "integer"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_KINDS = ["post", "comment", "listing", "message", "user"]
_DISPUTE_STATES: Schema = {"type": "string", "enum": list(DISPUTE_STATES)}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, role: str, ok: int, schema: Schema, *errs: int, **more: Any) -> Schema:
    return {
        "summary": summary,
        "description": f"Needs the role {role}; every call writes an audit entry."
        if role != "user"
        else "Any signed-in user.",
        "security": _BEARER,
        "responses": {str(ok): {"description": "ok", **json_body(schema)}, **errors(*errs)},
        **more,
    }


def _path(name: str) -> list[Schema]:
    return [{"name": name, "in": "path", "required": True, "schema": _STR}]


def _query(*names: str, **schemas: Schema) -> list[Schema]:
    """Optional query parameters: strings, or the schema named for them."""
    return [
        {"name": n, "in": "query", "required": False, "schema": schemas.get(n, _STR)} for n in names
    ]


def _states(*names: str) -> Schema:
    return {"type": "string", "enum": list(names)}


def _page(item: str) -> Schema:
    return obj(
        ["items", "next_cursor"], items={"type": "array", "items": _ref(item)}, next_cursor=_NSTR
    )


_REPORT_BODY = obj(
    ["target", "reason"],
    target=obj(["kind", "id"], kind={"enum": _KINDS}, id=_STR),
    reason={"enum": ["spam", "scam", "harassment", "illegal", "other"]},
    note=_STR,
)
_USER = obj(["user"], user=_ref("AdminUser"))
_AMOUNT: Schema = {
    "type": "integer",
    "minimum": 1,
    "maximum": 2**62,
    "description": "minor units; none: all that is left to refund",
}
_CURRENCY: Schema = {"type": "string", "pattern": "^[A-Za-z]{3}$"}
_IDEM: Schema = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Report": obj(
        ["id", "reporter_id", "target", "reason", "severity", "status", "created_at"],
        id=_STR, reporter_id=_STR, target=obj(["kind", "id"], kind={"enum": _KINDS}, id=_STR),
        target_user=_NSTR, reason=_STR, note=_NSTR, severity=_INT,
        status={"enum": ["open", "resolved"]}, resolution=_NSTR, resolved_by=_NSTR,
        resolved_note=_NSTR, created_at=_STR, resolved_at=_NSTR, target_reports=_INT,
    ),
    "AdminUser": obj(
        ["id", "email", "display_name", "roles", "suspended"],
        id=_STR, email=_STR, display_name=_STR, roles={"type": "array", "items": _STR},
        created_at=_STR, suspended={"type": "boolean"}, suspended_until=_NSTR,
        suspension_reason=_NSTR,
    ),
    "Appeal": obj(
        ["id", "action_id", "user_id", "text", "status", "created_at"],
        id=_STR, action_id=_STR, user_id=_STR, text=_STR,
        status={"enum": ["open", "accepted", "rejected"]}, decided_by=_NSTR, note=_NSTR,
        created_at=_STR, decided_at=_NSTR, action={"type": "object"},
    ),
    "Dispute": obj(
        ["id", "order_id", "buyer_id", "vendor_id", "reason", "text", "status"],
        id=_STR, order_id=_STR, buyer_id=_STR, vendor_id=_STR,
        reason={"enum": ["not_received", "not_as_described", "other"]}, text=_STR,
        status={"enum": ["open", "responded", "refunded", "rejected"]}, response=_NSTR,
        outcome_note=_NSTR, amount={"type": ["integer", "null"]}, created_at=_STR,
        updated_at=_STR,
    ),
    "Action": obj(
        ["id", "kind", "target", "user_id", "reason", "created_at", "reversed"],
        id=_STR, kind={"enum": ["remove", "suspend"]},
        target=obj(["kind", "id"], kind={"enum": _KINDS}, id=_STR), user_id=_STR, reason=_STR,
        until=_NSTR, created_at=_STR, reversed={"type": "boolean"}, content=_NSTR,
        appeals={"type": "array", "items": _ref("Appeal")},
    ),
    "PayoutHold": obj(
        ["id", "vendor_id", "reason", "status", "created_at"],
        id=_STR, vendor_id=_STR, order_id=_NSTR, dispute_id=_NSTR, reason=_STR,
        actor_id=_NSTR, status={"enum": ["open", "released"]}, created_at=_STR,
        released_at=_NSTR, released_by=_NSTR, release_note=_NSTR,
    ),
    "AuditEntry": obj(
        ["id", "actor_id", "action", "target", "reason", "result", "at"],
        id=_STR, actor_id=_NSTR, action=_STR, target=_STR, reason=_NSTR,
        result={"type": "object"}, at=_STR,
    ),
}  # fmt: skip

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/reports": {
        "post": _op("Report a post, comment, listing, message or user", "user", 201,
                    obj(["report"], report=_ref("Report")), 400, 401, 403, 404, 409, 429,
                    requestBody=json_body(_REPORT_BODY)),
    },
    "/api/v1/admin/reports": {
        "get": _op("The review queue: most severe, then most reported first", "moderator",
                   200, _page("Report"), 400, 401, 403,
                   parameters=_query("status", "cursor", status=_states("open", "resolved"))),
    },
    "/api/v1/admin/reports/{report_id}/resolve": {
        "post": _op("Resolve every open report of the report's target", "moderator", 200,
                    obj(["report"], report=_ref("Report")), 400, 401, 403, 404, 409,
                    parameters=_path("report_id"),
                    requestBody=json_body(obj(["action"],
                                              action={"enum": ["dismiss", "remove", "suspend"]},
                                              note=_STR))),
    },
    "/api/v1/admin/content/remove": {
        "post": _op("Remove content: out of every read op, followers told live", "moderator",
                    200, obj(["removed"], removed={"type": "boolean"}, action_id=_STR),
                    400, 401, 403, 404, 409,
                    requestBody=json_body(obj(["kind", "id", "reason"],
                                              kind={"enum": _KINDS[:4]}, id=_STR,
                                              reason=_STR))),
    },
    "/api/v1/admin/users/{user_id}": {
        "get": _op("A user as admins see them", "moderator", 200, _USER, 401, 403, 404,
                   parameters=_path("user_id")),
    },
    "/api/v1/admin/users/{user_id}/roles": {
        "post": _op("Set a user's staff roles (user and vendor are kept)", "admin", 200, _USER,
                    400, 401, 403, 404, parameters=_path("user_id"),
                    requestBody=json_body(obj(["roles"],
                                              roles={"type": "array", "maxItems": 8,
                                                     "items": {"enum": list(ROLES)}}))),
    },
    "/api/v1/admin/users/{user_id}/suspend": {
        "post": _op("Suspend: sockets closed (4003), sign-ins refused, pending orders released",
                    "moderator", 200, obj(["user"], user=_ref("AdminUser"), action_id=_STR),
                    400, 401, 403, 404, parameters=_path("user_id"),
                    requestBody=json_body(obj(["reason"], reason=_STR,
                                              until={"type": "string", "format": "date-time"}))),
    },
    "/api/v1/admin/users/{user_id}/unsuspend": {
        "post": _op("Lift a suspension", "moderator", 200, _USER, 400, 401, 403, 404,
                    parameters=_path("user_id"),
                    requestBody={"required": False, **json_body(obj([], reason=_STR))}),
    },
    "/api/v1/admin/audit": {
        "get": _op("The audit log, newest first", "admin", 200, _page("AuditEntry"), 400, 401,
                   403, parameters=_query("actor_id", "target", "action", "cursor", "limit",
                                          limit={"type": "integer", "minimum": 1,
                                                 "maximum": 200})),
    },
    "/api/v1/appeals": {
        "post": {
            "summary": "Appeal a moderation action that affected you",
            "description": "Bearer, or (while suspended) HTTP Basic email:password.",
            "security": [{"bearer": []}, {"basic": []}],
            "requestBody": json_body(obj(["action_id", "text"], action_id=_STR, text=_STR)),
            "responses": {"201": {"description": "created",
                                  **json_body(obj(["appeal"], appeal=_ref("Appeal")))},
                          **errors(400, 401, 404, 409)},
        },
    },
    "/api/v1/me/moderation": {
        "get": {
            "summary": "The moderation actions that affected you, with their appeals",
            "description": "Bearer, or (while suspended) HTTP Basic email:password.",
            "security": [{"bearer": []}, {"basic": []}],
            "responses": {"200": {"description": "ok",
                                  **json_body(obj(["items"], items={"type": "array",
                                                                    "items": _ref("Action")}))},
                          **errors(401)},
        },
    },
    "/api/v1/admin/appeals": {
        "get": _op("Appeals, oldest first", "admin", 200, _page("Appeal"), 400, 401, 403,
                   parameters=_query("status", "cursor",
                                     status=_states("open", "accepted", "rejected"))),
    },
    "/api/v1/admin/appeals/{appeal_id}/decide": {
        "post": _op("Accept (the action is reversed) or reject an appeal", "admin", 200,
                    obj(["appeal"], appeal=_ref("Appeal")), 400, 401, 403, 404, 409,
                    parameters=_path("appeal_id"),
                    requestBody=json_body(obj(["accept"], accept={"type": "boolean"},
                                              note=_STR))),
    },
    "/api/v1/vendor/disputes": {
        "get": {
            "summary": "Disputes on the vendor's orders, newest first",
            "security": _BEARER,
            "parameters": _query("status", "cursor", status=_DISPUTE_STATES),
            "responses": {"200": {"description": "ok", **json_body(_page("Dispute"))},
                          **errors(400, 401, 403)},
        },
    },
    "/api/v1/vendor/disputes/{dispute_id}/respond": {
        "post": {
            "summary": "Respond to a dispute, or refund at once (refund: true)",
            "security": _BEARER,
            "parameters": _path("dispute_id"),
            "requestBody": json_body(obj(["text"], text=_STR, refund={"type": "boolean"},
                                         amount=_AMOUNT, currency=_CURRENCY)),
            "responses": {"200": {"description": "ok",
                                  **json_body(obj(["dispute"], dispute=_ref("Dispute")))},
                          **errors(400, 401, 403, 404, 409)},
        },
    },
    "/api/v1/admin/disputes": {
        "get": _op("Every dispute, newest first", "admin", 200, _page("Dispute"), 400, 401,
                   403, parameters=_query("status", "cursor", status=_DISPUTE_STATES)),
    },
    "/api/v1/admin/disputes/{dispute_id}/resolve": {
        "post": _op("Resolve: refund through the order's provider, or reject", "admin", 200,
                    obj(["dispute"], dispute=_ref("Dispute")), 400, 401, 403, 404, 409,
                    parameters=_path("dispute_id"),
                    requestBody=json_body(obj(["outcome"], outcome={"enum": ["refund", "reject"]},
                                              amount=_AMOUNT, currency=_CURRENCY,
                                              note=_STR))),
    },
    "/api/v1/admin/orders/{order_id}/refund": {
        "post": _op("Refund an order, whole or partly, through its provider", "admin", 200,
                    obj(["order", "refund_id", "amount"], order={"type": "object"},
                        refund_id=_STR, amount=_INT),
                    400, 401, 403, 404, 409, parameters=[*_path("order_id"), _IDEM],
                    requestBody=json_body(obj(["reason"], amount=_AMOUNT, currency=_CURRENCY,
                                              reason=_STR))),
    },
    "/api/v1/admin/payouts/holds": {
        "get": _op("Payout holds, newest first", "admin", 200, _page("PayoutHold"), 400, 401,
                   403, parameters=_query("vendor_id", "status", "cursor",
                                          status=_states("open", "released"))),
        "post": _op("Hold one order's payout, or every payout of a vendor", "admin", 201,
                    obj(["hold"], hold=_ref("PayoutHold")), 400, 401, 403, 404, 409,
                    requestBody=json_body(obj(["vendor_id", "reason"], vendor_id=_STR,
                                              order_id=_STR, reason=_STR))),
    },
    "/api/v1/admin/payouts/holds/{hold_id}/release": {
        "post": _op("Release a payout hold (a dispute's: when the dispute closes)", "admin",
                    200, obj(["hold"], hold=_ref("PayoutHold")), 400, 401, 403, 404, 409,
                    parameters=_path("hold_id"),
                    requestBody={"required": False, **json_body(obj([], note=_STR))}),
    },
}  # fmt: skip
