"""Vendor callers over REST: a vendor user's Bearer token, or an OAuth2 app token.

Endpoints: ``POST/GET /api/v1/vendor/apps``, ``DELETE /api/v1/vendor/apps/{client_id}`` (the
vendor user's own token only) and ``POST /api/v1/oauth/token`` with
``grant_type=client_credentials`` (form or JSON body, or HTTP Basic client authentication).
Apps and tokens themselves are services/vendor_apps.py.

``require_vendor(request, scope)`` is the one gate of every vendor endpoint: it accepts either
kind of token, checks that the app is not revoked and the scope is granted (user tokens hold
every scope), and returns the caller with its vendor (rule 7: the vendor is the caller's own,
never taken from the request). ``idempotency_key(request)`` reads ``Idempotency-Key``.
"""

from __future__ import annotations

import base64
from typing import Literal
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.http import parse_model, read_json
from gateway.input_guard import check_text, check_value
from models.auth import bearer_token
from models.errors import BadRequest, Forbidden, TooLarge, Unauthorized
from models.market import SCOPES
from services.market import Actor
from services.vendor_apps import VendorCaller


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 128:
        raise BadRequest("Idempotency-Key: 1 to 128 characters")
    return key


def actor(caller: VendorCaller, request: web.Request) -> Actor:
    """The vendor caller as a mutation actor, keyed by the request's ``Idempotency-Key``."""
    return caller.actor(idempotency_key(request))


async def require_vendor(request: web.Request, scope: str) -> VendorCaller:
    """The vendor calling (user or app token) holding ``scope``; else 401/403."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("missing Authorization: Bearer <token>")
    claims = request.app[SERVICES].app_tokens.decode(bearer_token(header))
    if claims is not None:
        caller = await request.app[SERVICES].app_tokens.caller(claims)
    else:
        principal = await require_principal(request)
        vendor = await request.app[SERVICES].market.vendor_of(principal.user_id)
        if vendor is None:
            raise Forbidden("you are not a vendor: POST /api/v1/vendors first")
        caller = VendorCaller(vendor, principal.user_id, frozenset(SCOPES))
    if scope not in caller.scopes:
        raise Forbidden(f"this token lacks the scope {scope!r}")
    return caller


async def require_vendor_user(request: web.Request, what: str = "manage apps") -> VendorCaller:
    """Only the vendor's own user token (it holds every scope): an app token is ``403``,
    "apps cannot ``what``" (managing apps, changing where payouts go: not for apps)."""
    header = request.headers.get("Authorization", "")
    if header and request.app[SERVICES].app_tokens.decode(bearer_token(header)) is not None:
        raise Forbidden(f"apps cannot {what}: use the vendor user's token")
    return await require_vendor(request, "hooks:write")


# -- REST ---------------------------------------------------------------------------------------
class AppBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field("app", min_length=1, max_length=100)
    scopes: list[Literal[SCOPES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(SCOPES), min_length=1, max_length=len(SCOPES)
    )
    """Omitted: every scope; given: at least one, each a known scope (an empty list or an
    empty name no longer quietly meant all of them)."""


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    grant_type: str = Field(max_length=64)
    client_id: str | None = Field(None, max_length=128)
    client_secret: str | None = Field(None, max_length=256)
    scope: str | None = Field(None, max_length=512)


async def create_app_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request)
    body = await read_json(request, AppBody)
    apps = request.app[SERVICES].vendor_apps
    return web.json_response(
        await apps.create(caller.vendor_id, body.name, body.scopes), status=201
    )


async def list_apps_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request)
    return web.json_response(
        {"items": await request.app[SERVICES].vendor_apps.list(caller.vendor_id)}
    )


async def revoke_app_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request)
    await request.app[SERVICES].vendor_apps.revoke(
        caller.vendor_id, request.match_info["client_id"]
    )
    return web.Response(status=204)


async def _token_body(request: web.Request) -> TokenBody:
    if request.content_type == "application/json":
        return await read_json(request, TokenBody)
    if request.content_length is not None and request.content_length > 8192:
        raise TooLarge("request body too large")
    raw = await request.read()
    try:
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("body is not a form") from None
    try:
        check_value(form, "form")
    except BadRequest:
        raise Unauthorized("bad client credentials") from None
    return parse_model(TokenBody, form)


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # non-ASCII input raises a plain ValueError (binascii.Error is one of its subclasses)
        client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
        check_text(client_id + secret, "client credentials")
    except (ValueError, UnicodeDecodeError, BadRequest):
        raise Unauthorized("bad client authentication") from None
    return client_id, secret


async def token_view(request: web.Request) -> web.Response:
    body = await _token_body(request)
    if body.grant_type != "client_credentials":
        raise BadRequest("grant_type: only client_credentials is supported")
    client_id, secret = _basic(request) or (body.client_id, body.client_secret)
    if not client_id or not secret:
        raise Unauthorized("client_id and client_secret are required")
    tokens = await request.app[SERVICES].app_tokens.exchange(client_id, secret, body.scope)
    return web.json_response(tokens, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/vendor/apps", create_app_view)
    app.router.add_get("/api/v1/vendor/apps", list_apps_view)
    app.router.add_delete("/api/v1/vendor/apps/{client_id}", revoke_app_view)
    app.router.add_post("/api/v1/oauth/token", token_view)
