"""Chat mutations, run by the owner of the room's home cell inside a group commit.

The owner decides membership itself: a room's kind comes from its id (models/chat.py), and
member rooms are checked here against committed rows, so a member removed a moment ago cannot
slip a message in. Neighbourhood rooms have no member list: whether the caller is near is the
session's location, checked by the services before the command is sent. A message's offset
is its event's offset in ``room:<id>``: the handler reserves it, writes the row carrying it,
and hands the event to the host for publishing.
Direct-room messages are also appended to each member's inbox ``user:<id>``, so every session
of the user receives them wherever it is connected.

The owner keeps each member room's kind and members in memory (``host.ext``): only this host
writes them, so the cache is exact; a change drops the entry after commit, and a placement
change clears it all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models import chat
from models.chat import direct_room_id, pair_key, parse_room, room_stream
from models.commands import ShardCommand
from models.errors import BadRequest, Forbidden, NotFound
from models.ids import new_id
from models.streams import Event, user_stream
from store import chat_store
from store import events as event_log
from store.batch_write import Table
from store.feed_store import ms_to_dt

if TYPE_CHECKING:
    from actors.cell_host import CellHost, Emitted, Handler
    from actors.group_commit import Tx


@dataclass
class _Room:
    """What the owner remembers of a member room: only this host changes its members."""

    kind: str
    members: set[str]


_CACHE_MAX = 10_000


async def _room(host: CellHost, tx: Tx, room_id: str) -> _Room:
    """The room (kind, members), from this host's cache or Postgres; ``not_found`` if none."""
    cache: dict[str, _Room] = host.ext.setdefault("chat.rooms", {})
    room = cache.get(room_id)
    if room is None:
        row = await chat_store.get_room(tx.conn, room_id)
        if row is None:
            raise NotFound("no such room")
        loaded = room = _Room(row["kind"], set(row["members"]))

        def remember() -> None:  # only committed state is cached
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[room_id] = loaded

        tx.then(remember)
    return room


def _forget(host: CellHost, tx: Tx, room_id: str) -> None:
    """Members changed: drop the cached room now (later commands of this batch read the
    transaction's own rows) and again after commit (over anything cached meanwhile)."""
    cache: dict[str, _Room] = host.ext.setdefault("chat.rooms", {})
    cache.pop(room_id, None)
    tx.then(lambda: cache.pop(room_id, None))


async def _require_member(host: CellHost, tx: Tx, room_id: str, user_id: str) -> _Room:
    room = await _room(host, tx, room_id)
    if user_id not in room.members:
        raise Forbidden("you are not a member of this room")
    return room


MESSAGES = Table(
    "messages",
    (
        ("id", "text"),
        ("room_id", "text"),
        ("cell", "text"),
        ("sender_id", "text"),
        ("text", "text"),
        ("offset", "bigint"),
        ("created_at", "timestamptz"),
    ),
)
"""Chat messages, written with the batch's one statement (store/batch_write.py)."""


def _cell(room_id: str) -> str:
    ref = parse_room(room_id)
    if ref is None:
        raise NotFound("no such room")
    return ref.cell


async def chat_open(host: CellHost, tx: Tx, cmd: chat.ChatOpen, out: Emitted) -> dict[str, Any]:
    me, other = cmd.user_id, cmd.other_id
    pair = pair_key(me, other)
    if cmd.room_id != direct_room_id(me, other, host.settings.h3_resolution):
        raise BadRequest("room_id is not the direct room of these two users")
    if other not in await chat_store.users_exist(tx.conn, [other]):
        raise NotFound("no such user")
    created = await chat_store.create_room(
        tx.conn, cmd.room_id, "direct", _cell(cmd.room_id), None, pair, me, [me, other]
    )
    room = await chat_store.get_room(tx.conn, cmd.room_id)
    assert room is not None
    if created:
        out.add(user_stream(other), "notification", {"kind": "room.opened", "room": room})
    return {"room": room}


async def room_create(host: CellHost, tx: Tx, cmd: chat.RoomCreate, out: Emitted) -> dict[str, Any]:
    me = cmd.user_id
    ref = parse_room(cmd.room_id)
    if ref is None or ref.kind != "member":
        raise BadRequest("room_id must be a cell-scoped id")
    wanted = sorted({me, *cmd.members})
    known = await chat_store.users_exist(tx.conn, wanted)
    if missing := [u for u in wanted if u not in known]:
        raise NotFound(f"no such user: {missing[0]}")
    await chat_store.create_room(
        tx.conn, cmd.room_id, "group", ref.cell, cmd.title, None, me, wanted
    )
    room = await chat_store.get_room(tx.conn, cmd.room_id)
    assert room is not None
    for member in wanted:
        if member != me:
            out.add(user_stream(member), "notification", {"kind": "room.added", "room": room})
    return {"room": room}


async def room_add(host: CellHost, tx: Tx, cmd: chat.RoomAdd, out: Emitted) -> dict[str, Any]:
    me, room_id, user = cmd.user_id, cmd.room_id, cmd.member_id
    await _require_member(host, tx, room_id, me)
    room = await chat_store.get_room(tx.conn, room_id)
    assert room is not None
    if room["kind"] != "group":
        raise BadRequest("members can be added to group rooms only")
    if user not in await chat_store.users_exist(tx.conn, [user]):
        raise NotFound("no such user")
    if await chat_store.add_member(tx.conn, room_id, user):
        _forget(host, tx, room_id)
        out.add(room_stream(room_id), "room.member_added", {"room_id": room_id, "user_id": user})
        room["members"].append(user)
        out.add(user_stream(user), "notification", {"kind": "room.added", "room": room})
    return {"room_id": room_id, "user_id": user}


async def room_leave(host: CellHost, tx: Tx, cmd: chat.RoomLeave, out: Emitted) -> dict[str, Any]:
    room_id, me = cmd.room_id, cmd.user_id
    room = await _require_member(host, tx, room_id, me)
    if room.kind != "group":
        raise BadRequest("only group rooms can be left")
    await chat_store.remove_member(tx.conn, room_id, me)
    _forget(host, tx, room_id)
    out.add(room_stream(room_id), "room.member_left", {"room_id": room_id, "user_id": me})
    return {"room_id": room_id, "left": True}


async def chat_send(host: CellHost, tx: Tx, cmd: chat.ChatSend, out: Emitted) -> dict[str, Any]:
    me, room_id = cmd.user_id, cmd.room_id
    ref = parse_room(room_id)  # the kind decides the check: derived here, never taken as said
    if ref is None:
        raise NotFound("no such room")
    recipients: list[str] = []
    if ref.kind == "member":
        room = await _require_member(host, tx, room_id, me)
        if room.kind == "direct":
            recipients = sorted(room.members)
    stream = room_stream(room_id)
    now_ms = time.time_ns() // 1_000_000
    created_at = ms_to_dt(now_ms)  # a datetime until it goes on the wire
    epoch, offset = await host.offsets(tx, stream, 1)
    message: dict[str, Any] = {
        "id": new_id(now_ms),
        "room_id": room_id,
        "cell": ref.cell,
        "sender_id": me,
        "text": cmd.text,
        "created_at": created_at,
        "offset": offset,
    }
    result = {"message": message}  # the event's data too: its JSON serves the record
    event = Event(stream, epoch, offset, "chat.message", result)
    tx.defer(MESSAGES.row(message["id"], room_id, ref.cell, me, cmd.text, offset, created_at))
    tx.defer(event)
    out.appended.append(event)
    for member in recipients:
        out.add(user_stream(member), "chat.message", result)
    return result


async def chat_read(host: CellHost, tx: Tx, cmd: chat.ChatRead, out: Emitted) -> dict[str, Any]:
    me, room_id, offset = cmd.user_id, cmd.room_id, cmd.offset
    await _require_member(host, tx, room_id, me)
    last = (await event_log.position(tx.conn, room_stream(room_id))).offset
    if offset > last:
        raise BadRequest(f"offset {offset} is beyond the room's last offset {last}")
    if await chat_store.advance_read(tx.conn, room_id, me, offset):
        out.add(
            room_stream(room_id), "chat.read", {"room_id": room_id, "user_id": me, "offset": offset}
        )
    return {"room_id": room_id, "offset": offset}


HANDLERS: dict[type[ShardCommand], Handler] = {
    chat.ChatOpen: chat_open,
    chat.RoomCreate: room_create,
    chat.RoomAdd: room_add,
    chat.RoomLeave: room_leave,
    chat.ChatSend: chat_send,
    chat.ChatRead: chat_read,
}
