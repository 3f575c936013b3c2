"""Feed mutations, one handler per op, run by the owning CellHost inside a group commit.

Each handler validates against committed state, writes its rows, declares its events (appended
to the stream log in the same transaction) and schedules its in-memory update for after commit.
Each gets its typed command (models/feed.py), built and type-checked by the services.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from models.commands import ShardCommand
from models.errors import BadRequest, NotFound
from models.feed import (
    CommentCreate,
    FollowCommand,
    Post,
    PostCreate,
    PostLike,
    PostUnlike,
    UserFollow,
    UserUnfollow,
)
from models.ids import cell_of, cell_scoped_id
from models.streams import feed_stream, user_stream
from store import feed_store
from store.feed_store import ms_to_dt

if TYPE_CHECKING:
    from actors.cell_host import CellHost, Emitted, Handler
    from actors.group_commit import Tx


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _post(host: CellHost, tx: Tx, post_id: str) -> tuple[str, Post]:
    cell = cell_of(post_id)
    if cell is None:
        raise NotFound("no such post")
    active = await host.cell(cell)
    post = active.feed.get(post_id) or await feed_store.get_post(tx.conn, post_id)
    if post is None:
        raise NotFound("no such post")
    return cell, post


def _notify(out: Emitted, recipient: str, actor: str, kind: str, **data: Any) -> None:
    if recipient != actor:
        out.add(user_stream(recipient), "notification", {"kind": kind, "by": actor, **data})


async def post_create(host: CellHost, tx: Tx, cmd: PostCreate, out: Emitted) -> dict[str, Any]:
    cell = cmd.cell
    active = await host.cell(cell)
    now = _now_ms()
    post: Post = {
        "id": cell_scoped_id(cell, now),
        "cell": cell,
        "author_id": cmd.user_id,
        "text": cmd.text,
        "lat": cmd.lat,
        "lng": cmd.lng,
        "media": list(cmd.media),
        "like_count": 0,
        "comment_count": 0,
        "created_at": ms_to_dt(now).isoformat(),
        "created_ms": now,
        "shared_from": None,
    }
    tx.defer(feed_store.post_row(post))  # with the batch's one statement
    # The event's data is the reply: the idempotency record takes the event's JSON, encoded
    # once for the log, the record and the wire (actors/cell_host.py ``_result_json``).
    data = {"post": post}
    out.add(feed_stream(cell), "post.created", data)
    tx.then(lambda: active.feed.add(dict(post)))
    return data


async def comment_create(
    host: CellHost, tx: Tx, cmd: CommentCreate, out: Emitted
) -> dict[str, Any]:
    cell, post = await _post(host, tx, cmd.post_id)
    now = _now_ms()
    comment = {
        "id": cell_scoped_id(cell, now),
        "post_id": post["id"],
        "cell": cell,
        "author_id": cmd.user_id,
        "text": cmd.text,
        "created_at": ms_to_dt(now).isoformat(),
        "created_ms": now,
    }
    await feed_store.insert_comment(tx.conn, comment)
    out.add(feed_stream(cell), "comment.created", {"comment": comment})
    _notify(
        out,
        post["author_id"],
        cmd.user_id,
        "comment.created",
        post_id=post["id"],
        comment_id=comment["id"],
    )
    feed = (await host.cell(cell)).feed
    count = post["comment_count"] + 1
    tx.then(lambda: feed.update(post["id"], comment_count=count))
    return {"comment": comment}


async def post_like(host: CellHost, tx: Tx, cmd: PostLike, out: Emitted) -> dict[str, Any]:
    cell, post = await _post(host, tx, cmd.post_id)
    user = cmd.user_id
    count = await feed_store.set_like(tx.conn, post["id"], user, cell)
    if count is None:  # already liked: nothing changes
        return {"post_id": post["id"], "liked": True, "like_count": post["like_count"]}
    out.add(
        feed_stream(cell),
        "post.liked",
        {"post_id": post["id"], "user_id": user, "like_count": count},
    )
    _notify(out, post["author_id"], user, "post.liked", post_id=post["id"])
    feed = (await host.cell(cell)).feed
    tx.then(lambda: feed.update(post["id"], like_count=count))
    return {"post_id": post["id"], "liked": True, "like_count": count}


async def post_unlike(host: CellHost, tx: Tx, cmd: PostUnlike, out: Emitted) -> dict[str, Any]:
    cell, post = await _post(host, tx, cmd.post_id)
    user = cmd.user_id
    count = await feed_store.unset_like(tx.conn, post["id"], user)
    if count is None:
        return {"post_id": post["id"], "liked": False, "like_count": post["like_count"]}
    out.add(
        feed_stream(cell),
        "post.unliked",
        {"post_id": post["id"], "user_id": user, "like_count": count},
    )
    feed = (await host.cell(cell)).feed
    tx.then(lambda: feed.update(post["id"], like_count=count))
    return {"post_id": post["id"], "liked": False, "like_count": count}


async def _followee(tx: Tx, cmd: FollowCommand) -> str:
    target = cmd.target_id
    if target == cmd.user_id:
        raise BadRequest("you cannot follow yourself")
    if not await feed_store.user_exists(tx.conn, target):
        raise NotFound("no such user")
    return str(target)


async def user_follow(host: CellHost, tx: Tx, cmd: UserFollow, out: Emitted) -> dict[str, Any]:
    target = await _followee(tx, cmd)
    if await feed_store.set_follow(tx.conn, cmd.user_id, target):
        _notify(out, target, cmd.user_id, "user.followed")
    return {"user_id": target, "following": True}


async def user_unfollow(host: CellHost, tx: Tx, cmd: UserUnfollow, out: Emitted) -> dict[str, Any]:
    target = await _followee(tx, cmd)
    await feed_store.unset_follow(tx.conn, cmd.user_id, target)
    return {"user_id": target, "following": False}


HANDLERS: dict[type[ShardCommand], Handler] = {
    PostCreate: post_create,
    CommentCreate: comment_create,
    PostLike: post_like,
    PostUnlike: post_unlike,
    UserFollow: user_follow,
    UserUnfollow: user_unfollow,
}
