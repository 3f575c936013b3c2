"""SQL of profiles, follow lists, the following feed, post pages and vendors near a point.

Readers only, plus the profile edit: a user's own row is not cell state (no shard owns it;
accounts are written by the gateways' AuthService too), so ``edit_profile`` runs on the pool.
Every batch reader (``profiles``, ``vendor_refs``, ``comments_of``) answers many ids in one
query: the GraphQL loaders (gateway/graphql/loaders.py) are built on them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from models.feed import FeedCursor, Post
from models.market import PageCursor
from models.social import ProfileEdit
from store.db import Db
from store.feed_store import POST_COLUMNS, ms_to_dt, post_from_row

_PROFILE = (
    "SELECT u.id, u.display_name, u.bio, u.avatar_media_id, u.created_at,"
    " (SELECT count(*) FROM follows f WHERE f.followee_id = u.id) AS followers,"
    " (SELECT count(*) FROM follows f WHERE f.follower_id = u.id) AS following,"
    " (SELECT count(*) FROM posts p WHERE p.author_id = u.id AND p.removed_at IS NULL) AS posts,"
    " v.id AS vendor_id, v.name AS vendor_name, v.category AS vendor_category,"
    " v.cell AS vendor_cell"
    " FROM users u LEFT JOIN vendors v ON v.user_id = u.id"
)


def profile_public(row: asyncpg.Record) -> dict[str, Any]:
    """PROTOCOL.md's profile: ``{id, display_name, bio, avatar, followers, following, posts,
    joined_at, vendor?}``; ``avatar`` is the media id (docs/media.md) or null."""
    out: dict[str, Any] = {
        "id": row["id"],
        "display_name": row["display_name"],
        "bio": row["bio"],
        "avatar": row["avatar_media_id"],
        "followers": row["followers"],
        "following": row["following"],
        "posts": row["posts"],
        "joined_at": row["created_at"].isoformat(),
    }
    if row["vendor_id"] is not None:
        out["vendor"] = {
            "id": row["vendor_id"],
            "name": row["vendor_name"],
            "category": row["vendor_category"],
            "cell": row["vendor_cell"],
        }
    return out


async def profile(db: Db, user_id: str) -> dict[str, Any] | None:
    """A user's public profile (None: no such user, or an account that is gone)."""
    row = await db.fetchrow(f"{_PROFILE} WHERE u.id = $1 AND u.disabled_at IS NULL", user_id)
    return profile_public(row) if row else None


async def profiles(db: Db, user_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Many profiles in one query, by id (missing ids absent)."""
    rows = await db.fetch(
        f"{_PROFILE} WHERE u.id = ANY($1::text[]) AND u.disabled_at IS NULL", user_ids
    )
    return {r["id"]: profile_public(r) for r in rows}


async def edit_profile(db: Db, user_id: str, edit: ProfileEdit) -> bool:
    """Apply ``edit`` to the user's own row; False if the user is gone."""
    status = await db.execute(
        "UPDATE users SET display_name = COALESCE($2, display_name), bio = COALESCE($3, bio),"
        " avatar_media_id = CASE WHEN $5 THEN NULL ELSE COALESCE($4, avatar_media_id) END"
        " WHERE id = $1 AND disabled_at IS NULL",
        user_id,
        edit.display_name,
        edit.bio,
        edit.avatar_media_id,
        edit.clear_avatar,
    )
    return status.endswith(" 1")


# -- follow lists -------------------------------------------------------------------------------
def _before(cursor: PageCursor | None) -> tuple[datetime | None, str]:
    if cursor is None:
        return None, ""
    return datetime.fromisoformat(cursor.created_at), cursor.last_id


async def follow_list(
    db: Db, user_id: str, direction: str, cursor: PageCursor | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Who follows ``user_id`` (``direction='followers'``) or whom they follow, newest follow
    first: ``[{id, display_name, avatar, followed_at}]`` and the next cursor."""
    mine, other = (
        ("followee_id", "follower_id")
        if direction == "followers"
        else ("follower_id", "followee_id")
    )
    at, last = _before(cursor)
    rows = await db.fetch(
        f"SELECT f.{other} AS id, f.created_at, u.display_name, u.avatar_media_id"
        f" FROM follows f JOIN users u ON u.id = f.{other}"
        f" WHERE f.{mine} = $1"
        f" AND ($2::timestamptz IS NULL OR (f.created_at, f.{other}) < ($2, $3))"
        f" ORDER BY f.created_at DESC, f.{other} DESC LIMIT $4",
        user_id,
        at,
        last,
        limit + 1,
    )
    items = [
        {
            "id": r["id"],
            "display_name": r["display_name"],
            "avatar": r["avatar_media_id"],
            "followed_at": r["created_at"].isoformat(),
        }
        for r in rows[:limit]
    ]
    if len(rows) <= limit:
        return items, None
    last_row = rows[limit - 1]
    return items, PageCursor(last_row["created_at"].isoformat(), last_row["id"]).encode()


async def user_exists(db: Db, user_id: str) -> bool:
    return bool(
        await db.fetchval("SELECT 1 FROM users WHERE id = $1 AND disabled_at IS NULL", user_id)
    )


# -- posts --------------------------------------------------------------------------------------
post_public = post_from_row


async def following_feed(db: Db, user_id: str, before: FeedCursor | None, limit: int) -> list[Post]:
    """Newest-first posts of the people ``user_id`` follows, strictly older than ``before``."""
    rows = await db.fetch(
        f"SELECT {POST_COLUMNS} FROM posts WHERE author_id IN"
        " (SELECT followee_id FROM follows WHERE follower_id = $1) AND removed_at IS NULL"
        " AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))"
        " ORDER BY created_at DESC, id DESC LIMIT $4",
        user_id,
        ms_to_dt(before.created_ms) if before else None,
        before.post_id if before else "",
        limit,
    )
    return [post_public(r) for r in rows]


async def post(db: Db, post_id: str) -> Post | None:
    row = await db.fetchrow(
        f"SELECT {POST_COLUMNS}, (SELECT count(*) FROM posts s"
        " WHERE s.shared_from ->> 'post_id' = p.id AND s.removed_at IS NULL) AS shares"
        " FROM posts p WHERE id = $1 AND removed_at IS NULL",
        post_id,
    )
    if row is None:
        return None
    out = post_public(row)
    out["share_count"] = row["shares"]
    return out


async def posts(db: Db, post_ids: list[str]) -> dict[str, Post]:
    rows = await db.fetch(
        f"SELECT {POST_COLUMNS} FROM posts WHERE id = ANY($1::text[]) AND removed_at IS NULL",
        post_ids,
    )
    return {r["id"]: post_public(r) for r in rows}


def comment_public(row: asyncpg.Record) -> dict[str, Any]:
    created: datetime = row["created_at"]
    return {
        "id": row["id"],
        "post_id": row["post_id"],
        "cell": row["cell"],
        "author_id": row["author_id"],
        "text": row["text"],
        "created_at": created.isoformat(),
        "created_ms": int(created.timestamp() * 1000),
    }


_COMMENT_COLUMNS = "id, post_id, cell, author_id, text, created_at"


async def comments(
    db: Db, post_id: str, after: PageCursor | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A post's visible comments oldest first (a conversation reads down), after ``after``."""
    at, last = _before(after)
    rows = await db.fetch(
        f"SELECT {_COMMENT_COLUMNS} FROM comments WHERE post_id = $1 AND removed_at IS NULL"
        " AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))"
        " ORDER BY created_at, id LIMIT $4",
        post_id,
        at,
        last,
        limit + 1,
    )
    items = [comment_public(r) for r in rows[:limit]]
    if len(rows) <= limit:
        return items, None
    last_row = rows[limit - 1]
    return items, PageCursor(last_row["created_at"].isoformat(), last_row["id"]).encode()


async def comments_of(
    db: Db, post_ids: list[str], limit: int
) -> dict[str, tuple[list[dict[str, Any]], str | None]]:
    """The first page of comments of many posts in one query (a lateral join per post)."""
    rows = await db.fetch(
        f"SELECT c.* FROM unnest($1::text[]) AS p(id) CROSS JOIN LATERAL"
        f" (SELECT {_COMMENT_COLUMNS} FROM comments WHERE post_id = p.id AND removed_at IS NULL"
        f" ORDER BY created_at, id LIMIT $2) AS c",
        post_ids,
        limit + 1,
    )
    grouped: dict[str, list[asyncpg.Record]] = {i: [] for i in post_ids}
    for r in rows:
        grouped[r["post_id"]].append(r)
    out: dict[str, tuple[list[dict[str, Any]], str | None]] = {}
    for ident, group in grouped.items():
        items = [comment_public(r) for r in group[:limit]]
        cursor = None
        if len(group) > limit:
            last = group[limit - 1]
            cursor = PageCursor(last["created_at"].isoformat(), last["id"]).encode()
        out[ident] = (items, cursor)
    return out


# -- vendors ------------------------------------------------------------------------------------
async def vendor_refs(db: Db, vendor_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``{id, name, user_id}`` of many vendors in one query (what listings and orders carry)."""
    rows = await db.fetch(
        "SELECT id, name, user_id FROM vendors WHERE id = ANY($1::text[])", vendor_ids
    )
    return {r["id"]: {"id": r["id"], "name": r["name"], "user_id": r["user_id"]} for r in rows}


_DISTANCE = (
    "6371008.8 * sqrt(power(radians(lat - $2), 2)"
    " + power(radians(lng - $3) * cos(radians(($2 + lat) / 2)), 2))"
)


async def vendors_nearby(
    db: Db, cells: list[str], lat: float, lng: float, category: str | None,
    after: tuple[float, str] | None, limit: int,
) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:  # fmt: skip
    """Vendors of ``cells`` nearest first (keyset on distance, id) and where the page ended."""
    rows = await db.fetch(
        f"SELECT * FROM (SELECT id, user_id, name, category, cell, lat, lng, created_at,"
        f" {_DISTANCE} AS distance_m FROM vendors WHERE cell = ANY($1::text[])"
        f" AND ($4::text IS NULL OR category = $4)) AS x"
        f" WHERE ($5::float8 IS NULL OR (distance_m, id) > ($5, $6))"
        f" ORDER BY distance_m, id LIMIT $7",
        cells,
        lat,
        lng,
        category,
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
    )
    items = [
        {
            "id": r["id"],
            "user_id": r["user_id"],
            "name": r["name"],
            "category": r["category"],
            "cell": r["cell"],
            "lat": r["lat"],
            "lng": r["lng"],
            "distance_m": round(r["distance_m"], 1),
            "created_at": r["created_at"].isoformat(),
        }
        for r in rows[:limit]
    ]
    if len(rows) <= limit:
        return items, None
    last = rows[limit - 1]
    return items, (float(last["distance_m"]), str(last["id"]))
