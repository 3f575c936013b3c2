"""Websocket operations: one table from op name to (request model, handler, mutating?).

Handlers are the service functions behind the protocol; they take typed requests and return
plain data. Mutations are routed to the owner of their placement key through the ShardRouter;
reads of streams go to the Postgres log. The socket loop (ws.py) knows nothing of any op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import BaseModel

from cluster.config import Settings
from gateway import commands as c
from gateway.access import check_stream_access
from gateway.hub import Hub
from gateway.presence import Presence
from gateway.ranking import CellRanker
from gateway.router import ShardRouter
from gateway.sessions import Session
from models.cells import Geo
from models.chat import neighbourhood_room, room_stream
from models.errors import BadRequest, NotFound, TooLarge
from models.feed import FeedCursor, merge_pages
from models.ids import cell_of
from models.placement import cell_key, user_key
from models.streams import StreamCursor, feed_stream, parse_stream
from store import events as event_log


@dataclass
class Services:
    """What operations may use; built once per gateway process."""

    settings: Settings
    geo: Geo
    router: ShardRouter
    hub: Hub
    db: asyncpg.Pool
    presence: Presence
    ranker: CellRanker
    features: dict[str, Any] = field(default_factory=dict)
    """What feature modules add for their ops (e.g. "market", "checkout"), set up by their
    cleanup contexts (gateway/registry.py)."""


@dataclass
class Call:
    """One request being served: who asks, with which key, and what to do after the reply."""

    services: Services
    session: Session
    key: str | None
    after_reply: list[Callable[[], None]] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.session.principal.user_id


Handler = Callable[[Call, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Op:
    model: type[BaseModel]
    handler: Handler
    mutating: bool = False
    inline: bool = False
    """Changes the session's own state: run in frame order, not concurrently."""


def check_text(call: Call, text: str) -> None:
    limit = call.services.settings.max_text_chars
    if len(text) > limit:
        raise TooLarge(f"text is {len(text)} characters; the limit is {limit}")


def _where(call: Call, lat: float | None, lng: float | None) -> tuple[float, float]:
    if lat is not None and lng is not None:
        return lat, lng
    if lat is not None or lng is not None:
        raise BadRequest("give both lat and lng, or neither")
    if call.session.location is None:
        raise BadRequest("no location: send locate first or give lat and lng")
    return call.session.location["lat"], call.session.location["lng"]


async def mutate(call: Call, op: str, route: str, data: dict[str, Any]) -> dict[str, Any]:
    assert call.key is not None
    command = {"op": op, "user_id": call.user_id, "key": call.key, "route": route, "data": data}
    return await call.services.router.call(command)


# -- streams ------------------------------------------------------------------------------------
async def follow(call: Call, stream: str, since: c.Since | None) -> dict[str, Any]:
    """Follow ``stream`` live, replaying what was missed after ``since`` (rule 3)."""
    services, session = call.services, call.session
    already = stream in session.followed
    session.begin_follow(stream)
    # The hub's position is what it has delivered: events after it reach this session live.
    pos = await services.hub.join(stream, session)
    if since is not None and since.offset > pos.offset and since.epoch == pos.epoch:
        pos = await event_log.position(services.db, stream)  # committed, not yet delivered here
    reply: dict[str, Any] = {"stream": stream, "epoch": pos.epoch, "offset": pos.offset}
    start = pos.offset
    if since is None:
        reply.update(recovered=True, events=[])
    elif (
        since.epoch != pos.epoch
        or since.offset > pos.offset
        or pos.offset - since.offset > services.settings.recovery_max_events
    ):
        reply.update(recovered=False)
    else:
        missed = await event_log.read_range(
            services.db, stream, pos.epoch, since.offset, pos.offset
        )
        reply.update(recovered=True, events=[e.frame() for e in missed])
    cursor = StreamCursor(pos.epoch, start)
    call.after_reply.append(lambda: session.finish_follow(stream, cursor))
    if stream.startswith("room:") and not already:
        await services.presence.enter(stream, call.user_id)
    return reply


async def unfollow(call: Call, stream: str) -> None:
    if stream not in call.session.followed:
        return
    call.session.unfollow(stream)
    await call.services.hub.leave(stream, call.session)
    if stream.startswith("room:"):
        await call.services.presence.exit(stream, call.user_id)


async def set_presence_cell(call: Call, cell: str | None) -> None:
    """Move the session's presence to ``cell``'s feed stream (None: nowhere)."""
    session, presence = call.session, call.services.presence
    old = session.location["cell"] if session.location else None
    if old == cell:
        return
    if old is not None:
        await presence.exit(feed_stream(old), call.user_id)
    if cell is not None:
        await presence.enter(feed_stream(cell), call.user_id)


async def op_subscribe(call: Call, req: c.Subscribe) -> dict[str, Any]:
    await check_stream_access(call, req.stream)
    return await follow(call, req.stream, req.since)


async def op_unsubscribe(call: Call, req: c.Unsubscribe) -> dict[str, Any]:
    parse_stream(req.stream)
    await unfollow(call, req.stream)
    return {"stream": req.stream}


async def op_locate(call: Call, req: c.Locate) -> dict[str, Any]:
    geo, session = call.services.geo, call.session
    cell = geo.cell_of(req.lat, req.lng)
    cells = geo.neighbourhood(cell)
    streams = [feed_stream(x) for x in cells] + [room_stream(neighbourhood_room(cell))]
    for old in session.location_streams:
        if old not in streams:
            await unfollow(call, old)
    positions = {}
    for stream in streams:
        if stream not in session.followed:
            positions[stream] = await follow(call, stream, None)
    await set_presence_cell(call, cell)
    session.location = {"lat": req.lat, "lng": req.lng, "cell": cell}
    session.location_streams = streams
    return {
        "cell": cell,
        "cells": cells,
        "streams": streams,
        "positions": {
            s: {"epoch": p["epoch"], "offset": p["offset"]} for s, p in positions.items()
        },
    }


# -- feed ---------------------------------------------------------------------------------------
async def op_post_create(call: Call, req: c.PostCreate) -> dict[str, Any]:
    check_text(call, req.text)
    lat, lng = _where(call, req.lat, req.lng)
    cell = call.services.geo.cell_of(lat, lng)
    data = {"cell": cell, "lat": lat, "lng": lng, "text": req.text, "media": list(req.media)}
    return await mutate(call, "post.create", cell_key(cell), data)


def _post_cell(post_id: str) -> str:
    cell = cell_of(post_id)
    if cell is None:
        raise NotFound("no such post")
    return cell


async def op_comment_create(call: Call, req: c.CommentCreate) -> dict[str, Any]:
    check_text(call, req.text)
    route = cell_key(_post_cell(req.post_id))
    return await mutate(call, "comment.create", route, req.model_dump())


async def op_post_like(call: Call, req: c.PostRef) -> dict[str, Any]:
    return await mutate(call, "post.like", cell_key(_post_cell(req.post_id)), req.model_dump())


async def op_post_unlike(call: Call, req: c.PostRef) -> dict[str, Any]:
    return await mutate(call, "post.unlike", cell_key(_post_cell(req.post_id)), req.model_dump())


async def op_user_follow(call: Call, req: c.UserRef) -> dict[str, Any]:
    return await mutate(call, "user.follow", user_key(call.user_id), req.model_dump())


async def op_user_unfollow(call: Call, req: c.UserRef) -> dict[str, Any]:
    return await mutate(call, "user.unfollow", user_key(call.user_id), req.model_dump())


async def op_feed_get(call: Call, req: c.FeedGet) -> dict[str, Any]:
    """Newest first, or by relevance: the newest ``recommend_candidates`` posts of the
    neighbourhood ranked by the model of the user's cell, inside the shard that owns it."""
    from models.recommend import serving as rec  # ranking helpers (pure)
    from models.recommend.listings import relevance_page

    lat, lng = _where(call, req.lat, req.lng)
    geo, router = call.services.geo, call.services.router
    cell = geo.cell_of(lat, lng)
    cells = geo.neighbourhood(cell)
    offset = rec.parse_relevance_cursor(req.cursor)
    ranker = call.services.ranker
    known_plain = req.sort is None and offset is None and ranker.known_unranked(cell)
    if req.sort != "newest" and not known_plain and (req.cursor is None or offset is not None):
        pool = call.services.settings.recommend_candidates
        items, _ = merge_pages(await router.feed_page(cells, None, pool), pool)
        ranked = await ranker.order(call.user_id, lat, lng, cell, items)
        if ranked is not None:
            order, model = ranked
            page, after = relevance_page(order, offset or 0, req.limit)
            return {
                "items": [items[i] for i in page],
                "next_cursor": rec.relevance_cursor(after) if after is not None else None,
                "sort": "relevance",
                "model": model,
            }
        if offset is not None:  # the model went away between pages: start again, newest
            return {"items": [], "next_cursor": None, "sort": "newest"}
    if req.cursor is not None:
        FeedCursor.decode(req.cursor)  # a bad cursor is the client's error, refused here
    pages = await router.feed_page(cells, req.cursor, req.limit)
    items, next_cursor = merge_pages(pages, req.limit)
    return {"items": items, "next_cursor": next_cursor, "sort": "newest"}


async def op_ping(call: Call, req: BaseModel) -> dict[str, Any]:
    return {"pong": True}


class _Empty(BaseModel):
    pass


OPS: dict[str, Op] = {
    "ping": Op(_Empty, op_ping),
    "locate": Op(c.Locate, op_locate, inline=True),
    "subscribe": Op(c.Subscribe, op_subscribe, inline=True),
    "unsubscribe": Op(c.Unsubscribe, op_unsubscribe, inline=True),
    "feed.get": Op(c.FeedGet, op_feed_get),
    "post.create": Op(c.PostCreate, op_post_create, mutating=True),
    "comment.create": Op(c.CommentCreate, op_comment_create, mutating=True),
    "post.like": Op(c.PostRef, op_post_like, mutating=True),
    "post.unlike": Op(c.PostRef, op_post_unlike, mutating=True),
    "user.follow": Op(c.UserRef, op_user_follow, mutating=True),
    "user.unfollow": Op(c.UserRef, op_user_unfollow, mutating=True),
}
