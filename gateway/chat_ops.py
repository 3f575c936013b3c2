"""Chat over the websocket: rooms, messages, read receipts, typing and presence.

Access is checked here on every op (gateway/access.py); mutations then go to the owner of the
room's home cell (actors/chat_ops.py), which checks membership again inside its transaction.
Typing and presence are ephemeral: published straight to the room's Redis channel, never stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from redis.exceptions import RedisError

from gateway.access import check_room, check_stream_access
from gateway.commands import Id, Text
from gateway.ops import Call, Op, check_text, mutate
from gateway.presence import ephemeral_frame
from models.chat import direct_room_id, history_page, pair_key, parse_room, room_stream
from models.errors import BadRequest, NotFound, Unavailable
from models.ids import cell_scoped_id
from models.placement import cell_key
from store import chat_store
from store.fanout import channel


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChatOpen(_Req):
    user_id: Id


class RoomRef(_Req):
    room_id: Id


class ChatSend(_Req):
    room_id: Id
    text: Text


class ChatHistory(_Req):
    room_id: Id
    before: int | None = Field(None, ge=1)
    limit: int = Field(50, ge=1, le=200)


class ChatRead(_Req):
    room_id: Id
    offset: int = Field(ge=0)


class RoomCreate(_Req):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    members: list[Id] = Field(min_length=1, max_length=200)


class RoomAdd(_Req):
    room_id: Id
    user_id: Id


class PresenceGet(_Req):
    stream: Annotated[str, StringConstraints(max_length=128)]


class _Empty(_Req):
    pass


async def op_chat_open(call: Call, req: ChatOpen) -> dict[str, Any]:
    resolution = call.services.settings.h3_resolution
    pair = pair_key(call.user_id, req.user_id)
    room_id = direct_room_id(call.user_id, req.user_id, resolution)
    ref = parse_room(room_id)
    assert ref is not None
    existing = await chat_store.get_room(call.services.db, room_id)
    if existing is not None:
        return {"room": existing}
    data = {"user_id": req.user_id, "room_id": room_id, "cell": ref.cell, "pair": pair}
    # Opening is naturally idempotent (one room per pair): a key is optional.
    key = call.key or f"chat.open:{room_id}"
    command = {"op": "chat.open", "user_id": call.user_id, "key": key}
    return await call.services.router.call({**command, "route": cell_key(ref.cell), "data": data})


async def op_room_create(call: Call, req: RoomCreate) -> dict[str, Any]:
    location = call.session.location
    if location is None:
        raise BadRequest("locate first: a group room is homed in its creator's cell")
    cell = location["cell"]
    data = {
        "room_id": cell_scoped_id(cell),
        "cell": cell,
        "title": req.title,
        "members": sorted(set(req.members)),
    }
    return await mutate(call, "room.create", cell_key(cell), data)


async def _member_room(call: Call, room_id: str, what: str) -> str:
    """The home cell of a direct or group room the caller may use (not a neighbourhood one)."""
    ref = await check_room(call, room_id)
    if ref.kind == "neighbourhood":
        raise BadRequest(f"neighbourhood rooms have no {what}")
    return ref.cell


async def op_room_add(call: Call, req: RoomAdd) -> dict[str, Any]:
    cell = await _member_room(call, req.room_id, "member list")
    return await mutate(call, "room.add", cell_key(cell), req.model_dump())


async def op_room_leave(call: Call, req: RoomRef) -> dict[str, Any]:
    cell = await _member_room(call, req.room_id, "member list")
    return await mutate(call, "room.leave", cell_key(cell), req.model_dump())


async def op_rooms_list(call: Call, req: _Empty) -> dict[str, Any]:
    return {"rooms": await chat_store.rooms_of(call.services.db, call.user_id)}


async def op_chat_send(call: Call, req: ChatSend) -> dict[str, Any]:
    check_text(call, req.text)
    ref = parse_room(req.room_id)
    if ref is None:
        raise NotFound("no such room")
    if ref.kind == "neighbourhood":
        ref = await check_room(call, req.room_id)  # location rule: the gateway knows it
    # Member rooms: the owner checks membership inside its transaction (from its exact cache),
    # answering not_found / forbidden; a second check here would cost a query per message.
    data = {"room_id": req.room_id, "cell": ref.cell, "kind": ref.kind, "text": req.text}
    return await mutate(call, "chat.send", cell_key(ref.cell), data)


async def op_chat_history(call: Call, req: ChatHistory) -> dict[str, Any]:
    await check_room(call, req.room_id)
    rows = await chat_store.history(call.services.db, req.room_id, req.before, req.limit + 1)
    page, next_before = history_page(rows, req.limit)
    return {"messages": page, "next_before": next_before}


async def op_chat_read(call: Call, req: ChatRead) -> dict[str, Any]:
    cell = await _member_room(call, req.room_id, "read receipts")
    return await mutate(call, "chat.read", cell_key(cell), req.model_dump())


async def op_chat_typing(call: Call, req: RoomRef) -> dict[str, Any]:
    await check_room(call, req.room_id)
    stream = room_stream(req.room_id)
    frame = ephemeral_frame(
        "chat.typing", stream, {"room_id": req.room_id, "user_id": call.user_id}
    )
    try:
        await call.services.presence.redis.publish(channel(stream), frame)
    except (RedisError, OSError) as exc:
        raise Unavailable("typing indicators are unavailable right now") from exc
    return {"room_id": req.room_id}


async def op_presence_get(call: Call, req: PresenceGet) -> dict[str, Any]:
    await check_stream_access(call, req.stream)
    if not req.stream.startswith(("room:", "feed:")):
        raise NotFound("presence is kept for rooms and cells")
    try:
        users = await call.services.presence.members(req.stream)
    except (RedisError, OSError) as exc:
        raise Unavailable("presence is unavailable right now") from exc
    return {"stream": req.stream, "users": users}


OPS: dict[str, Op] = {
    "chat.open": Op(ChatOpen, op_chat_open),
    "room.create": Op(RoomCreate, op_room_create, mutating=True),
    "room.add": Op(RoomAdd, op_room_add, mutating=True),
    "room.leave": Op(RoomRef, op_room_leave, mutating=True),
    "rooms.list": Op(_Empty, op_rooms_list),
    "chat.send": Op(ChatSend, op_chat_send, mutating=True),
    "chat.history": Op(ChatHistory, op_chat_history),
    "chat.read": Op(ChatRead, op_chat_read, mutating=True),
    "chat.typing": Op(RoomRef, op_chat_typing),
    "presence.get": Op(PresenceGet, op_presence_get),
}
