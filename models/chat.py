"""Chat rules: which rooms exist, where they live, who may use them. Pure, no I/O.

Three kinds of room, all with the durable stream ``room:<id>``:
- **neighbourhood**: ``cell-<h3>``, one per cell, no member list: usable by anyone whose
  located neighbourhood (cell + k-ring) contains the cell;
- **direct**: one per pair of users, the same id every time (derived from the pair), homed in
  a cell derived from the pair too, so it never moves and needs no lookup to route;
- **group**: created by a user with a member list, homed in the creator's cell.
Direct and group rooms have ids ``<cell>.<16 base32>`` (models/ids.py), routed to their cell's
owner like every cell-scoped entity.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import h3

from models.commands import RoutedBy, ShardCommand, command
from models.errors import BadRequest, NotFound
from models.ids import cell_of
from models.placement import cell_key

NEIGHBOURHOOD_PREFIX = "cell-"
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def neighbourhood_room(cell: str) -> str:
    return f"{NEIGHBOURHOOD_PREFIX}{cell}"


def room_stream(room_id: str) -> str:
    return f"room:{room_id}"


@dataclass(frozen=True, slots=True)
class RoomRef:
    """Where a room id points: its kind ('neighbourhood' or 'member') and its home cell."""

    room_id: str
    kind: str
    cell: str


@lru_cache(maxsize=65_536)
def parse_room(room_id: str) -> RoomRef | None:
    """The room an id names, or None if it cannot be a room id at all. Remembered (a pure
    function of the id, and ``RoomRef`` is frozen): a chat message parses its room's id at
    the gateway's check, its route, and the owner's, each an H3 validity check otherwise."""
    if room_id.startswith(NEIGHBOURHOOD_PREFIX):
        cell = room_id[len(NEIGHBOURHOOD_PREFIX) :]
        return RoomRef(room_id, "neighbourhood", cell) if _valid_cell(cell) else None
    home = cell_of(room_id)
    if home is None or not _valid_cell(home):
        return None
    return RoomRef(room_id, "member", home)


def _valid_cell(cell: str) -> bool:
    try:
        return bool(h3.is_valid_cell(cell))
    except (ValueError, TypeError):
        return False


def pair_key(a: str, b: str) -> str:
    """The unordered pair of two users, as stored (``rooms.pair_key``)."""
    if a == b:
        raise BadRequest("a direct room needs two different users")
    return "|".join(sorted((a, b)))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def pair_cell(pair: str, resolution: int) -> str:
    """A stable home cell for a pair: a point spread uniformly over the sphere by its hash."""
    digest = _digest("cell|" + pair)
    u = int.from_bytes(digest[:8], "big") / 2**64
    v = int.from_bytes(digest[8:16], "big") / 2**64
    lat = math.degrees(math.asin(2 * u - 1))
    lng = 360 * v - 180
    return str(h3.latlng_to_cell(lat, lng, resolution))


def direct_room_id(a: str, b: str, resolution: int) -> str:
    """The one direct room of users ``a`` and ``b`` (same for (b, a))."""
    pair = pair_key(a, b)
    value = int.from_bytes(_digest("room|" + pair)[:10], "big")
    chars = [_ALPHABET[(value >> (5 * i)) & 31] for i in range(15, -1, -1)]
    return f"{pair_cell(pair, resolution)}.{''.join(chars)}"


def history_page(
    rows: list[dict[str, object]], limit: int
) -> tuple[list[dict[str, object]], int | None]:
    """Rows fetched newest-first (limit + 1 of them) → the page oldest-first and ``next_before``.

    ``next_before`` is the offset to pass as ``before`` for the previous page, or None at the
    start of the room.
    """
    more = len(rows) > limit
    page = list(reversed(rows[:limit]))
    next_before = int(page[0]["offset"]) if more and page else None  # type: ignore[call-overload]
    return page, next_before


# -- shard commands (models/commands.py): all routed to the room's home cell -------------------
def room_route(room_id: str) -> str:
    """The placement key of a room's home cell; ``not_found`` for an id that is no room."""
    ref = parse_room(room_id)
    if ref is None:
        raise NotFound("no such room")
    return cell_key(ref.cell)


@command
class RoomCommand(ShardCommand):
    room_id: str

    route_by: ClassVar[RoutedBy] = RoutedBy("room_id", room_route)


@command
class ChatOpen(RoomCommand):
    """Open (or find) the direct room of the caller and ``other_id``; the shard checks that
    ``room_id`` is that pair's room at its resolution."""

    op: ClassVar[str] = "chat.open"
    other_id: str


@command
class RoomCreate(RoomCommand):
    """A group room homed in the cell its id names (the creator's)."""

    op: ClassVar[str] = "room.create"
    title: str
    members: tuple[str, ...]


@command
class RoomAdd(RoomCommand):
    op: ClassVar[str] = "room.add"
    member_id: str


@command
class RoomLeave(RoomCommand):
    op: ClassVar[str] = "room.leave"


@command
class ChatSend(RoomCommand):
    """A message; the shard derives the room's kind from its id (member rooms are checked
    against the owner's member list; neighbourhood rooms by the caller's location, which only
    the session knows and the services check before sending)."""

    op: ClassVar[str] = "chat.send"
    text: str


@command
class ChatRead(RoomCommand):
    op: ClassVar[str] = "chat.read"
    offset: int
