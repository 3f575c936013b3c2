"""Password reset and email verification, both by email (PROTOCOL.md "Notifications").

A token is 32 random bytes (URL-safe); only its SHA-256 digest is stored (``account_tokens``),
with its purpose and expiry (``account_token_ttl_s``). It works once: using it marks it used
in the transaction that acts on it. ``forgot`` answers the same (202) whether the address has
an account or not, and queues the email through the notifier's outbox (retried like every
email), the token sealed in the row. A reset replaces the password and revokes every sign-in
of the user (their sockets close) and, as it proves the address, verifies it; verification
stamps ``users.email_verified_at``.

A signup of a taken address (services/accounts.py ``Signup.taken_by``) emails no link: the
address's owner gets ``account.signup_attempt`` instead (at most one an hour), and the new
account, which does not claim the address, can never be verified by it.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from cluster.config import Settings
from models.auth import new_secret_token, normalize_email, token_digest
from models.errors import BadRequest
from models.ids import new_id
from services.accounts import AuthService
from services.notify_links import Links
from store import notifications_store as st
from store import users
from store.db import Conn

log = logging.getLogger("hyperlocal.accounts")

_PATHS = {"password_reset": "/reset-password", "email_verify": "/verify-email"}
_NOTICE_EVERY_S = 3600  # one "someone signed up with your address" email per owner per hour


class AccountEmails:
    """Issues and redeems the single-use tokens of account emails."""

    def __init__(
        self, settings: Settings, db: asyncpg.Pool, auth: AuthService, links: Links
    ) -> None:
        self.settings = settings
        self.db = db
        self.auth = auth
        self.links = links

    async def _issue(self, conn: Conn, user_id: str, purpose: str) -> None:
        token = new_secret_token()
        ttl = self.settings.account_token_ttl_s
        await conn.execute(
            "INSERT INTO account_tokens (digest, user_id, purpose, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            token_digest(token),
            user_id,
            purpose,
            ttl,
        )
        source = f"account:{purpose}:{new_id()}"
        link = self.links.app_url(_PATHS[purpose]) + f"#token={token}"
        payload = self.links.seal_account_payload(
            source, {"token": token, "link": link, "valid_min": ttl // 60}
        )
        await st.enqueue(conn, user_id, f"account.{purpose}", "email", source, payload)

    async def forgot(self, email: str) -> None:
        """Queue a reset email if ``email`` has an account; the same outcome either way."""
        user = await users.by_email(self.db, normalize_email(email))
        if user is None or user.disabled:
            log.info("password reset asked for an address without an active account")
            return
        async with self.db.acquire() as conn, conn.transaction():
            await self._issue(conn, user.id, "password_reset")

    async def request_verification(self, user_id: str) -> None:
        """Email a verification link, if the account claims its address (one whose signup
        found the address taken never gets one: its owner would be verifying a stranger)."""
        async with self.db.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                "SELECT email_norm IS NOT NULL FROM users WHERE id = $1", user_id
            )
            if claimed:
                await self._issue(conn, user_id, "email_verify")

    async def after_signup(self, user_id: str, taken_by: str | None) -> None:
        """What a signup emails: a verification link to a new address, or, when the address
        was taken, a word to its owner (the link to reset the password if it was them)."""
        if taken_by is None:
            await self.request_verification(user_id)
            return
        bucket = int(time.time()) // _NOTICE_EVERY_S
        source = f"account:signup_attempt:{taken_by}:{bucket}"
        payload = self.links.seal_account_payload(
            source, {"link": self.links.app_url(_PATHS["password_reset"])}
        )
        async with self.db.acquire() as conn:
            await st.enqueue(conn, taken_by, "account.signup_attempt", "email", source, payload)

    async def _redeem(self, conn: Conn, token: str, purpose: str) -> str:
        user_id = await conn.fetchval(
            "UPDATE account_tokens SET used_at = now() WHERE digest = $1 AND purpose = $2"
            " AND used_at IS NULL AND expires_at > now() RETURNING user_id",
            token_digest(token),
            purpose,
        )
        if user_id is None:
            raise BadRequest("this link is not valid: used, expired or unknown")
        return str(user_id)

    async def reset(self, token: str, password: str) -> None:
        """A new password; every sign-in of the user ends (their sockets close)."""
        async with self.db.acquire() as conn, conn.transaction():
            user_id = await self._redeem(conn, token, "password_reset")
            families = await self.auth.replace_password(conn, user_id, password)
            await conn.execute(  # the link reached the address: it is the user's
                "UPDATE users SET email_verified_at = coalesce(email_verified_at, now())"
                " WHERE id = $1 AND email_norm IS NOT NULL",
                user_id,
            )
            await conn.execute(  # every other reset link of the user dies with this one
                "UPDATE account_tokens SET used_at = now() WHERE user_id = $1"
                " AND purpose = 'password_reset' AND used_at IS NULL",
                user_id,
            )
        await self.auth.end_sign_ins(user_id, families)

    async def verify(self, token: str) -> None:
        async with self.db.acquire() as conn, conn.transaction():
            user_id = await self._redeem(conn, token, "email_verify")
            await conn.execute(
                "UPDATE users SET email_verified_at = coalesce(email_verified_at, now())"
                " WHERE id = $1",
                user_id,
            )
