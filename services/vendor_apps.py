"""Vendor apps (OAuth2 client credentials) and the tokens they get; REST is gateway/oauth.py.

A vendor registers apps (``{client_id, client_secret}``; the secret is shown once and stored as
its sha256). ``AppTokens.exchange`` checks a client's credentials and issues an access token:
an HS256 JWT with its own audience (``<jwt_audience>:vendor-app``), so it can never pass as a
user token (nor open a websocket), carrying the app's scopes. ``AppTokens.caller`` turns a
verified token back into its ``VendorCaller``, refusing revoked apps and disabled owners.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt

from cluster.config import Settings
from models.auth import ALGORITHM, RingSource, check_lifetime, key_of, sign
from models.errors import NotFound, Unauthorized
from models.market import SCOPES, parse_scopes
from services.market import Actor, fresh_key
from store import market_store as ms


@dataclass(frozen=True)
class VendorCaller:
    """Who is calling a vendor endpoint: the vendor, the idempotency namespace, the scopes."""

    vendor: dict[str, Any]
    user_id: str
    """The vendor's user (its own token) or ``app:<client_id>`` (idempotency namespace)."""
    scopes: frozenset[str]
    client_id: str | None = None

    @property
    def vendor_id(self) -> str:
        return str(self.vendor["id"])

    def actor(self, key: str | None) -> Actor:
        """The caller as a mutation actor, keyed by the client's key when given (a REST call
        without ``Idempotency-Key`` gets a fresh one: no retry protection)."""
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

    def __init__(self, settings: Settings, db: asyncpg.Pool, keys: RingSource) -> None:
        self._keys = keys
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
        token = sign(claims, self._keys)
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
        key = key_of(token, self._keys)
        try:
            claims = dict(
                jwt.decode(
                    token,
                    key,
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
        check_lifetime(claims, self._ttl_s)
        return claims

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

    async def exchange(self, client_id: str, secret: str, scope: str | None) -> dict[str, Any]:
        """Client credentials for an access token; the same answer for an unknown client and a
        wrong secret, in the same time (a digest is compared either way)."""
        if not (credential(client_id) and credential(secret)):
            raise Unauthorized("unknown client or wrong secret")
        row = await self._db.fetchrow(_APP_SQL, client_id)
        expected = row["secret_hash"] if row else _digest("no-such-app")
        if not hmac.compare_digest(expected, _digest(secret)) or row is None:
            raise Unauthorized("unknown client or wrong secret")
        if row["owner_disabled"]:
            raise Unauthorized(_OWNER_DISABLED)
        scopes = parse_scopes(scope, tuple(row["scopes"]))
        return self.issue(client_id, row["vendor_id"], scopes)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def credential(value: str | None) -> bool:
    """A client id or secret we could ever have issued: printable ASCII (no NUL, no surrogate,
    which Postgres and sha256 would refuse with an unhandled error), bounded."""
    if not value:
        return False
    return len(value) <= 256 and value.isascii() and value.isprintable()


class VendorApps:
    """A vendor's registered apps: create (the secret is returned once), list, revoke."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self._db = db

    async def create(self, vendor_id: str, name: str, scopes: list[str]) -> dict[str, Any]:
        granted = parse_scopes(" ".join(scopes), SCOPES)
        client_id, secret = f"app_{secrets.token_hex(12)}", secrets.token_urlsafe(32)
        await self._db.execute(
            "INSERT INTO vendor_apps (client_id, vendor_id, secret_hash, name, scopes)"
            " VALUES ($1, $2, $3, $4, $5)",
            client_id,
            vendor_id,
            _digest(secret),
            name,
            list(granted),
        )
        return {"client_id": client_id, "client_secret": secret, "name": name, "scopes": granted}

    async def list(self, vendor_id: str) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            "SELECT client_id, name, scopes, created_at FROM vendor_apps WHERE vendor_id = $1"
            " AND revoked_at IS NULL ORDER BY created_at",
            vendor_id,
        )
        return [
            {**dict(r), "scopes": list(r["scopes"]), "created_at": r["created_at"].isoformat()}
            for r in rows
        ]

    async def revoke(self, vendor_id: str, client_id: str) -> None:
        if not credential(client_id):
            raise NotFound("no such app")
        done = await self._db.fetchval(
            "UPDATE vendor_apps SET revoked_at = now() WHERE client_id = $1 AND vendor_id = $2"
            " AND revoked_at IS NULL RETURNING client_id",
            client_id,
            vendor_id,
        )
        if done is None:
            raise NotFound("no such app")
