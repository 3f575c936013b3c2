"""Chat over the websocket: rooms, messages, read receipts, typing and presence.

Thin adapters over services/chat.py, which checks access on every call and sends mutations to
the owner of the room's home cell (actors/chat_ops.py checks membership again there).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.commands import Id, Text
from gateway.ops import Call, Op


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatOpen(_Req):
    """Exactly one of: a user, a vendor (the buyer–vendor room), an order (its room)."""

    user_id: Id | None = None
    vendor_id: Id | None = None
    order_id: Id | None = None

    @model_validator(mode="after")
    def _one(self) -> ChatOpen:
        given = [x for x in (self.user_id, self.vendor_id, self.order_id) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of user_id, vendor_id, order_id")
        return self


class RoomRef(_Req):
    room_id: Id


class ChatSend(_Req):
    room_id: Id
    text: Text


class ChatHistory(_Req):
    room_id: Id
    before: int | None = Field(None, ge=1, le=2**63 - 1)
    limit: int = Field(50, ge=1, le=200)


class ChatRead(_Req):
    room_id: Id
    offset: int = Field(ge=0, le=2**63 - 1)


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
    chat = call.services.chat
    if req.vendor_id is not None:
        return await chat.open_with_vendor(call.caller, req.vendor_id)
    if req.order_id is not None:
        return await chat.open_for_order(call.caller, req.order_id)
    assert req.user_id is not None
    return await chat.open_direct(call.caller, req.user_id)


async def op_room_create(call: Call, req: RoomCreate) -> dict[str, Any]:
    return await call.services.chat.create_group(call.caller, req.title, list(req.members))


async def op_room_add(call: Call, req: RoomAdd) -> dict[str, Any]:
    return await call.services.chat.add_member(call.caller, req.room_id, req.user_id)


async def op_room_leave(call: Call, req: RoomRef) -> dict[str, Any]:
    return await call.services.chat.leave(call.caller, req.room_id)


async def op_rooms_list(call: Call, req: _Empty) -> dict[str, Any]:
    return await call.services.chat.rooms(call.caller)


async def op_chat_send(call: Call, req: ChatSend) -> dict[str, Any]:
    return await call.services.chat.send(call.caller, req.room_id, req.text)


async def op_chat_history(call: Call, req: ChatHistory) -> dict[str, Any]:
    return await call.services.chat.history(call.caller, req.room_id, req.before, req.limit)


async def op_chat_read(call: Call, req: ChatRead) -> dict[str, Any]:
    return await call.services.chat.mark_read(call.caller, req.room_id, req.offset)


async def op_chat_typing(call: Call, req: RoomRef) -> dict[str, Any]:
    return await call.services.chat.typing(call.caller, req.room_id)


async def op_presence_get(call: Call, req: PresenceGet) -> dict[str, Any]:
    return await call.services.chat.present(call.caller, req.stream)


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
