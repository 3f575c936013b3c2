"""Websocket operations: one table from op name to (request model, handler, mutating?).

Handlers are thin adapters: each validates nothing beyond its typed request (the socket loop did
that) and calls the one service function (services/) that every transport shares, with the
session's ``Caller`` (user, idempotency key, location). What belongs to the socket itself stays
here: following streams through the hub (rule 3's replay), ``locate``, presence of the session.
The socket loop (ws.py) knows nothing of any op.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from gateway import commands as c
from gateway.hub import Hub
from gateway.sessions import Session
from models.cells import Geo
from models.chat import neighbourhood_room, room_stream
from models.streams import feed_stream, parse_stream
from services.caller import Caller, Location
from services.container import Services
from store import events as event_log


@dataclass
class Call:
    """One request being served: who asks, with which key, and what to do after the reply."""

    services: Services
    hub: Hub
    session: Session
    key: str | None
    after_reply: list[Callable[[], None]] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.session.principal.user_id

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.key, self.session.location)


Handler = Callable[[Call, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Op:
    model: type[BaseModel]
    handler: Handler
    mutating: bool = False
    inline: bool = False
    """Changes the session's own state: run in frame order, not concurrently."""


# -- streams ------------------------------------------------------------------------------------
async def follow(call: Call, stream: str, since: c.Since | None) -> dict[str, Any]:
    """Follow ``stream`` live, replaying what was missed after ``since`` (rule 3)."""
    services, session = call.services, call.session
    already = stream in session.followed
    session.begin_follow(stream)
    # The hub's position is what it has delivered: events after it reach this session live.
    pos = joined = await call.hub.join(stream, session)
    if since is not None and since.offset > pos.offset and since.epoch == pos.epoch:
        pos = await event_log.position(services.db, stream)  # committed, not yet delivered here
    reply: dict[str, Any] = {"stream": stream, "epoch": pos.epoch, "offset": pos.offset}
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
    call.after_reply.append(
        lambda: session.finish_follow(stream, pos.epoch, pos.offset, joined.offset)
    )
    if stream.startswith("room:") and not already:
        await services.presence.enter(stream, call.user_id)
    elif stream.startswith("user:") and not already:  # online: the notifier's question
        await services.presence.enter(stream, call.user_id, announce=False)
    return reply


async def unfollow(call: Call, stream: str) -> None:
    if stream not in call.session.followed:
        return
    call.session.unfollow(stream)
    await call.hub.leave(stream, call.session)
    if stream.startswith("room:"):
        await call.services.presence.exit(stream, call.user_id)
    elif stream.startswith("user:"):
        await call.services.presence.exit(stream, call.user_id, announce=False)


async def set_presence_cell(call: Call, cell: str | None) -> None:
    """Move the session's presence to ``cell``'s feed stream (None: nowhere)."""
    session, presence = call.session, call.services.presence
    old = session.location.cell if session.location else None
    if old == cell:
        return
    if old is not None:
        await presence.exit(feed_stream(old), call.user_id)
    if cell is not None:
        await presence.enter(feed_stream(cell), call.user_id)


async def op_subscribe(call: Call, req: c.Subscribe) -> dict[str, Any]:
    await call.services.access.stream(call.caller, req.stream)
    return await follow(call, req.stream, req.since)


async def op_unsubscribe(call: Call, req: c.Unsubscribe) -> dict[str, Any]:
    parse_stream(req.stream)
    await unfollow(call, req.stream)
    return {"stream": req.stream}


@lru_cache(maxsize=8192)
def neighbourhood_streams(geo: Geo, cell: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The cells of ``cell``'s neighbourhood and the streams a session located there follows:
    one pair of tuples for every socket of the cell, so no socket holds its own copy of the
    names (which are also the keys of its followed streams, the hub's and presence's)."""
    cells = tuple(geo.neighbourhood(cell))
    streams = (*(feed_stream(x) for x in cells), room_stream(neighbourhood_room(cell)))
    return cells, streams


async def op_locate(call: Call, req: c.Locate) -> dict[str, Any]:
    geo, session = call.services.geo, call.session
    cells, streams = neighbourhood_streams(geo, geo.cell_of(req.lat, req.lng))
    cell = cells[0]
    for old in session.location_streams:
        if old not in streams:
            await unfollow(call, old)
    positions = {}
    for stream in streams:
        if stream not in session.followed:
            positions[stream] = await follow(call, stream, None)
    await set_presence_cell(call, cell)
    was = session.location
    session.location = Location(
        req.lat, req.lng, cell, time.time(), was.point() if was is not None else None
    )
    session.location_streams = streams
    return {
        "cell": cell,
        "cells": list(cells),
        "streams": list(streams),
        "positions": {
            s: {"epoch": p["epoch"], "offset": p["offset"]} for s, p in positions.items()
        },
    }


# -- feed ---------------------------------------------------------------------------------------
async def op_post_create(call: Call, req: c.PostCreate) -> dict[str, Any]:
    return await call.services.feed.create_post(
        call.caller, req.lat, req.lng, req.text, list(req.media)
    )


async def op_comment_create(call: Call, req: c.CommentCreate) -> dict[str, Any]:
    return await call.services.feed.comment(call.caller, req.post_id, req.text)


async def op_post_like(call: Call, req: c.PostRef) -> dict[str, Any]:
    return await call.services.feed.like(call.caller, req.post_id, liked=True)


async def op_post_unlike(call: Call, req: c.PostRef) -> dict[str, Any]:
    return await call.services.feed.like(call.caller, req.post_id, liked=False)


async def op_user_follow(call: Call, req: c.UserRef) -> dict[str, Any]:
    return await call.services.feed.follow(call.caller, req.user_id, following=True)


async def op_user_unfollow(call: Call, req: c.UserRef) -> dict[str, Any]:
    return await call.services.feed.follow(call.caller, req.user_id, following=False)


async def op_feed_get(call: Call, req: c.FeedGet) -> dict[str, Any]:
    return await call.services.feed.feed(
        call.caller, req.lat, req.lng, req.cursor, req.limit, req.sort
    )


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
