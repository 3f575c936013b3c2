"""Identity rules: who a caller is (``Principal``), how access tokens are made and checked,
what a valid account looks like. Pure: no I/O; the gateway's AuthService does the storage.

Access tokens are JWTs signed with exactly one algorithm (HS256) by the current key of a key
ring (models/keyring.py), named in the header's ``kid``; every key of the ring verifies, so a
rotation leaves tokens signed before it good until they expire. Verification pins the
algorithm (so ``alg: none`` and algorithm swaps are refused), needs a known ``kid``, requires
exp, iat, aud, iss, sub and sid, and refuses a lifetime beyond the configured one. ``sid``
names the refresh-token family (one sign-in); revoking the family ends the access tokens and
sockets that carry it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from models.errors import BadRequest, Unauthorized
from models.keyring import KeyRing

ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["exp", "iat", "aud", "iss", "sub", "sid"]
_NOT_IN_EMAIL = r"@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
EMAIL_PATTERN = rf"^[^{_NOT_IN_EMAIL}]{{1,64}}@[^{_NOT_IN_EMAIL}]+\.[^{_NOT_IN_EMAIL}]+$"
"""An email address as accepted: no @ but one, no control or space character of any kind,
spelled out (so Python, the pydantic validator and JSON Schema read it alike); the OpenAPI
spec says the same."""
_EMAIL = re.compile(EMAIL_PATTERN)

PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 256
DISPLAY_NAME_MAX_CHARS = 64


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the user, their roles and the sign-in (token family) used."""

    user_id: str
    roles: frozenset[str]
    session_id: str

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "roles": sorted(self.roles), "sid": self.session_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        return cls(str(data["user_id"]), frozenset(data.get("roles", ())), str(data["sid"]))


class RingSource(Protocol):
    """Where a codec finds its keys: ``ring``, and ``knows(kid)`` (which may re-read it)."""

    @property
    def ring(self) -> KeyRing: ...

    def knows(self, kid: object) -> bool: ...


class FixedRing:
    """A ring that never changes (a key given as text, tests)."""

    __slots__ = ("ring",)

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def knows(self, kid: object) -> bool:
        return kid in self.ring


def ring_source(keys: str | KeyRing | RingSource) -> RingSource:
    if isinstance(keys, str):
        return FixedRing(KeyRing.of_secrets(keys))
    if isinstance(keys, KeyRing):
        return FixedRing(keys)
    return keys


def sign(claims: dict[str, Any], keys: RingSource) -> str:
    """``claims`` signed with the current key, its id in the header."""
    key = keys.ring.current
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def key_of(token: str, keys: RingSource) -> str:
    """The key that verifies ``token``: the one its header names (``Unauthorized`` if none)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("invalid access token") from None
    if not keys.knows(kid):
        raise Unauthorized("invalid access token: unknown signing key")
    key = keys.ring.get(kid)
    assert key is not None
    return key.secret


class TokenCodec:
    """Issues and verifies access tokens: a key ring, one algorithm, every claim required."""

    def __init__(
        self, keys: str | KeyRing | RingSource, issuer: str, audience: str, ttl_s: int
    ) -> None:
        self.keys = ring_source(keys)
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(self, principal: Principal, now: int) -> str:
        claims = {
            "sub": principal.user_id,
            "sid": principal.session_id,
            "roles": sorted(principal.roles),
            "iat": now,
            "exp": now + self.ttl_s,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return sign(claims, self.keys)

    def verify(self, token: str) -> Principal:
        """The token's principal, or ``Unauthorized`` saying (briefly) what was wrong."""
        key = key_of(token, self.keys)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token expired") from None
        except (jwt.InvalidTokenError, ValueError):  # incl. undecodable bytes in the token
            raise Unauthorized("invalid access token") from None
        check_lifetime(claims, self.ttl_s)
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthorized("invalid access token")
        if not isinstance(claims["sid"], str):
            raise Unauthorized("invalid access token")
        return Principal(claims["sub"], frozenset(roles), claims["sid"])


CLOCK_SKEW_S = 60
"""How far in the future a token's ``iat`` may be (another gateway's clock)."""


def check_lifetime(claims: dict[str, Any], max_ttl_s: int, now: float | None = None) -> None:
    """Refuse a validly signed token that lives longer than this deployment issues them
    (``exp - iat`` beyond ``max_ttl_s``) or claims to be issued in the future: a leaked key's
    forgery, or a token minted by a misconfigured issuer, is not good for thirty years."""
    iat, exp = claims.get("iat"), claims.get("exp")
    if type(iat) is not int or type(exp) is not int:
        raise Unauthorized("invalid access token")
    now = time.time() if now is None else now
    if exp - iat > max_ttl_s or iat > now + CLOCK_SKEW_S:
        raise Unauthorized("invalid access token: lifetime beyond the maximum")


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected Authorization: Bearer <token>")
    return token.strip()


def new_secret_token() -> str:
    """A refresh token or ticket: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored instead of a refresh token (a leaked table grants nothing)."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    value = email.strip()
    if len(value) > 254 or not _EMAIL.match(value):
        raise BadRequest("email: not a valid address")
    return value.lower()


def check_password(password: str) -> None:
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise BadRequest(
            f"password: must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        )


def clean_display_name(name: str) -> str:
    value = unicodedata.normalize("NFC", name).strip()
    if not 1 <= len(value) <= DISPLAY_NAME_MAX_CHARS:
        raise BadRequest(f"display_name: must be 1 to {DISPLAY_NAME_MAX_CHARS} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise BadRequest("display_name: control characters are not allowed")
    return value
