"""Author deletion and reposts, run by the owning CellHost inside a group commit.

- ``post.delete``: at the owner of the post's cell; only its author may (anyone else:
  ``forbidden``; a post already gone: ``not_found``). ``removed_at`` and ``deleted_at`` set,
  the post out of the cell's memory feed, ``post.removed {post_id}`` on its feed stream.
- ``post.share``: at the owner of the *sharer's* cell, which writes the new post there with
  ``shared_from {post_id, author_id, cell}`` of the original (a repost of a repost is
  attributed to the first original). The original, in whatever cell, is only read (rule 2:
  it stays its owner's); its author gets a ``notification`` ``post.shared``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from models.commands import ShardCommand
from models.errors import Forbidden, NotFound
from models.feed import Post
from models.ids import cell_of, cell_scoped_id
from models.social import PostDelete, PostShare
from models.streams import feed_stream, user_stream
from store import feed_store
from store.feed_store import ms_to_dt
from store.social_store import post_public

if TYPE_CHECKING:
    from actors.cell_host import CellHost, Emitted, Handler
    from actors.group_commit import Tx


async def post_delete(host: CellHost, tx: Tx, cmd: PostDelete, out: Emitted) -> dict[str, Any]:
    cell = cell_of(cmd.post_id)
    if cell is None:
        raise NotFound("no such post")
    author = await tx.conn.fetchval(
        "SELECT author_id FROM posts WHERE id = $1 AND removed_at IS NULL", cmd.post_id
    )
    if author is None:
        raise NotFound("no such post")
    if author != cmd.user_id:
        raise Forbidden("only its author may delete a post")
    await tx.conn.execute(
        "UPDATE posts SET removed_at = now(), deleted_at = now() WHERE id = $1", cmd.post_id
    )
    feed = (await host.cell(cell)).feed
    out.add(feed_stream(cell), "post.removed", {"post_id": cmd.post_id, "by": "author"})
    tx.then(lambda: feed.remove(cmd.post_id))
    return {"post_id": cmd.post_id, "deleted": True}


async def _original(tx: Tx, post_id: str) -> Post:
    if cell_of(post_id) is None:
        raise NotFound("no such post")
    row = await tx.conn.fetchrow(
        f"SELECT {feed_store.POST_COLUMNS} FROM posts WHERE id = $1 AND removed_at IS NULL",
        post_id,
    )
    if row is None:
        raise NotFound("no such post")
    return post_public(row)


async def post_share(host: CellHost, tx: Tx, cmd: PostShare, out: Emitted) -> dict[str, Any]:
    original = await _original(tx, cmd.post_id)
    root = original["shared_from"] or {
        "post_id": original["id"],
        "author_id": original["author_id"],
        "cell": original["cell"],
    }
    active = await host.cell(cmd.cell)
    now = time.time_ns() // 1_000_000
    post: Post = {
        "id": cell_scoped_id(cmd.cell, now),
        "cell": cmd.cell,
        "author_id": cmd.user_id,
        "text": cmd.text,
        "lat": cmd.lat,
        "lng": cmd.lng,
        "media": [],
        "like_count": 0,
        "comment_count": 0,
        "created_at": ms_to_dt(now).isoformat(),
        "created_ms": now,
        "shared_from": root,
    }
    await tx.conn.execute(
        "INSERT INTO posts (id, cell, author_id, text, lat, lng, created_at, shared_from)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        post["id"],
        post["cell"],
        post["author_id"],
        post["text"],
        post["lat"],
        post["lng"],
        ms_to_dt(now),
        root,
    )
    out.add(feed_stream(cmd.cell), "post.created", {"post": post})
    if root["author_id"] != cmd.user_id:
        out.add(
            user_stream(root["author_id"]),
            "notification",
            {"kind": "post.shared", "by": cmd.user_id, "post_id": root["post_id"],
             "share_id": post["id"]},
        )  # fmt: skip
    tx.then(lambda: active.feed.add(dict(post)))
    return {"post": post}


HANDLERS: dict[type[ShardCommand], Handler] = {
    PostDelete: post_delete,
    PostShare: post_share,
}
