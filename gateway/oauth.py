"""Vendor callers: a vendor user's Bearer token, or an OAuth2 client-credentials app token.

A vendor registers apps (``POST /api/v1/vendor/apps`` → ``{client_id, client_secret}``; the
secret is shown once and stored as its sha256). ``POST /api/v1/oauth/token`` with
``grant_type=client_credentials`` (form or JSON body, or HTTP Basic client authentication)
issues an access token: an HS256 JWT with its own audience (``<jwt_audience>:vendor-app``), so
it can never pass as a user token (nor open a websocket), carrying the app's scopes.

``require_vendor(request, scope)`` is the one gate of every vendor endpoint: it accepts either
kind of token, checks that the app is not revoked and the scope is granted (user tokens hold
every scope), and returns the caller with its vendor (rule 7: the vendor is the caller's own,
never taken from the request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import jwt
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from cluster.config import Settings
from gateway.auth import require_principal
from gateway.context import DB, SETTINGS
from gateway.http import parse_model, read_json
from gateway.market_context import APP_TOKENS
from gateway.market_service import Actor, fresh_key
from models.auth import ALGORITHM, bearer_token
from models.errors import BadRequest, Forbidden, NotFound, TooLarge, Unauthorized
from models.market import SCOPES, parse_scopes
from store import market_store as ms


@dataclass(frozen=True)
class VendorCaller:
    vendor: dict[str, Any]
    user_id: str
    """The vendor's user (its own token) or ``app:<client_id>`` (idempotency namespace)."""
    scopes: frozenset[str]
    client_id: str | None = None

    def actor(self, request: web.Request) -> Actor:
        """The caller as a mutation actor, keyed by ``Idempotency-Key`` when given."""
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 128:
            raise BadRequest("Idempotency-Key: 1 to 128 characters")
        return Actor(self.user_id, key or fresh_key(), self.vendor)


# An active app with its vendor's owner: a disabled (banned) owner's apps neither mint tokens
# nor act on tokens minted before the ban.
_APP_SQL = (
    "SELECT a.vendor_id, a.secret_hash, a.scopes, u.disabled_at IS NOT NULL AS owner_disabled"
    " FROM vendor_apps a JOIN vendors v ON v.id = a.vendor_id JOIN users u ON u.id = v.user_id"
    " WHERE a.client_id = $1 AND a.revoked_at IS NULL"
)
_OWNER_DISABLED = "the vendor's account is disabled"


class AppTokens:
    """Issues and verifies vendor app tokens (one key, one algorithm, every claim required)."""

    def __init__(self, settings: Settings, db: asyncpg.Pool) -> None:
        self._key = settings.signing_key()
        self._issuer = settings.jwt_issuer
        self._audience = f"{settings.jwt_audience}:vendor-app"
        self._ttl_s = settings.app_token_ttl_s
        self._db = db

    def issue(self, client_id: str, vendor_id: str, scopes: tuple[str, ...]) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "sub": client_id,
            "vendor": vendor_id,
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + self._ttl_s,
            "iss": self._issuer,
            "aud": self._audience,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self._ttl_s,
            "scope": " ".join(scopes),
        }

    def decode(self, token: str) -> dict[str, Any] | None:
        """The claims of an app token; None if it is not one (e.g. a user token)."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.InvalidTokenError, ValueError):  # ValueError: e.g. a non-UTF-8 header byte
            raise Unauthorized("invalid access token") from None
        if unverified.get("aud") != self._audience:
            return None  # not an app token: the caller tries it as a user token
        try:
            return dict(
                jwt.decode(
                    token,
                    self._key,
                    algorithms=[ALGORITHM],
                    audience=self._audience,
                    issuer=self._issuer,
                    options={"require": ["exp", "iat", "aud", "iss", "sub", "vendor", "scope"]},
                )
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token expired") from None
        except (jwt.InvalidTokenError, ValueError):
            raise Unauthorized("invalid access token") from None

    async def caller(self, claims: dict[str, Any]) -> VendorCaller:
        row = await self._db.fetchrow(_APP_SQL, claims["sub"])
        if row is None or row["vendor_id"] != claims["vendor"]:
            raise Unauthorized("this app has been revoked")
        if row["owner_disabled"]:
            raise Unauthorized(_OWNER_DISABLED)
        vendor = await ms.vendor_by_id(self._db, row["vendor_id"])
        if vendor is None:
            raise Unauthorized("this app has been revoked")
        scopes = frozenset(str(claims["scope"]).split()) & frozenset(row["scopes"])
        return VendorCaller(vendor, f"app:{claims['sub']}", scopes, str(claims["sub"]))


async def require_vendor(request: web.Request, scope: str) -> VendorCaller:
    """The vendor calling (user or app token) holding ``scope``; else 401/403."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("missing Authorization: Bearer <token>")
    claims = request.app[APP_TOKENS].decode(bearer_token(header))
    if claims is not None:
        caller = await request.app[APP_TOKENS].caller(claims)
    else:
        principal = await require_principal(request)
        vendor = await ms.vendor_of_user(request.app[DB], principal.user_id)
        if vendor is None:
            raise Forbidden("you are not a vendor: POST /api/v1/vendors first")
        caller = VendorCaller(vendor, principal.user_id, frozenset(SCOPES))
    if scope not in caller.scopes:
        raise Forbidden(f"this token lacks the scope {scope!r}")
    return caller


async def require_vendor_user(request: web.Request) -> VendorCaller:
    """Only the vendor's own user token (managing apps is not for apps)."""
    header = request.headers.get("Authorization", "")
    if header and request.app[APP_TOKENS].decode(bearer_token(header)) is not None:
        raise Forbidden("apps cannot manage apps: use the vendor user's token")
    return await require_vendor(request, "hooks:write")


# -- REST ---------------------------------------------------------------------------------------
class AppBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("app", min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=lambda: list(SCOPES), max_length=len(SCOPES))


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    grant_type: str = Field(max_length=64)
    client_id: str | None = Field(None, max_length=128)
    client_secret: str | None = Field(None, max_length=256)
    scope: str | None = Field(None, max_length=512)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_app_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request)
    body = await read_json(request, AppBody)
    scopes = parse_scopes(" ".join(body.scopes), SCOPES)
    client_id, secret = f"app_{secrets.token_hex(12)}", secrets.token_urlsafe(32)
    await request.app[DB].execute(
        "INSERT INTO vendor_apps (client_id, vendor_id, secret_hash, name, scopes)"
        " VALUES ($1, $2, $3, $4, $5)",
        client_id,
        caller.vendor["id"],
        _digest(secret),
        body.name,
        list(scopes),
    )
    out = {"client_id": client_id, "client_secret": secret, "name": body.name, "scopes": scopes}
    return web.json_response(out, status=201)


async def list_apps_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request)
    rows = await request.app[DB].fetch(
        "SELECT client_id, name, scopes, created_at FROM vendor_apps WHERE vendor_id = $1"
        " AND revoked_at IS NULL ORDER BY created_at",
        caller.vendor["id"],
    )
    items = [
        {**dict(r), "scopes": list(r["scopes"]), "created_at": r["created_at"].isoformat()}
        for r in rows
    ]
    return web.json_response({"items": items})


async def revoke_app_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request)
    if not _credential(request.match_info["client_id"]):
        raise NotFound("no such app")
    done = await request.app[DB].fetchval(
        "UPDATE vendor_apps SET revoked_at = now() WHERE client_id = $1 AND vendor_id = $2"
        " AND revoked_at IS NULL RETURNING client_id",
        request.match_info["client_id"],
        caller.vendor["id"],
    )
    if done is None:
        raise NotFound("no such app")
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
    return parse_model(TokenBody, form)


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # non-ASCII input raises a plain ValueError (binascii.Error is one of its subclasses)
        client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("bad client authentication") from None
    return client_id, secret


def _credential(value: str | None) -> bool:
    """A client id or secret we could ever have issued: printable ASCII (no NUL, no surrogate,
    which Postgres and sha256 would refuse with an unhandled error), bounded."""
    return bool(value) and len(value) <= 256 and value.isascii() and value.isprintable()


async def token_view(request: web.Request) -> web.Response:
    body = await _token_body(request)
    if body.grant_type != "client_credentials":
        raise BadRequest("grant_type: only client_credentials is supported")
    client_id, secret = _basic(request) or (body.client_id, body.client_secret)
    if not client_id or not secret:
        raise Unauthorized("client_id and client_secret are required")
    if not (_credential(client_id) and _credential(secret)):
        raise Unauthorized("unknown client or wrong secret")
    row = await request.app[DB].fetchrow(_APP_SQL, client_id)
    expected = row["secret_hash"] if row else _digest("no-such-app")
    if not hmac.compare_digest(expected, _digest(secret)) or row is None:
        raise Unauthorized("unknown client or wrong secret")
    if row["owner_disabled"]:
        raise Unauthorized(_OWNER_DISABLED)
    scopes = parse_scopes(body.scope, tuple(row["scopes"]))
    tokens = request.app[APP_TOKENS].issue(client_id, row["vendor_id"], scopes)
    return web.json_response(tokens, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/vendor/apps", create_app_view)
    app.router.add_get("/api/v1/vendor/apps", list_apps_view)
    app.router.add_delete("/api/v1/vendor/apps/{client_id}", revoke_app_view)
    app.router.add_post("/api/v1/oauth/token", token_view)


async def oauth_ctx(app: web.Application) -> AsyncIterator[None]:
    app[APP_TOKENS] = AppTokens(app[SETTINGS], app[DB])
    yield


CONTEXTS = [oauth_ctx]
