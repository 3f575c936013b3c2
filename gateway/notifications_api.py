"""Notifications at the edge (PROTOCOL.md "Notifications"): the ``notifications.list`` and
``notifications.read`` websocket ops, the settings, push-subscription, unsubscribe, account
email and promotion REST endpoints, and their part of the OpenAPI document. Thin adapters over
services/notifications.py and services/account_email.py."""

from __future__ import annotations

import html
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.http import parse_model, read_json
from gateway.oauth import idempotency_key, require_vendor
from gateway.openapi_schema import NO_NUL, Schema, errors, json_body, obj
from gateway.ops import Call, Op
from models.auth import EMAIL_PATTERN
from models.notifications import KINDS, SettingsBody, known_zones
from services.notify_links import UNSUBSCRIBE_PATH

Short = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListReq(_Req):
    cursor: Annotated[str, StringConstraints(max_length=32)] | None = None
    limit: int = Field(30, ge=1, le=100)
    unread_only: bool = False


class ReadReq(_Req):
    ids: list[Annotated[str, StringConstraints(max_length=32)]] | None = Field(None, max_length=500)
    all: bool = False


async def op_list(call: Call, req: ListReq) -> dict[str, Any]:
    return await call.services.notifications.listing(
        call.user_id, req.cursor, req.limit, req.unread_only
    )


async def op_read(call: Call, req: ReadReq) -> dict[str, Any]:
    ids = list(req.ids) if req.ids is not None else None
    return await call.services.notifications.read(call.user_id, ids, req.all)


OPS: dict[str, Op] = {
    "notifications.list": Op(ListReq, op_list),
    "notifications.read": Op(ReadReq, op_read, mutating=True),
}


# -- REST ---------------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PushKeys(_Body):
    p256dh: Annotated[str, StringConstraints(min_length=16, max_length=200)]
    auth: Annotated[str, StringConstraints(min_length=16, max_length=64)]


class PushSubscription(_Body):
    endpoint: Short
    keys: PushKeys
    expirationTime: float | None = None  # the W3C name; not used


class EndpointBody(_Body):
    endpoint: Short


class EmailBody(_Body):
    email: Annotated[str, StringConstraints(min_length=3, max_length=254)]


class ResetBody(_Body):
    token: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class TokenBody(_Body):
    token: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PromotionBody(_Body):
    title: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    text: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class UnsubscribeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    u: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    s: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    t: Annotated[str, StringConstraints(min_length=1, max_length=64)]


async def settings_get(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    services = request.app[SERVICES]
    return web.json_response(await services.notifications.settings(principal.user_id))


async def settings_put(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, SettingsBody)
    notifications = request.app[SERVICES].notifications
    return web.json_response(await notifications.update_settings(principal.user_id, body))


async def vapid_key(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICES].notifications.vapid_public_key())


async def push_subscribe(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, PushSubscription)
    await request.app[SERVICES].notifications.subscribe(
        principal.user_id, body.endpoint, body.keys.p256dh, body.keys.auth
    )
    return web.json_response({"endpoint": body.endpoint}, status=201)


async def push_unsubscribe(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, EndpointBody)
    await request.app[SERVICES].notifications.unsubscribe_device(principal.user_id, body.endpoint)
    return web.Response(status=204)


async def unsubscribe_page(request: web.Request) -> web.Response:
    """What a person who clicks the link sees: a button (a GET changes nothing, RFC 8058:
    mail scanners follow links)."""
    q = parse_model(UnsubscribeQuery, dict(request.query))
    kind = KINDS.get(q.s)
    what = "all emails" if q.s == "all" else f"emails about {kind.about if kind else q.s}"
    page = (
        "<!doctype html><html><body><form method=post>"
        f"<p>Stop {html.escape(what)} from Hyperlocal?</p>"
        '<button name="List-Unsubscribe" value="One-Click">Unsubscribe</button>'
        "</form></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


async def unsubscribe_post(request: web.Request) -> web.Response:
    """RFC 8058 one-click: the mail client POSTs ``List-Unsubscribe=One-Click`` to the link."""
    q = parse_model(UnsubscribeQuery, dict(request.query))
    result = await request.app[SERVICES].notifications.unsubscribe(q.u, q.s, q.t)
    return web.json_response(result)


async def forgot(request: web.Request) -> web.Response:
    body = await read_json(request, EmailBody)
    await request.app[SERVICES].account_emails.forgot(body.email)
    return web.Response(status=202)


async def reset(request: web.Request) -> web.Response:
    body = await read_json(request, ResetBody)
    await request.app[SERVICES].account_emails.reset(body.token, body.password)
    return web.Response(status=204)


async def verify(request: web.Request) -> web.Response:
    body = await read_json(request, TokenBody)
    await request.app[SERVICES].account_emails.verify(body.token)
    return web.Response(status=204)


async def verify_request(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    await request.app[SERVICES].account_emails.request_verification(principal.user_id)
    return web.Response(status=202)


async def promote(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "listings:write")
    body = await read_json(request, PromotionBody)
    services = request.app[SERVICES]
    vendor = caller.vendor
    result = await services.notifications.promote(
        str(vendor["id"]),
        str(vendor["user_id"]),
        str(vendor["name"]),
        body.title,
        body.text,
        idempotency_key(request),
    )
    return web.json_response(result, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/me/notification-settings", settings_get)
    app.router.add_put("/api/v1/me/notification-settings", settings_put)
    app.router.add_get("/api/v1/push/vapid-public-key", vapid_key)
    app.router.add_post("/api/v1/me/push-subscriptions", push_subscribe)
    app.router.add_delete("/api/v1/me/push-subscriptions", push_unsubscribe)
    app.router.add_get(UNSUBSCRIBE_PATH, unsubscribe_page)
    app.router.add_post(UNSUBSCRIBE_PATH, unsubscribe_post)
    app.router.add_post("/api/v1/auth/password/forgot", forgot)
    app.router.add_post("/api/v1/auth/password/reset", reset)
    app.router.add_post("/api/v1/auth/email/verify", verify)
    app.router.add_post("/api/v1/auth/email/verify-request", verify_request)
    app.router.add_post("/api/v1/vendor/promotions", promote)


# -- OpenAPI ------------------------------------------------------------------------------------
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_BOOL: Schema = {"type": "boolean"}
_STR: Schema = {"type": "string", "pattern": NO_NUL}
_KIND_PREFS: Schema = {
    "type": "object",
    "properties": {"inapp": _BOOL, "email": _BOOL, "push": _BOOL},
    "additionalProperties": False,
}
_HHMM: Schema = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_QUIET: Schema = {
    **obj(
        ["start", "end", "tz"],
        start=_HHMM,
        end=_HHMM,
        tz={"type": "string", "enum": list(known_zones())},  # IANA names this server knows
    ),
    "additionalProperties": False,
}
_SETTINGS: Schema = obj(
    ["email", "push", "kinds"],
    email=_BOOL,
    push=_BOOL,
    kinds={"type": "object", "additionalProperties": _KIND_PREFS},
    quiet_hours=_QUIET,
    digest={"type": "string", "enum": ["off", "daily"]},
    nearby=obj(["cell"], cell={"type": "string"}),
)
_NEARBY: Schema = {
    **obj(
        ["lat", "lng"],
        lat={"type": "number", "minimum": -90, "maximum": 90},
        lng={"type": "number", "minimum": -180, "maximum": 180},
    ),
    "additionalProperties": False,
}
_SETTINGS_BODY: Schema = {
    "type": "object",
    "properties": {
        "email": _BOOL,
        "push": _BOOL,
        "kinds": {
            "type": "object",
            "properties": {k: _KIND_PREFS for k in KINDS},
            "additionalProperties": False,
        },
        "quiet_hours": _QUIET,
        "clear_quiet_hours": _BOOL,
        "digest": {"type": "string", "enum": ["off", "daily"]},
        "nearby": _NEARBY,
        "clear_nearby": _BOOL,
    },
    "additionalProperties": False,
    # a place and clear_nearby: true together is bad_request (models/notifications.py)
    "not": {
        "required": ["nearby", "clear_nearby"],
        "properties": {"clear_nearby": {"const": True}},
    },
}
_UNSUB_PARAMS = [
    {
        "name": n,
        "in": "query",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": NO_NUL},
    }
    for n in ("u", "s", "t")
]


def _body(schema: Schema) -> Schema:
    return {"required": True, **json_body({**schema, "additionalProperties": False})}


def _string(min_len: int, max_len: int) -> Schema:
    return {"type": "string", "minLength": min_len, "maxLength": max_len, "pattern": NO_NUL}


OPENAPI_PATHS: dict[str, Schema] = {
    "/api/v1/me/notification-settings": {
        "get": {
            "summary": "Notification preferences: channels, every kind, quiet hours",
            "security": _BEARER,
            "responses": {
                "200": {"description": "the effective settings", **json_body(_SETTINGS)},
                **errors(401, 429),
            },
        },
        "put": {
            "summary": "Change notification preferences (what is left out keeps its value)",
            "security": _BEARER,
            "requestBody": {"required": True, **json_body(_SETTINGS_BODY)},
            "responses": {
                "200": {"description": "the effective settings", **json_body(_SETTINGS)},
                **errors(400, 401, 413, 429),
            },
        },
    },
    "/api/v1/push/vapid-public-key": {
        "get": {
            "summary": "The VAPID public key (base64url P-256 point): applicationServerKey",
            "responses": {
                "200": {
                    "description": "the key",
                    **json_body(obj(["key"], key={"type": "string"})),
                },
                **errors(429),
            },
        }
    },
    "/api/v1/me/push-subscriptions": {
        "post": {
            "summary": "Register a device's W3C PushSubscription",
            "security": _BEARER,
            "requestBody": {
                "required": True,
                **json_body(
                    obj(
                        ["endpoint", "keys"],
                        endpoint={
                            "type": "string",
                            "maxLength": 2048,
                            "pattern": "^https?://[^\\s]+$",
                        },
                        keys={
                            **obj(
                                ["p256dh", "auth"],
                                p256dh={"type": "string", "pattern": "^[A-Za-z0-9_-]{87}$"},
                                auth={"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
                            ),
                            "additionalProperties": False,
                        },
                        expirationTime={"type": ["number", "null"]},
                    )
                    | {"additionalProperties": False}
                ),
            },
            "responses": {
                "201": {
                    "description": "registered",
                    **json_body(obj(["endpoint"], endpoint={"type": "string"})),
                },
                **errors(400, 401, 413, 429),
            },
        },
        "delete": {
            "summary": "Forget a device's subscription",
            "security": _BEARER,
            "requestBody": _body(obj(["endpoint"], endpoint=_string(1, 2048))),
            "responses": {"204": {"description": "forgotten"}, **errors(400, 401, 404, 413, 429)},
        },
    },
    UNSUBSCRIBE_PATH: {
        "get": {
            "summary": "The page an unsubscribe link opens (a button; a GET changes nothing)",
            "parameters": _UNSUB_PARAMS,
            "responses": {
                "200": {
                    "description": "the page",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                **errors(400, 429),
            },
        },
        "post": {
            "summary": "RFC 8058 one-click unsubscribe (the link's signed query)",
            "parameters": _UNSUB_PARAMS,
            "responses": {
                "200": {
                    "description": "unsubscribed",
                    **json_body(obj(["unsubscribed"], unsubscribed={"type": "string"})),
                },
                **errors(400, 404, 429),
            },
        },
    },
    "/api/v1/auth/password/forgot": {
        "post": {
            "summary": "Email a password-reset link (202 whether the account exists or not)",
            "requestBody": _body(
                obj(["email"], email={"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN})
            ),
            "responses": {"202": {"description": "accepted"}, **errors(400, 413, 429)},
        }
    },
    "/api/v1/auth/password/reset": {
        "post": {
            "summary": "Set a new password with a reset token; every sign-in ends",
            "requestBody": _body(
                obj(
                    ["token", "password"],
                    token=_string(1, 256),
                    password={"type": "string", "minLength": 8, "maxLength": 256},
                )
            ),
            "responses": {"204": {"description": "changed"}, **errors(400, 413, 429)},
        }
    },
    "/api/v1/auth/email/verify": {
        "post": {
            "summary": "Confirm the account's email address with the emailed token",
            "requestBody": _body(obj(["token"], token=_string(1, 256))),
            "responses": {"204": {"description": "verified"}, **errors(400, 413, 429)},
        }
    },
    "/api/v1/auth/email/verify-request": {
        "post": {
            "summary": "Email a new verification link to the caller",
            "security": _BEARER,
            "responses": {"202": {"description": "queued"}, **errors(401, 429)},
        }
    },
    "/api/v1/vendor/promotions": {
        "post": {
            "summary": "Send a promotion to followers and nearby users who opted in (capped)",
            "security": _BEARER,
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                }
            ],
            "requestBody": _body(
                obj(["title", "text"], title=_string(1, 120), text=_string(1, 1000))
            ),
            "responses": {
                "201": {
                    "description": "sent",
                    **json_body(obj(["promotion"], promotion={"type": "object"})),
                },
                **errors(400, 401, 403, 413, 429),
            },
        }
    },
}
