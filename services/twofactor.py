"""Two-factor sign-in (TOTP, RFC 6238): setup, enable, disable, and the check at login.

``TwoFactor`` owns the ``user_totp`` and ``user_recovery_codes`` rows (store/migrations/
0007_security.sql). It guarantees: the seed is stored sealed (services/secrets.py, bound to its
user) and shown once, at setup; two-factor is on only after a first code checked; a TOTP code
is accepted once (the accepted time step is recorded with a compare-and-set, so of two
concurrent uses of one code exactly one succeeds), a recovery code once (``used_at`` set
conditionally); disabling needs a current code or a recovery code. The rules are models/totp.py.
"""

from __future__ import annotations

import time

import asyncpg

from models import totp
from models.errors import Conflict, OtpRequired, Unauthorized
from services.secrets import Keys


def _context(user_id: str) -> str:
    return f"totp:{user_id}"


class TwoFactor:
    """TOTP two-factor of every user (see module docstring)."""

    def __init__(self, db: asyncpg.Pool, keys: Keys) -> None:
        self.db = db
        self.keys = keys

    async def enabled(self, user_id: str) -> bool:
        value = await self.db.fetchval(
            "SELECT enabled_at IS NOT NULL FROM user_totp WHERE user_id = $1", user_id
        )
        return bool(value)

    async def setup(self, user_id: str, account: str) -> dict[str, str]:
        """A new seed for ``user_id`` (replacing one set up but never enabled)."""
        secret = totp.new_secret()
        sealed = self.keys.seal(secret, _context(user_id))
        status = await self.db.execute(
            "INSERT INTO user_totp (user_id, secret) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, last_step = 0,"
            " created_at = now() WHERE user_totp.enabled_at IS NULL",
            user_id,
            sealed,
        )
        if status.endswith(" 0"):
            raise Conflict("two-factor is already on: disable it first")
        return {"secret": secret, "otpauth_uri": totp.otpauth_uri(secret, account)}

    async def enable(self, user_id: str, otp: str) -> dict[str, list[str]]:
        """Turn two-factor on with a first code; the recovery codes, shown this once."""
        row = await self.db.fetchrow(
            "SELECT secret, enabled_at, last_step FROM user_totp WHERE user_id = $1", user_id
        )
        if row is None:
            raise Conflict("set two-factor up first: POST /api/v1/auth/2fa/setup")
        if row["enabled_at"] is not None:
            raise Conflict("two-factor is already on")
        if not await self._take_totp(user_id, row, otp):
            raise Unauthorized("wrong one-time code")
        codes = totp.new_recovery_codes()
        async with self.db.acquire() as conn, conn.transaction():
            done = await conn.execute(
                "UPDATE user_totp SET enabled_at = now() WHERE user_id = $1 AND enabled_at IS NULL",
                user_id,
            )
            if done.endswith(" 0"):
                raise Conflict("two-factor is already on")
            await conn.execute("DELETE FROM user_recovery_codes WHERE user_id = $1", user_id)
            await conn.executemany(
                "INSERT INTO user_recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                [(user_id, totp.recovery_digest(user_id, c)) for c in codes],
            )
        return {"recovery_codes": codes}

    async def disable(self, user_id: str, otp: str) -> None:
        if not await self.enabled(user_id):
            raise Conflict("two-factor is not on")
        if not await self.check(user_id, otp):
            raise Unauthorized("wrong one-time code")
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM user_totp WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM user_recovery_codes WHERE user_id = $1", user_id)

    async def require(self, user_id: str, otp: str | None) -> None:
        """At login, after the password checked: pass if two-factor is off or ``otp`` is
        good (and now used); ``otp_required`` without one, ``unauthorized`` for a wrong one."""
        if not await self.enabled(user_id):
            return
        if not otp:
            raise OtpRequired("this account has two-factor sign-in: send otp")
        if not await self.check(user_id, otp):
            raise Unauthorized("wrong one-time code")

    async def check(self, user_id: str, otp: str) -> bool:
        """Use ``otp`` (a TOTP code or a recovery code) of an enabled user, once."""
        row = await self.db.fetchrow(
            "SELECT secret, enabled_at, last_step FROM user_totp WHERE user_id = $1", user_id
        )
        if row is None or row["enabled_at"] is None:
            return False
        if totp.looks_like_totp(otp.strip()):
            return await self._take_totp(user_id, row, otp.strip())
        code = totp.normalize_recovery(otp)
        if code is None:
            return False
        status = await self.db.execute(
            "UPDATE user_recovery_codes SET used_at = now()"
            " WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            user_id,
            totp.recovery_digest(user_id, code),
        )
        return status.endswith(" 1")

    async def _take_totp(self, user_id: str, row: asyncpg.Record, code: str) -> bool:
        secret = self.keys.open(row["secret"], _context(user_id))
        step = totp.match_step(secret, code, time.time(), row["last_step"])
        if step is None:
            return False
        status = await self.db.execute(  # compare-and-set: a code (or an older one) works once
            "UPDATE user_totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2",
            user_id,
            step,
        )
        return status.endswith(" 1")
