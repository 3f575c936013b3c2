"""Accounts and sign-in: the ``AuthService`` (its REST adapters are gateway/auth.py).

The service owns: password hashing (argon2id, in worker threads, at most ``hash_concurrency``
at once so the event loop never waits on it), access tokens (models.auth.TokenCodec), refresh
token families (store/users.py: rotation with reuse detection) and websocket tickets (Redis,
single use via GETDEL, ``ws_ticket_ttl_s``).

Every authenticated request is checked against Postgres, the durable truth: a token whose
sign-in was revoked (logout, refresh-token reuse) or whose user is disabled is refused at once,
not when it expires. Ending a sign-in also closes its sockets on every gateway (a
``session.revoked`` control message; the local gateway closes its own directly).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from cluster.config import Settings
from models.auth import (
    EMAIL_PATTERN,
    PASSWORD_MAX_CHARS,
    PASSWORD_MIN_CHARS,
    Principal,
    TokenCodec,
    bearer_token,
    check_password,
    clean_display_name,
    new_secret_token,
    normalize_email,
    token_digest,
)
from models.errors import BadRequest, Forbidden, OtpRequired, Unauthorized, Unavailable
from models.ids import new_id
from services.secrets import Keys
from services.throttle import LoginThrottle
from services.twofactor import TwoFactor
from store import users
from store.db import Conn
from store.fanout import CONTROL_CHANNEL
from store.users import UserRow

log = logging.getLogger("hyperlocal.auth")

_TICKET_PREFIX = "hl:ticket:"
_WRONG = "wrong email or password"


def suspended_error(until: datetime | None, action_id: str | None = None) -> Forbidden:
    """What a suspended user's requests answer: ``403`` with ``{reason: "suspended", until,
    action_id}`` (the suspension to appeal, ``POST /api/v1/appeals``)."""
    return Forbidden(
        "this account is suspended",
        reason="suspended",
        until=until.isoformat() if until is not None else None,
        action_id=action_id,
    )


class SignupBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=PASSWORD_MIN_CHARS, max_length=PASSWORD_MAX_CHARS)
    display_name: str = Field(max_length=200)


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    password: str = Field(max_length=256)
    otp: str | None = Field(None, max_length=32)
    """A current TOTP code (6 digits) or one recovery code, once two-factor is on."""


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    refresh_token: str = Field(min_length=1, max_length=256)


@dataclass(frozen=True, slots=True)
class Signup:
    """A signup's outcome: the new account, its tokens, and the account that already claimed
    the address (None when this one claims it). ``taken_by`` never reaches the caller."""

    user: UserRow
    tokens: dict[str, str]
    taken_by: str | None


class AuthService:
    """Sign-up, sign-in, token rotation, sign-out and websocket tickets. See module docstring."""

    def __init__(
        self,
        settings: Settings,
        db: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        on_revoked: Callable[[str, str], object] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis
        self.keys = keys
        self.codec = TokenCodec(
            keys.jwt,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.access_ttl_s,
        )
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._hashing = asyncio.Semaphore(settings.hash_concurrency)
        self._on_revoked = on_revoked
        self._dummy_hash: str | None = None
        self.throttle = LoginThrottle(settings, redis)
        self.twofactor = TwoFactor(db, keys)

    # -- passwords (off the loop) ---------------------------------------------------------------
    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hashing:
            return await asyncio.to_thread(self._verify_sync, password_hash, password)

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    # -- sign-up and sign-in -------------------------------------------------------------------
    async def signup(self, body: SignupBody, address: str = "") -> Signup:
        """A new account, signed in, whether the address is free or not: the answer, its
        shape and its work (one hash, one insert, one sign-in) are the same, so a signup
        tells nobody which emails have accounts. A taken address gives an account that does
        not claim it (``Signup.taken_by`` names the owner, whom services/account_email.py
        tells instead of verifying); see docs/security.md "Signup and enumeration"."""
        email_norm = normalize_email(body.email)
        check_password(body.password)
        name = clean_display_name(body.display_name)
        await self.throttle.check("", address)
        password_hash = await self._hash(body.password)
        user, taken_by = await users.create_user(
            self.db, new_id(), body.email.strip(), email_norm, password_hash, name
        )
        log.info("user signed up", extra={"user_id": user.id, "claimed": taken_by is None})
        return Signup(user, await self._start_sign_in(user), taken_by)

    async def login(self, body: LoginBody, address: str = "") -> tuple[UserRow, dict[str, str]]:
        """Email, password and (once two-factor is on) ``otp``. An unknown email and a wrong
        password get the same answer after the same work; failures are throttled per account
        and per ``address`` (services/throttle.py), the right password included."""
        email_norm = normalize_email(body.email)
        await self.throttle.check(email_norm, address)
        user = await users.by_email(self.db, email_norm)
        if user is None:
            # Spend the same time as a real check so timing does not reveal which emails exist.
            await self._verify(await self._dummy(), body.password)
            await self.throttle.failed(email_norm, address)
            raise Unauthorized(_WRONG)
        if not await self._verify(user.password_hash, body.password):
            await self.throttle.failed(email_norm, address)
            raise Unauthorized(_WRONG)
        if self.settings.login_needs_verified_email and not user.email_verified:
            # Answered as a wrong password: before its link is followed, an address someone
            # signed up with is not known to be theirs (and a taken one must look the same).
            await self.throttle.failed(email_norm, address)
            raise Unauthorized(_WRONG)
        if user.disabled:
            raise await self._suspended(user.id)
        try:
            await self.twofactor.require(user.id, body.otp)
        except OtpRequired:
            raise
        except Unauthorized:
            await self.throttle.failed(email_norm, address)
            raise
        await self.throttle.passed(email_norm)
        if self.hasher.check_needs_rehash(user.password_hash):
            await users.update_password_hash(self.db, user.id, await self._hash(body.password))
        return user, await self._start_sign_in(user)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(new_secret_token())
        return self._dummy_hash

    async def _start_sign_in(self, user: UserRow) -> dict[str, str]:
        family_id, refresh = new_id(), new_secret_token()
        await users.start_family(
            self.db, family_id, user.id, token_digest(refresh), self.settings.refresh_ttl_s
        )
        return {"access_token": self._access(user, family_id), "refresh_token": refresh}

    def _access(self, user: UserRow, family_id: str) -> str:
        principal = Principal(user.id, frozenset(user.roles), family_id)
        return self.codec.issue(principal, int(time.time()))

    async def refresh(self, body: RefreshBody) -> dict[str, str]:
        new_refresh = new_secret_token()
        outcome = await users.rotate(
            self.db, token_digest(body.refresh_token), token_digest(new_refresh)
        )
        if outcome.reused:
            log.warning("refresh token reuse: family revoked", extra={"family": outcome.family_id})
            if outcome.family_id:
                await self._announce_revoked(None, outcome.family_id)
            raise Unauthorized("refresh token already used: this sign-in has been revoked")
        if outcome.user is None or outcome.family_id is None:
            raise Unauthorized("refresh token is not valid")
        if outcome.user.disabled:
            raise await self._suspended(outcome.user.id)
        return {
            "access_token": self._access(outcome.user, outcome.family_id),
            "refresh_token": new_refresh,
        }

    async def logout(self, principal: Principal) -> None:
        await users.revoke_family(self.db, principal.session_id, "logout")
        await self._announce_revoked(principal.user_id, principal.session_id)

    async def replace_password(self, conn: Conn, user_id: str, password: str) -> list[str]:
        """A new password for ``user_id`` in the caller's transaction (hashed off the loop),
        and every sign-in of the user revoked (their ids: ``end_sign_ins`` closes their
        sockets once the transaction has committed)."""
        check_password(password)
        password_hash = await self._hash(password)
        await conn.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash
        )
        rows = await conn.fetch(
            "UPDATE token_families SET revoked_at = now(), revoked_reason = 'password_reset'"
            " WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
            user_id,
        )
        return [r["id"] for r in rows]

    async def end_sign_ins(self, user_id: str, families: list[str]) -> None:
        """Close the sockets of these (revoked) sign-ins here and on every gateway."""
        for family_id in families:
            await self._announce_revoked(user_id, family_id)

    async def _announce_revoked(self, user_id: str | None, family_id: str) -> None:
        """Close the sign-in's sockets here and, through Redis, on every other gateway."""
        if user_id is None:
            user_id = await self.db.fetchval(
                "SELECT user_id FROM token_families WHERE id = $1", family_id
            )
            if user_id is None:
                return
        if self._on_revoked is not None:
            self._on_revoked(user_id, family_id)
        message = {"kind": "session.revoked", "user_id": user_id, "session_id": family_id}
        try:
            await self.redis.publish(CONTROL_CHANNEL, json.dumps(message))
        except (RedisError, OSError) as exc:
            log.warning("session.revoked not broadcast (other gateways keep sockets): %r", exc)

    # -- checking callers ----------------------------------------------------------------------
    async def authenticate_bearer(self, header: str) -> Principal:
        return await self._check_live(self.codec.verify(bearer_token(header)))

    async def _check_live(self, principal: Principal) -> Principal:
        """The principal with its roles as Postgres has them now (a role change takes effect
        at once); ``unauthorized`` for an ended sign-in, ``forbidden`` while suspended."""
        try:
            state = await users.sign_in_state(self.db, principal.session_id, principal.user_id)
        except (asyncpg.PostgresError, OSError) as exc:
            raise Unavailable("cannot check the sign-in right now") from exc
        if not state.live:
            raise Unauthorized("this sign-in has ended")
        if state.suspended:
            raise await self._suspended(principal.user_id)
        if frozenset(state.roles) != principal.roles:
            return Principal(principal.user_id, frozenset(state.roles), principal.session_id)
        return principal

    async def _suspended(self, user_id: str) -> Forbidden:
        _, until, action_id = await users.suspended_until(self.db, user_id)
        return suspended_error(until, action_id)

    async def check_credentials(self, email: str, password: str, address: str = "") -> UserRow:
        """The user with this email and password, suspended or not (appeals), else
        ``unauthorized`` (the same answer, and time, for an unknown email; an address that
        is not one is a credential that is wrong, not a bad request); throttled like a
        sign-in (it is a password check all the same)."""
        try:
            email_norm = normalize_email(email)
        except BadRequest:
            raise Unauthorized(_WRONG) from None
        await self.throttle.check(email_norm, address)
        user = await users.by_email(self.db, email_norm)
        if user is None:
            await self._verify(await self._dummy(), password)
            await self.throttle.failed(email_norm, address)
            raise Unauthorized(_WRONG)
        if not await self._verify(user.password_hash, password):
            await self.throttle.failed(email_norm, address)
            raise Unauthorized(_WRONG)
        return user

    async def issue_ticket(self, principal: Principal) -> dict[str, Any]:
        ticket = new_secret_token()
        ttl = self.settings.ws_ticket_ttl_s
        try:
            await self.redis.set(
                _TICKET_PREFIX + token_digest(ticket), json.dumps(principal.to_dict()), ex=ttl
            )
        except (RedisError, OSError) as exc:
            raise Unavailable("tickets are unavailable right now; use a Bearer header") from exc
        return {"ticket": ticket, "expires_in": ttl}

    async def consume_ticket(self, ticket: str) -> Principal:
        if len(ticket) > 256 or not (ticket.isascii() and ticket.isprintable()):
            raise Unauthorized("invalid ticket")
        try:
            raw = await self.redis.getdel(_TICKET_PREFIX + token_digest(ticket))
        except (RedisError, OSError) as exc:
            raise Unavailable("tickets are unavailable right now; use a Bearer header") from exc
        if raw is None:
            raise Unauthorized("ticket unknown, expired or already used")
        return await self._check_live(Principal.from_dict(json.loads(raw)))
