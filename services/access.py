"""Rule 7 for streams and rooms: who may follow, read or write what.

- ``feed:<cell>``: public, for any valid cell at this deployment's resolution;
- ``user:<id>``: only that user;
- ``listing:<id>``: anyone, for a listing on sale (as ``listing.get``: else ``not_found``);
- ``room:cell-<h3>`` (a neighbourhood room): anyone whose located neighbourhood contains it;
- ``room:<id>`` (direct or group): members only; an outsider gets ``forbidden``, a room that
  does not exist ``not_found``.
Checked on every op, against Postgres for member rooms (no cache to go stale). Writes to member
rooms are checked again by the room's owner inside its transaction (actors/chat_ops.py).
"""

from __future__ import annotations

import asyncpg

from models.cells import Geo
from models.chat import RoomRef, parse_room
from models.errors import BadRequest, Forbidden, NotFound
from models.ids import cell_of
from models.streams import parse_stream
from services.caller import Caller
from store import chat_store, market_store


class Access:
    """Answers "may this caller use that room or stream now?"; holds no state of its own."""

    def __init__(self, geo: Geo, db: asyncpg.Pool) -> None:
        self.geo = geo
        self.db = db

    def near(self, who: Caller, ref: RoomRef) -> RoomRef:
        """A neighbourhood room, if the caller's located neighbourhood contains it."""
        if not self.geo.is_cell(ref.cell):
            raise NotFound("no such room")
        if who.location is None:
            raise Forbidden("locate first: neighbourhood rooms are for people nearby")
        if ref.cell not in self.geo.neighbourhood(who.location.cell):
            raise Forbidden("that neighbourhood room is not near your location")
        return ref

    async def room(self, who: Caller, room_id: str) -> RoomRef:
        """The room, if the caller may use it now; else forbidden / not_found."""
        ref = parse_room(room_id)
        if ref is None:
            raise NotFound("no such room")
        if ref.kind == "neighbourhood":
            return self.near(who, ref)
        state = await chat_store.membership(self.db, room_id, who.user_id)
        if state == "missing":
            raise NotFound("no such room")
        if state != "member":
            raise Forbidden("you are not a member of this room")
        return ref

    async def stream(self, who: Caller, stream: str) -> None:
        kind, ident = parse_stream(stream)
        if kind == "feed":
            if not self.geo.is_cell(ident):
                raise NotFound("no such feed")
        elif kind == "user":
            if ident != who.user_id:
                raise Forbidden("that inbox is not yours")
        elif kind == "room":
            await self.room(who, ident)
        elif kind == "listing":
            row = await market_store.listing_row(self.db, ident) if cell_of(ident) else None
            if row is None or row["deleted_at"] is not None or not row["active"]:
                raise NotFound("no such listing")
        else:  # pragma: no cover - parse_stream admits only the kinds above
            raise BadRequest(f"unknown stream {stream!r}")
