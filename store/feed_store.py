"""SQL for posts, comments, likes and follows. Writers run inside the shard's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from models.feed import FeedCursor, Post
from models.streams import compact_json
from store.batch_write import Table, TableRow
from store.db import Conn, Db

POST_COLUMNS = (
    "id, cell, author_id, text, lat, lng, media, like_count, comment_count, created_at, shared_from"
)
_POST_COLUMNS = POST_COLUMNS


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def post_from_row(row: asyncpg.Record) -> Post:
    created: datetime = row["created_at"]
    return {
        "id": row["id"],
        "cell": row["cell"],
        "author_id": row["author_id"],
        "text": row["text"],
        "lat": row["lat"],
        "lng": row["lng"],
        "media": row["media"],
        "like_count": row["like_count"],
        "comment_count": row["comment_count"],
        "created_at": created.isoformat(),
        "created_ms": int(created.timestamp() * 1000),
        "shared_from": row["shared_from"],
    }


POSTS = Table(
    "posts",
    (
        ("id", "text"),
        ("cell", "text"),
        ("author_id", "text"),
        ("text", "text"),
        ("lat", "float8"),
        ("lng", "float8"),
        ("media", "text"),
        ("created_at", "timestamptz"),
    ),
    into=("id", "cell", "author_id", "text", "lat", "lng", "media", "created_at"),
    select="SELECT u.id, u.cell, u.author_id, u.text, u.lat, u.lng, u.media::jsonb,"
    " u.created_at FROM {rows}",
)
"""New posts, written with the shard batch's one statement (store/batch_write.py): a post
costs no round trip of its own."""


def post_row(post: Post) -> TableRow:
    """The ``POSTS`` row of a new post (``Tx.defer`` it)."""
    return POSTS.row(
        post["id"],
        post["cell"],
        post["author_id"],
        post["text"],
        post["lat"],
        post["lng"],
        compact_json(post["media"]),
        ms_to_dt(post["created_ms"]),
    )


async def get_post(db: Db, post_id: str) -> Post | None:
    row = await db.fetchrow(
        f"SELECT {_POST_COLUMNS} FROM posts WHERE id = $1 AND removed_at IS NULL", post_id
    )
    return post_from_row(row) if row else None


async def recent_posts(db: asyncpg.Pool, cell: str, limit: int) -> list[Post]:
    rows = await db.fetch(
        f"SELECT {_POST_COLUMNS} FROM posts WHERE cell = $1 AND removed_at IS NULL"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        cell,
        limit,
    )
    return [post_from_row(r) for r in rows]


async def older_posts(
    db: asyncpg.Pool, cells: list[str], before: FeedCursor | None, limit: int
) -> list[Post]:
    """Newest-first posts of ``cells`` strictly older than ``before``."""
    rows = await db.fetch(
        f"SELECT {_POST_COLUMNS} FROM posts WHERE cell = ANY($1::text[]) AND removed_at IS NULL"
        " AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))"
        " ORDER BY created_at DESC, id DESC LIMIT $4",
        cells,
        ms_to_dt(before.created_ms) if before else None,
        before.post_id if before else "",
        limit,
    )
    return [post_from_row(r) for r in rows]


async def insert_comment(conn: Conn, comment: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO comments (id, post_id, cell, author_id, text, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        comment["id"],
        comment["post_id"],
        comment["cell"],
        comment["author_id"],
        comment["text"],
        ms_to_dt(comment["created_ms"]),
    )
    await conn.execute(
        "UPDATE posts SET comment_count = comment_count + 1 WHERE id = $1", comment["post_id"]
    )


async def set_like(conn: Conn, post_id: str, user_id: str, cell: str) -> int | None:
    """Like once; return the new like count, or None if the user already liked it."""
    inserted = await conn.fetchval(
        "INSERT INTO likes (post_id, user_id, cell) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        post_id,
        user_id,
        cell,
    )
    if not inserted:
        return None
    return await conn.fetchval(
        "UPDATE posts SET like_count = like_count + 1 WHERE id = $1 RETURNING like_count", post_id
    )


async def unset_like(conn: Conn, post_id: str, user_id: str) -> int | None:
    """Remove a like; the new count, or None if there was none."""
    deleted = await conn.fetchval(
        "DELETE FROM likes WHERE post_id = $1 AND user_id = $2 RETURNING 1", post_id, user_id
    )
    if not deleted:
        return None
    return await conn.fetchval(
        "UPDATE posts SET like_count = like_count - 1 WHERE id = $1 RETURNING like_count", post_id
    )


async def user_exists(conn: Conn, user_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM users WHERE id = $1", user_id))


async def set_follow(conn: Conn, follower: str, followee: str) -> bool:
    return bool(
        await conn.fetchval(
            "INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            follower,
            followee,
        )
    )


async def unset_follow(conn: Conn, follower: str, followee: str) -> bool:
    return bool(
        await conn.fetchval(
            "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2 RETURNING 1",
            follower,
            followee,
        )
    )
