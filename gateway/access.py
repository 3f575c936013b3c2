"""Rule 7 for streams and rooms: who may follow, read or write what.

- ``feed:<cell>``: public, for any valid cell at this deployment's resolution;
- ``user:<id>``: only that user;
- ``room:cell-<h3>`` (a neighbourhood room): anyone whose located neighbourhood contains it;
- ``room:<id>`` (direct or group): members only; an outsider gets ``forbidden``, a room that
  does not exist ``not_found``.
Checked on every op, against Postgres for member rooms (no cache to go stale).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.chat import RoomRef, parse_room
from models.errors import BadRequest, Forbidden, NotFound
from models.streams import parse_stream
from store import chat_store

if TYPE_CHECKING:
    from gateway.ops import Call


async def check_room(call: Call, room_id: str) -> RoomRef:
    """The room, if the caller may use it now; else forbidden / not_found."""
    ref = parse_room(room_id)
    if ref is None:
        raise NotFound("no such room")
    if ref.kind == "neighbourhood":
        geo = call.services.geo
        if not geo.is_cell(ref.cell):
            raise NotFound("no such room")
        location = call.session.location
        if location is None:
            raise Forbidden("locate first: neighbourhood rooms are for people nearby")
        if ref.cell not in geo.neighbourhood(location["cell"]):
            raise Forbidden("that neighbourhood room is not near your location")
        return ref
    state = await chat_store.membership(call.services.db, room_id, call.user_id)
    if state == "missing":
        raise NotFound("no such room")
    if state != "member":
        raise Forbidden("you are not a member of this room")
    return ref


async def check_stream_access(call: Call, stream: str) -> None:
    kind, ident = parse_stream(stream)
    if kind == "feed":
        if not call.services.geo.is_cell(ident):
            raise NotFound("no such feed")
    elif kind == "user":
        if ident != call.user_id:
            raise Forbidden("that inbox is not yours")
    elif kind == "room":
        await check_room(call, ident)
    else:  # pragma: no cover - parse_stream admits only the kinds above
        raise BadRequest(f"unknown stream {stream!r}")
