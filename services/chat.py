"""Chat's use cases: rooms, messages, history, read receipts, typing and presence.

Access is checked on every call (services/access.py); mutations then go to the owner of the
room's home cell as typed commands (models/chat.py), and the owner checks membership again
inside its transaction (actors/chat_ops.py). Typing and presence are ephemeral: published
straight to the room's Redis channel, never stored.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from redis.exceptions import RedisError

from cluster.config import Settings
from models.chat import (
    ChatOpen,
    ChatRead,
    ChatSend,
    RoomAdd,
    RoomCreate,
    RoomLeave,
    direct_room_id,
    history_page,
    parse_room,
    room_stream,
)
from models.errors import BadRequest, NotFound, Unavailable
from models.ids import cell_scoped_id
from services.access import Access
from services.caller import Caller
from services.limits import check_text
from services.presence import Presence, ephemeral_frame
from services.router import ShardRouter
from store import chat_store, market_store
from store.fanout import channel


class ChatService:
    """Stateless over the router, the access rules, presence and Postgres; one per process."""

    def __init__(
        self,
        settings: Settings,
        db: asyncpg.Pool,
        router: ShardRouter,
        access: Access,
        presence: Presence,
    ) -> None:
        self.settings = settings
        self.db = db
        self.router = router
        self.access = access
        self.presence = presence

    async def open_direct(self, who: Caller, other_id: str) -> dict[str, Any]:
        """The direct room of the caller and ``other_id`` (opened once; later calls find it).
        Naturally idempotent, one room per pair: a key is optional."""
        room_id = direct_room_id(who.user_id, other_id, self.settings.h3_resolution)
        existing = await chat_store.get_room(self.db, room_id)
        if existing is not None:
            return {"room": existing}
        key = who.key or f"chat.open:{room_id}"
        command = ChatOpen(user_id=who.user_id, key=key, room_id=room_id, other_id=other_id)
        return await self.router.call(command)

    async def open_with_vendor(self, who: Caller, vendor_id: str) -> dict[str, Any]:
        """The buyer–vendor room: the direct room of the caller and the vendor's user."""
        vendor = await market_store.vendor_by_id(self.db, vendor_id)
        if vendor is None:
            raise NotFound("no such vendor")
        if vendor["user_id"] == who.user_id:
            raise BadRequest("that is your own vendor profile")
        opened = await self.open_direct(who, vendor["user_id"])
        ref = {"id": vendor["id"], "name": vendor["name"], "user_id": vendor["user_id"]}
        return {**opened, "vendor": ref}

    async def open_for_order(self, who: Caller, order_id: str) -> dict[str, Any]:
        """The room of an order: its buyer's direct room with its vendor, opened by either
        side (anyone else: ``not_found``, as for the order itself). The reply names the order,
        and the order names the room (``room_id`` on every order a client reads)."""
        row = await market_store.order_row(self.db, order_id)
        if row is None or who.user_id not in (row["buyer_id"], row["vendor_user_id"]):
            raise NotFound("no such order")
        other = row["vendor_user_id"] if who.user_id == row["buyer_id"] else row["buyer_id"]
        opened = await self.open_direct(who, other)
        return {**opened, "order_id": order_id, "vendor_id": row["vendor_id"]}

    async def create_group(self, who: Caller, title: str, members: list[str]) -> dict[str, Any]:
        if who.location is None:
            raise BadRequest("locate first: a group room is homed in its creator's cell")
        command = RoomCreate(
            user_id=who.user_id,
            key=who.idempotency_key(),
            room_id=cell_scoped_id(who.location.cell),
            title=title,
            members=tuple(sorted(set(members))),
        )
        return await self.router.call(command)

    async def _member_room(self, who: Caller, room_id: str, what: str) -> str:
        """The caller's idempotency key, once the room is a direct or group room they may use
        (not a neighbourhood one)."""
        key = who.idempotency_key()
        ref = await self.access.room(who, room_id)
        if ref.kind == "neighbourhood":
            raise BadRequest(f"neighbourhood rooms have no {what}")
        return key

    async def add_member(self, who: Caller, room_id: str, member_id: str) -> dict[str, Any]:
        key = await self._member_room(who, room_id, "member list")
        command = RoomAdd(user_id=who.user_id, key=key, room_id=room_id, member_id=member_id)
        return await self.router.call(command)

    async def leave(self, who: Caller, room_id: str) -> dict[str, Any]:
        key = await self._member_room(who, room_id, "member list")
        return await self.router.call(RoomLeave(user_id=who.user_id, key=key, room_id=room_id))

    async def rooms(self, who: Caller) -> dict[str, Any]:
        return {"rooms": await chat_store.rooms_of(self.db, who.user_id)}

    async def send(self, who: Caller, room_id: str, text: str) -> dict[str, Any]:
        check_text(text, self.settings.max_text_chars)
        ref = parse_room(room_id)
        if ref is None:
            raise NotFound("no such room")
        if ref.kind == "neighbourhood":
            self.access.near(who, ref)  # the location rule: only the session knows it
        # Member rooms: the owner checks membership inside its transaction (from its exact
        # cache), answering not_found / forbidden; a second check here would cost a query.
        key = who.idempotency_key()
        return await self.router.call(
            ChatSend(user_id=who.user_id, key=key, room_id=room_id, text=text)
        )

    async def history(
        self, who: Caller, room_id: str, before: int | None, limit: int
    ) -> dict[str, Any]:
        await self.access.room(who, room_id)
        rows = await chat_store.history(self.db, room_id, before, limit + 1)
        page, next_before = history_page(rows, limit)
        return {"messages": page, "next_before": next_before}

    async def mark_read(self, who: Caller, room_id: str, offset: int) -> dict[str, Any]:
        key = await self._member_room(who, room_id, "read receipts")
        command = ChatRead(user_id=who.user_id, key=key, room_id=room_id, offset=offset)
        return await self.router.call(command)

    async def typing(self, who: Caller, room_id: str) -> dict[str, Any]:
        await self.access.room(who, room_id)
        stream = room_stream(room_id)
        frame = ephemeral_frame("chat.typing", stream, {"room_id": room_id, "user_id": who.user_id})
        try:
            await self.presence.redis.publish(channel(stream), frame)
        except (RedisError, OSError) as exc:
            raise Unavailable("typing indicators are unavailable right now") from exc
        return {"room_id": room_id}

    async def present(self, who: Caller, stream: str) -> dict[str, Any]:
        await self.access.stream(who, stream)
        if not stream.startswith(("room:", "feed:")):
            raise NotFound("presence is kept for rooms and cells")
        try:
            users = await self.presence.members(stream)
        except (RedisError, OSError) as exc:
            raise Unavailable("presence is unavailable right now") from exc
        return {"stream": stream, "users": users}
