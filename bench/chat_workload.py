"""The chat fanout workload of the load generator: group rooms, ``chat.send``, ``chat.message``.

Clients are dealt round-robin into ``rooms`` group rooms (client ``i`` is in room ``i % rooms``,
so with 1,000 clients and 50 rooms every room has 20 members). Each room has a home cell, all
pairwise apart (``place_clients(spread="cell")``), and every member ``locate``s there during
setup. Once every client has joined (``prepare``), the room's first member creates it with
``room.create {title, members}`` listing all its members' user ids (from their ``hello``), then
every member ``subscribe``s to ``room:<id>``. A send is ``chat.send {room_id, text}``; every member
of the room, the sender included, must receive the ``chat.message`` exactly once.

The membership is the load generator's own (it dealt the clients), not read back from the server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from bench.workloads import Session, Spot, place_clients


class ChatWorkload:
    """``rooms`` group rooms; members locate at the room's home cell, subscribe, chat."""

    op = "chat.send"
    event = "chat.message"

    def __init__(self, clients: int, rooms: int, *, concurrency: int = 32) -> None:
        if clients < rooms:
            raise ValueError("need at least one client per room")
        self.rooms = rooms
        self.spots: list[Spot] = place_clients(clients, rooms, spread="cell")
        self.members: list[list[int]] = [list(range(r, clients, rooms)) for r in range(rooms)]
        self.room_ids: list[str] = [""] * rooms
        self.concurrency = concurrency

    def room_of(self, index: int) -> int:
        return index % self.rooms

    async def setup(self, client: Session) -> None:
        spot = self.spots[client.index]
        await client.request("locate", {"lat": spot.lat, "lng": spot.lng}, timeout_s=30)

    async def prepare(self, clients: list[Session]) -> None:
        """Create every room (by its first member), then subscribe every member to it."""
        by_index = {c.index: c for c in clients}
        gate = asyncio.Semaphore(self.concurrency)

        async def create(room: int) -> None:
            members = [by_index[i] for i in self.members[room]]
            body = {"title": f"bench room {room}", "members": [m.user_id for m in members]}
            async with gate:
                made = await members[0].request("room.create", body, uuid.uuid4().hex, timeout_s=30)
            self.room_ids[room] = made["room"]["id"]

        async def subscribe(client: Session) -> None:
            stream = f"room:{self.room_ids[self.room_of(client.index)]}"
            async with gate:
                await client.request("subscribe", {"stream": stream}, timeout_s=30)

        await asyncio.gather(*(create(r) for r in range(self.rooms)))
        await asyncio.gather(*(subscribe(c) for c in clients))

    def payload(self, client: Session, text: str) -> dict[str, Any]:
        return {"room_id": self.room_ids[self.room_of(client.index)], "text": text}

    def receivers(self, sender: int) -> Sequence[int]:
        return self.members[self.room_of(sender)]

    def text_of(self, frame: dict[str, Any]) -> str | None:
        message = frame.get("data", {}).get("message")
        if not isinstance(message, dict):
            return None
        return message.get("text")
