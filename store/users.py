"""Users and refresh-token families in Postgres.

A family is one sign-in. Each refresh marks the presented token used and inserts its successor
in one transaction; the conditional UPDATE makes "use once" atomic, so of two concurrent
refreshes with one token exactly one succeeds and the other is treated as reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from models.errors import Conflict
from store.db import Conn, Db


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    email: str
    display_name: str
    roles: tuple[str, ...]
    created_at: datetime
    password_hash: str
    disabled: bool
    email_verified: bool = False
    claimed: bool = True
    """False for an account whose signup found its address taken (docs/security.md)."""

    def public(self) -> dict[str, Any]:
        """The user as clients see it (PROTOCOL.md ``user``)."""
        return {
            "id": self.id,
            "email": self.email,
            "display_name": self.display_name,
            "roles": list(self.roles),
            "created_at": self.created_at.isoformat(),
        }


_USER_COLUMNS = (
    "id, email, display_name, roles, created_at, password_hash, disabled_at,"
    " email_verified_at IS NOT NULL AS email_verified, email_norm IS NOT NULL AS claimed"
)


def _user(row: asyncpg.Record | None) -> UserRow | None:
    if row is None:
        return None
    return UserRow(
        row["id"],
        row["email"],
        row["display_name"],
        tuple(row["roles"]),
        row["created_at"],
        row["password_hash"],
        row["disabled_at"] is not None,
        row["email_verified"],
        row["claimed"],
    )


async def create_user(
    db: Db,
    user_id: str,
    email: str,
    email_norm: str,
    password_hash: str,
    display_name: str,
) -> tuple[UserRow, str | None]:
    """A new account, and the id of the account that already claims ``email_norm`` (None: this
    one claims it). Either way one statement does the same work: a taken address gives an
    account that does not claim it (``email_norm`` NULL, migration 0019). Two signups of a
    free address at once: the loser's unique violation retries and finds the winner."""
    for _ in range(2):
        try:
            row = await db.fetchrow(
                f"""WITH owner AS (SELECT id FROM users WHERE email_norm = $3),
                    ins AS (
                        INSERT INTO users (id, email, email_norm, password_hash, display_name)
                        SELECT $1, $2, CASE WHEN EXISTS (SELECT 1 FROM owner) THEN NULL
                                            ELSE $3 END, $4, $5
                        RETURNING {_USER_COLUMNS})
                    SELECT ins.*, (SELECT id FROM owner) AS owner_id FROM ins""",
                user_id,
                email,
                email_norm,
                password_hash,
                display_name,
            )
        except asyncpg.UniqueViolationError:
            continue
        user = _user(row)
        assert user is not None and row is not None
        return user, row["owner_id"]
    raise Conflict("cannot create an account with this email right now; try again")


async def by_email(db: asyncpg.Pool, email_norm: str) -> UserRow | None:
    return _user(
        await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE email_norm = $1", email_norm)
    )


async def by_id(db: asyncpg.Pool, user_id: str) -> UserRow | None:
    return _user(await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id))


async def update_password_hash(db: asyncpg.Pool, user_id: str, password_hash: str) -> None:
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def start_family(
    db: asyncpg.Pool, family_id: str, user_id: str, token_hash: str, ttl_s: int
) -> None:
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO token_families (id, user_id, expires_at)
               VALUES ($1, $2, now() + make_interval(secs => $3))""",
            family_id,
            user_id,
            float(ttl_s),
        )
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id) VALUES ($1, $2)",
            token_hash,
            family_id,
        )


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    family_id: str | None  # None: the token is unknown
    user: UserRow | None  # set when the rotation succeeded
    reused: bool = False  # the token had been used before: the family is now revoked
    dead: bool = False  # the family was already revoked or expired


async def rotate(db: asyncpg.Pool, old_hash: str, new_hash: str) -> Rotation:
    """Use ``old_hash`` once and issue ``new_hash`` in the same family."""
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT t.family_id, t.used_at, f.user_id,
                      (f.revoked_at IS NOT NULL OR f.expires_at <= now()) AS dead
               FROM refresh_tokens t JOIN token_families f ON f.id = t.family_id
               WHERE t.token_hash = $1 FOR UPDATE OF t""",
            old_hash,
        )
        if row is None:
            return Rotation(None, None)
        family_id = row["family_id"]
        if row["dead"]:
            return Rotation(family_id, None, dead=True)
        if row["used_at"] is not None:
            await _revoke(conn, family_id, "refresh token reused")
            return Rotation(family_id, None, reused=True)
        await conn.execute(
            "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", old_hash
        )
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id) VALUES ($1, $2)",
            new_hash,
            family_id,
        )
        user = _user(
            await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", row["user_id"])
        )
        return Rotation(family_id, user)


async def _revoke(conn: Conn, family_id: str, reason: str) -> bool:
    status = await conn.execute(
        """UPDATE token_families SET revoked_at = now(), revoked_reason = $2
           WHERE id = $1 AND revoked_at IS NULL""",
        family_id,
        reason,
    )
    return status != "UPDATE 0"


async def revoke_family(db: asyncpg.Pool, family_id: str, reason: str) -> bool:
    """Revoke one sign-in; False if it was already revoked (or never existed)."""
    async with db.acquire() as conn:
        return await _revoke(conn, family_id, reason)


async def family_live(db: asyncpg.Pool, family_id: str, user_id: str) -> bool:
    """True while the sign-in is neither revoked nor expired and its user is not disabled."""
    value = await db.fetchval(
        """SELECT f.revoked_at IS NULL AND f.expires_at > now() AND u.disabled_at IS NULL
           FROM token_families f JOIN users u ON u.id = f.user_id
           WHERE f.id = $1 AND f.user_id = $2""",
        family_id,
        user_id,
    )
    return bool(value)


@dataclass(frozen=True, slots=True)
class SignInState:
    """What every authenticated request checks: the sign-in is live, the user's roles now
    (a role change takes effect at once) and the suspension (``until`` None: indefinite)."""

    live: bool
    roles: tuple[str, ...]
    suspended: bool
    until: datetime | None


async def sign_in_state(db: asyncpg.Pool, family_id: str, user_id: str) -> SignInState:
    row = await db.fetchrow(
        """SELECT f.revoked_at IS NULL AND f.expires_at > now() AS live, u.roles,
                  u.disabled_at IS NOT NULL AS suspended, u.suspended_until
           FROM token_families f JOIN users u ON u.id = f.user_id
           WHERE f.id = $1 AND f.user_id = $2""",
        family_id,
        user_id,
    )
    if row is None:
        return SignInState(False, (), False, None)
    return SignInState(row["live"], tuple(row["roles"]), row["suspended"], row["suspended_until"])


async def sign_ins(db: Db, family_ids: list[str]) -> dict[str, SignInState]:
    """The state of many sign-ins in one query (a gateway re-checking its sockets); a family
    that is gone is missing from the answer."""
    rows = await db.fetch(
        """SELECT f.id, f.revoked_at IS NULL AND f.expires_at > now() AS live, u.roles,
                  u.disabled_at IS NOT NULL AS suspended, u.suspended_until
           FROM token_families f JOIN users u ON u.id = f.user_id WHERE f.id = ANY($1::text[])""",
        family_ids,
    )
    return {
        r["id"]: SignInState(r["live"], tuple(r["roles"]), r["suspended"], r["suspended_until"])
        for r in rows
    }


async def suspended_until(db: Db, user_id: str) -> tuple[bool, datetime | None, str | None]:
    """Whether the user is suspended, until when, and the open suspension's action id."""
    row = await db.fetchrow(
        "SELECT u.disabled_at, u.suspended_until, (SELECT a.id FROM moderation_actions a"
        " WHERE a.user_id = u.id AND a.kind = 'suspend' AND a.reversed_at IS NULL"
        " ORDER BY a.created_at DESC LIMIT 1) AS action_id FROM users u WHERE u.id = $1",
        user_id,
    )
    if row is None or row["disabled_at"] is None:
        return False, None, None
    return True, row["suspended_until"], row["action_id"]
