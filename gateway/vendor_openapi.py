"""The marketplace's part of the OpenAPI document: vendor API, apps and OAuth2 tokens, REST
hooks and the Stripe webhook (merged by gateway/registry.py)."""

from __future__ import annotations

from typing import Any

from gateway.openapi_schema import Schema
from gateway.openapi_schema import errors as _errors
from gateway.openapi_schema import json_body as _json
from gateway.openapi_schema import obj as _obj
from models.market import ORDER_STATES, SCOPES
from models.media import MEDIA_ID_PATTERN

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
# a vendor user token or an app token from /api/v1/oauth/token
_VENDOR_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
_IDEM = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key returns the first result and changes nothing.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STR}


def _q(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _op(summary: str, scope: str | None, ok: dict[str, Any], *errs: int, **extra: Any) -> Any:
    body: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(*errs)}}
    if scope:
        body["security"] = _VENDOR_AUTH
        body["description"] = f"Scope `{scope}` (a vendor user's token holds every scope)."
    body.update(extra)
    return body


def _ok(status: int, schema: dict[str, Any], text: str = "ok") -> dict[str, Any]:
    return {str(status): {"description": text, **_json(schema)}}


_PAGE = {"type": "object", "properties": {"next_cursor": {"type": ["string", "null"]}}}
_LISTING = _obj(["listing"], listing=_ref("Listing"))
_ORDER = _obj(["order"], order=_ref("Order"))
_LISTINGS = {**_PAGE, "properties": {"items": {"type": "array", "items": _ref("Listing")}}}
_ORDERS = {**_PAGE, "properties": {"items": {"type": "array", "items": _ref("Order")}}}
_PAGING = [_q("cursor", _STR), _q("limit", {"type": "integer", "minimum": 1, "maximum": 100})]
_LISTING_FIELDS: dict[str, Schema] = {
    "title": _STR,
    "description": _STR,
    "category": _STR,
    "price": {"type": "integer", "description": "minor units"},
    "currency": {"type": "string", "pattern": "^[a-z]{3}$"},
    "stock": {"type": "integer", "minimum": 0},
    "images": {"type": "array", "items": {"type": "string"}, "maxItems": 10},  # media ids
    "kind": {"enum": ["product", "service"]},
    "active": _BOOL,
}

_SOME_TEXT = r"\S"  # trimmed, the value must keep a character (gateway/vendor_api.py)
_LISTING_BODY: dict[str, Schema] = {  # what a request may hold (gateway/vendor_api.py)
    **_LISTING_FIELDS,
    "title": {"type": "string", "maxLength": 200, "pattern": _SOME_TEXT},
    "description": {"type": "string", "maxLength": 5000},
    "category": {"type": "string", "maxLength": 64, "pattern": _SOME_TEXT},
    "price": {"type": "integer", "minimum": 0, "maximum": 10**12, "description": "minor units"},
    "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
    "stock": {"type": "integer", "minimum": 0, "maximum": 10**7},
    "images": {
        "type": "array",
        "maxItems": 10,  # the vendor user's uploads (docs/media.md)
        "items": {"type": "string", "pattern": MEDIA_ID_PATTERN},
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Vendor": _obj(
        ["id", "user_id", "name", "category", "cell", "lat", "lng"],
        id=_STR, user_id=_STR, name=_STR, category=_STR, cell=_STR, lat=_NUM, lng=_NUM,
        created_at=_STR,
    ),
    "Listing": _obj(
        ["id", "vendor_id", "cell", "title", "price", "currency", "stock", "active"],
        id=_STR, vendor_id=_STR, cell=_STR, lat=_NUM, lng=_NUM, created_at=_STR,
        updated_at=_STR, distance_m=_NUM, vendor_suspended=_BOOL, **_LISTING_FIELDS,
        vendor=_obj(["id", "name", "user_id"], id=_STR, name=_STR, user_id=_STR),
    ),
    "Order": _obj(
        ["id", "group_id", "buyer_id", "vendor_id", "status", "items", "total", "currency"],
        id=_STR, group_id=_STR, buyer_id=_STR, vendor_id=_STR,
        status={"enum": list(ORDER_STATES)},
        items={"type": "array", "items": _obj(
            ["listing_id", "qty", "unit_price"], listing_id=_STR, title=_STR, qty=_INT,
            unit_price=_INT)},
        total=_INT, refunded={"type": "integer", "description": "refunded so far (minor units)"},
        currency=_STR, reserved_until={"type": ["string", "null"]},
        reason={"type": ["string", "null"]}, created_at=_STR, updated_at=_STR,
        risk={"oneOf": [{"type": "null"}, _obj(
            ["score", "reasons"], score={"type": "integer", "minimum": 0, "maximum": 100},
            reasons={"type": "array", "items": _STR})],
            "description": "its checkout's fraud score and the rules that fired"
                           " (docs/security.md); held: waiting for review"},
        vendor=_obj(["id", "name", "user_id"], id=_STR, name=_STR, user_id=_STR),
        room_id={"type": "string", "description": "the buyer–vendor room (chat.open)"},
    ),
    "Hook": _obj(
        ["id", "target_url", "events", "active"],
        id=_STR, target_url=_STR, events={"type": "array", "items": _STR}, active=_BOOL,
        disabled_reason={"type": ["string", "null"]}, created_at=_STR,
        secret={"type": "string", "description": "whsec_...; only in the create answer"},
    ),
    "HookDelivery": _obj(
        ["id", "hook_id", "event_type", "status", "attempts"],
        id=_STR, hook_id=_STR, event_type=_STR,
        status={"enum": ["pending", "delivered", "dead", "gone"]}, attempts=_INT, next_at=_STR,
        last_status={"type": ["integer", "null"]}, last_error={"type": ["string", "null"]},
        created_at=_STR, payload={"type": "object"},
    ),
}  # fmt: skip

_HOOK_EVENTS = {
    "type": "array",
    "items": {"enum": ["order.created", "order.updated", "listing.low_stock", "listing.updated"]},
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/vendors": {
        "post": _op(
            "Become a vendor: the caller's vendor profile (its location decides its cell)",
            None,
            _ok(201, _obj(["vendor"], vendor=_ref("Vendor")), "created"),
            400, 401, 409,
            security=[{"bearer": []}], parameters=[_IDEM],
            requestBody=_json(_obj(["name", "lat", "lng", "category"],
                                   name={"type": "string", "maxLength": 100,
                                         "pattern": _SOME_TEXT},
                                   lat={"type": "number", "minimum": -90, "maximum": 90},
                                   lng={"type": "number", "minimum": -180, "maximum": 180},
                                   category={"type": "string", "maxLength": 64,
                                             "pattern": _SOME_TEXT})),
        )
    },
    "/api/v1/vendors/me": {
        "get": _op("The caller's vendor profile", "listings:read",
                   _ok(200, _obj(["vendor"], vendor=_ref("Vendor"))), 401, 403)
    },
    "/api/v1/vendor/listings": {
        "post": _op(
            "Create a listing in the vendor's cell", "listings:write", _ok(201, _LISTING),
            400, 401, 403, 404, parameters=[_IDEM],  # 404: an image id names no upload
            requestBody=_json(_obj(["title", "category", "price"], **_LISTING_BODY)),
        ),
        "get": _op("The vendor's listings, newest first", "listings:read", _ok(200, _LISTINGS),
                   400, 401, 403, parameters=_PAGING),
    },
    "/api/v1/vendor/listings/{listing_id}": {
        "get": _op("One of the vendor's listings", "listings:read", _ok(200, _LISTING),
                   401, 403, 404, parameters=[_path("listing_id")]),
        "patch": _op(
            "Change a listing (not its stock)", "listings:write", _ok(200, _LISTING),
            400, 401, 403, 404, parameters=[_path("listing_id"), _IDEM],
            requestBody=_json({**_obj([], **{k: v for k, v in _LISTING_BODY.items()
                                             if k != "stock"}), "minProperties": 1}),
        ),
        "delete": _op("Remove a listing from sale (and from carts)", "listings:write",
                      {"204": {"description": "removed"}}, 401, 403, 404,
                      parameters=[_path("listing_id"), _IDEM]),
    },
    "/api/v1/vendor/listings/{listing_id}/stock": {
        "post": _op(
            "Adjust stock by `delta` or `set` it (never below zero; done by the cell's owner)",
            "listings:write", _ok(200, _LISTING), 400, 401, 403, 404, 409,
            parameters=[_path("listing_id"), _IDEM],
            requestBody=_json({"oneOf": [
                _obj(["delta"], delta={"type": "integer", "minimum": -10**7, "maximum": 10**7}),
                _obj(["set"], set={"type": "integer", "minimum": 0, "maximum": 10**7}),
            ]}),
        )
    },
    "/api/v1/vendor/orders": {
        "get": _op("The vendor's orders, newest first", "orders:read", _ok(200, _ORDERS),
                   400, 401, 403,
                   parameters=[*_PAGING, _q("status", {"enum": list(ORDER_STATES)})]),
    },
    "/api/v1/vendor/orders/{order_id}": {
        "get": _op("One of the vendor's orders", "orders:read", _ok(200, _ORDER), 401, 403, 404,
                   parameters=[_path("order_id")]),
    },
    "/api/v1/vendor/orders/{order_id}/{action}": {
        "post": _op(
            "accept (paid → accepted), fulfil (accepted → fulfilled) or cancel (pending → "
            "cancelled; paid/accepted → refunded, money returned, stock back). Illegal steps "
            "answer 409 conflict.",
            "orders:write", _ok(200, _ORDER), 401, 403, 404, 409,
            parameters=[_path("order_id"), {**_path("action"),
                        "schema": {"enum": ["accept", "fulfil", "cancel"]}}, _IDEM],
        )
    },
    "/api/v1/vendor/hooks": {
        "post": _op(
            "Subscribe a target URL to events; deliveries are signed per Standard Webhooks",
            "hooks:write", _ok(201, _ref("Hook"), "created (the secret is shown once)"),
            400, 401, 403,
            requestBody=_json(_obj(["target_url", "events"],
                                   target_url={"type": "string", "maxLength": 2048,
                                               "pattern": "^https?://[^\\s/?#@]+[^\\s]*$"},
                                   events={**_HOOK_EVENTS, "minItems": 1})),
        ),
        "get": _op("The vendor's hooks", "hooks:read",
                   _ok(200, _obj(["items"], items={"type": "array", "items": _ref("Hook")})),
                   401, 403),
    },
    "/api/v1/vendor/hooks/{hook_id}": {
        "delete": _op("Unsubscribe (pending deliveries stop)", "hooks:write",
                      {"204": {"description": "deleted"}}, 401, 403, 404,
                      parameters=[_path("hook_id")]),
    },
    "/api/v1/vendor/hooks/{hook_id}/deliveries": {
        "get": _op(
            "Deliveries of a hook (status=dead: the dead letters)", "hooks:read",
            _ok(200, _obj(["items"], items={"type": "array", "items": _ref("HookDelivery")})),
            400, 401, 403, 404,
            parameters=[_path("hook_id"),
                        _q("status", {"enum": ["pending", "delivered", "dead", "gone"]}),
                        _q("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
        ),
    },
    "/api/v1/vendor/hooks/{hook_id}/replay": {
        "post": _op(
            "Queue dead-lettered deliveries again (all, or `delivery_ids`)", "hooks:write",
            _ok(200, _obj(["replayed"], replayed=_INT)), 400, 401, 403, 404,
            parameters=[_path("hook_id")],
            requestBody={"required": False, **_json(_obj(
                [], delivery_ids={"type": ["array", "null"], "maxItems": 1000,
                                  "items": {"type": "string", "pattern": "^[!-~]{1,64}$"}}))},
        ),
    },
    "/api/v1/vendor/apps": {
        "post": _op(
            "Register an OAuth2 client-credentials app (vendor user token only)", None,
            _ok(201, _obj(["client_id", "client_secret"], client_id=_STR, client_secret=_STR,
                          name=_STR, scopes={"type": "array", "items": _STR})),
            400, 401, 403, security=[{"bearer": []}],
            requestBody=_json(_obj([], name={"type": "string", "minLength": 1, "maxLength": 100},
                                   scopes={"type": "array", "minItems": 1,
                                           "maxItems": len(SCOPES),
                                           "items": {"enum": list(SCOPES)}})),
        ),
        "get": _op("The vendor's live apps", None, _ok(200, _obj(["items"])), 401, 403,
                   security=[{"bearer": []}]),
    },
    "/api/v1/vendor/apps/{client_id}": {
        "delete": _op("Revoke an app (its tokens stop working at once)", None,
                      {"204": {"description": "revoked"}}, 401, 403, 404,
                      security=[{"bearer": []}], parameters=[_path("client_id")]),
    },
    "/api/v1/oauth/token": {
        "post": _op(
            "OAuth2 token endpoint (grant_type=client_credentials; client authentication by "
            "HTTP Basic or client_id/client_secret in the body; optional `scope`)", None,
            _ok(200, _obj(["access_token", "token_type", "expires_in", "scope"],
                          access_token=_STR, token_type=_STR, expires_in=_INT, scope=_STR)),
            400, 401,
            requestBody={"content": {
                "application/x-www-form-urlencoded": {"schema": _obj(
                    ["grant_type"], grant_type={"const": "client_credentials"},
                    client_id=_STR, client_secret=_STR, scope=_STR)},
                "application/json": {"schema": {**_obj(
                    ["grant_type"], grant_type={"const": "client_credentials"},
                    client_id=_STR, client_secret=_STR, scope=_STR),
                    "additionalProperties": True}},  # RFC 6749: unknown parameters ignored
            }},
        ),
    },
    "/api/v1/payments/stripe/webhook": {
        "post": _op(
            "Stripe events (Stripe-Signature verified with the SDK; each event id once)", None,
            _ok(200, _obj(["received"], received=_BOOL, duplicate=_BOOL)), 400, 401, 404, 413,
            parameters=[{"name": "Stripe-Signature", "in": "header", "required": True,
                         "schema": _STR}],
            requestBody=_json({"type": "object"}),
        ),
    },
}  # fmt: skip
