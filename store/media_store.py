"""Media rows in Postgres (store/migrations/0014_media.sql).

A row is one user's accepted upload: pending (``expires_at`` set) until a post, listing or
profile uses it (``attached_at``: when it was last attached; it does not expire then). Whether
it is *in use* is not stored but read where it is used (``IN_USE``): a live post of its owner,
a listing of the owner's vendor that is neither deleted nor removed, or the owner's avatar
names it. Deleting or removing what showed it makes it private at once; the sweeper then
releases it (pending again, for ``grace``) and, unless something uses it again, deletes it.
Its variants are objects of the blob store named by sha256 and shared between rows; an object
is deleted only when no row names it, under a transaction-scoped advisory lock per object
that an upload storing the same object takes too (``lock_objects``), so a sweep never deletes
an object an upload is about to reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from store.db import Conn, Db, one

_COLUMNS = "id, owner_id, source_sha256, format, width, height, variants, created_at, attached_at,"
_COLUMNS += " expires_at"
_LIVE = "(attached_at IS NOT NULL OR expires_at > now())"
IN_USE = (
    "(EXISTS (SELECT 1 FROM posts p WHERE p.author_id = media.owner_id"
    " AND p.removed_at IS NULL AND p.media ? media.id)"
    " OR EXISTS (SELECT 1 FROM listings l JOIN vendors v ON v.id = l.vendor_id"
    " WHERE v.user_id = media.owner_id AND l.deleted_at IS NULL AND l.removed_at IS NULL"
    " AND l.images ? media.id)"
    " OR EXISTS (SELECT 1 FROM users u WHERE u.id = media.owner_id"
    " AND u.avatar_media_id = media.id))"
)
"""Is the row (``media``) shown by something live? Each branch is an index range over the
owner's own posts, listings or row."""
_OBJECT_LOCKS = 0x686C_6D64  # "hlmd": the advisory lock namespace of media objects
_REVIVE = (
    "expires_at = CASE WHEN media.attached_at IS NULL"
    " THEN greatest(media.expires_at, now() + make_interval(secs => $3)) END"
)


async def revive(db: Db, owner_id: str, source_sha256: str, ttl_s: float) -> asyncpg.Record | None:
    """The owner's live media of these exact uploaded bytes, its expiry pushed to ``ttl_s``
    from now if it is still unused (a re-upload is the same media, decoded once)."""
    row: asyncpg.Record | None = await db.fetchrow(
        f"UPDATE media SET {_REVIVE} WHERE owner_id = $1 AND source_sha256 = $2 AND {_LIVE}"
        f" RETURNING {_COLUMNS}",
        owner_id,
        source_sha256,
        ttl_s,
    )
    return row


async def lock_objects(conn: Conn, shas: Iterable[str]) -> None:
    """Hold, until the transaction ends, the lock of each object (in one global order)."""
    for sha in sorted(set(shas)):
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _OBJECT_LOCKS, sha)


async def insert(conn: Conn, media: dict[str, Any], ttl_s: float) -> asyncpg.Record:
    """A new pending row; if the owner already has these bytes (a concurrent upload), that row,
    revived."""
    return one(
        await conn.fetchrow(
            "INSERT INTO media (id, owner_id, source_sha256, format, width, height, variants,"
            " expires_at) VALUES ($4, $1, $2, $5, $6, $7, $8, now() + make_interval(secs => $3))"
            f" ON CONFLICT (owner_id, source_sha256) DO UPDATE SET {_REVIVE}"
            f" RETURNING {_COLUMNS}",
            media["owner_id"],
            media["source_sha256"],
            ttl_s,
            media["id"],
            media["format"],
            media["width"],
            media["height"],
            media["variants"],
        )
    )


async def get(db: Db, media_id: str) -> asyncpg.Record | None:
    """A live row (an expired one the sweeper has not reached yet is gone already), with
    ``in_use``."""
    row: asyncpg.Record | None = await db.fetchrow(
        f"SELECT {_COLUMNS}, {IN_USE} AS in_use FROM media WHERE id = $1 AND {_LIVE}", media_id
    )
    return row


async def owners(conn: Conn, ids: list[str]) -> dict[str, str]:
    """id -> owner of each live row of ``ids``, locked until the transaction ends."""
    rows = await conn.fetch(
        f"SELECT id, owner_id FROM media WHERE id = ANY($1::text[]) AND {_LIVE} FOR UPDATE", ids
    )
    return {r["id"]: r["owner_id"] for r in rows}


async def attach(conn: Conn, ids: list[str]) -> None:
    """Mark rows used (stamped now: the sweeper leaves a row attached this recently alone, as
    what uses it may not have committed yet); they do not expire from now on."""
    await conn.execute(
        "UPDATE media SET attached_at = now(), expires_at = NULL WHERE id = ANY($1::text[])",
        ids,
    )


async def release_unused(
    db: Db, after_id: str, limit: int, settle_s: float, grace_s: float
) -> tuple[str | None, int]:
    """Look at the next ``limit`` attached rows after ``after_id`` (by id: a sweep walks the
    table a batch at a time) and make those nothing uses any more, attached over ``settle_s``
    ago, pending again, expiring in ``grace_s``. (The last id looked at, None at the end; how
    many were released.) A concurrent attach re-stamps its row, which is then left alone."""
    row = await db.fetchrow(
        "WITH batch AS (SELECT id FROM media WHERE id > $1 AND attached_at IS NOT NULL"
        " ORDER BY id LIMIT $2),"
        " released AS (UPDATE media SET attached_at = NULL,"
        " expires_at = now() + make_interval(secs => $4)"
        " WHERE id IN (SELECT id FROM batch)"
        f" AND attached_at < now() - make_interval(secs => $3) AND NOT {IN_USE} RETURNING id)"
        " SELECT (SELECT max(id) FROM batch) AS last, (SELECT count(*) FROM released) AS n",
        after_id,
        limit,
        settle_s,
        grace_s,
    )
    assert row is not None
    return row["last"], int(row["n"])


async def delete_expired(db: asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    """Delete up to ``limit`` expired unused rows; their variants (to collect). An expired
    row something uses again (a released photo whose post a moderator restored) is attached
    again instead."""
    async with db.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            f"SELECT id, {IN_USE} AS in_use FROM media WHERE attached_at IS NULL"
            " AND expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        await attach(conn, [r["id"] for r in due if r["in_use"]])
        rows: list[asyncpg.Record] = await conn.fetch(
            "DELETE FROM media WHERE id = ANY($1::text[]) RETURNING id, variants",
            [r["id"] for r in due if not r["in_use"]],
        )
    return rows


async def delete_pending(db: Db, media_id: str, owner_id: str) -> asyncpg.Record | None:
    """Delete the owner's unused upload; its variants (to collect), or None if there is none."""
    row: asyncpg.Record | None = await db.fetchrow(
        "DELETE FROM media WHERE id = $1 AND owner_id = $2 AND attached_at IS NULL"
        f" AND NOT {IN_USE} RETURNING id, variants",
        media_id,
        owner_id,
    )
    return row


async def referenced(conn: Conn, sha256: str) -> bool:
    """Does any row (live or not yet swept) name this object?"""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM media WHERE variants @> $1::jsonb)",
            [{"sha256": sha256}],
        )
    )
