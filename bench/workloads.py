"""Workloads of the load generator: where clients stand and what they do.

``Workload`` is what a benchmark's clients do, ``Session`` what a workload may use of a connected
client (bench/loadgen.py's ``Client`` is one); the load generator depends on these, never the
other way round. ``place_clients`` spreads clients over H3 cells whose neighbourhoods do not
overlap; ``FeedWorkload`` is the feed fanout benchmark's (``locate``, ``post.create``,
``post.created``). The chat benchmark's is bench/chat_workload.py (join a room, ``chat.send``,
``chat.message``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import h3


# -- what the load generator and a workload agree on -----------------------------------------------
class Session(Protocol):
    """A connected client, as a workload sees it (bench/loadgen.py's ``Client``, a
    hyperlocal_client ``Socket``)."""

    index: int
    """The client's number in its fleet, 0 to clients - 1."""
    user_id: str
    """Its user's id, from the server's ``hello`` frame."""

    async def request(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        timeout_s: float = 15.0,
    ) -> dict[str, Any]:
        """The reply's data, or ``hyperlocal_client.ApiError`` for an error reply (the
        package's ``Socket.request``). ``key``: mutating (an idempotency key)."""


class Workload(Protocol):
    """What a benchmark's clients do; the load generator does the rest."""

    op: str
    """The request a send makes (mutating: it gets an idempotency key)."""
    event: str
    """The event each expected receiver gets for a send."""

    async def setup(self, client: Session) -> None:
        """After connecting: locate, subscribe, join a room..."""

    def payload(self, client: Session, text: str) -> dict[str, Any]:
        """The request data of a send carrying ``text``."""

    def receivers(self, sender: int) -> Sequence[int]:
        """Indexes of the clients that must receive each send of client ``sender``."""

    def text_of(self, frame: dict[str, Any]) -> str | None:
        """The sent text inside an ``event`` frame."""

    # Optional: ``async def prepare(self, clients: list[Session]) -> None`` runs once after every
    # client has joined (the chat workload creates its rooms there: it needs every member's id).


# -- who stands where ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spot:
    lat: float
    lng: float
    cell: str


def spread_cells(center: tuple[float, float], count: int, resolution: int, gap: int) -> list[str]:
    """``count`` cells around ``center``, pairwise at grid distance >= ``gap``, nearest first."""
    origin = h3.latlng_to_cell(center[0], center[1], resolution)
    chosen: list[str] = []
    radius = gap
    while len(chosen) < count:
        radius *= 2
        chosen = []
        for ring in range(radius + 1):
            for cell in sorted(h3.grid_ring(origin, ring)):
                if all(h3.grid_distance(cell, other) >= gap for other in chosen):
                    chosen.append(cell)
                    if len(chosen) == count:
                        return chosen
    return chosen


def place_clients(
    clients: int,
    cells: int,
    *,
    resolution: int = 8,
    k_ring: int = 1,
    spread: str = "ring",
    center: tuple[float, float] = (48.8566, 2.3522),
) -> list[Spot]:
    """One spot per client. Home cells are ``2k+2`` apart, so their neighbourhoods are disjoint.

    Client ``i`` belongs to home ``i % cells``; with ``spread="ring"`` it stands in the home cell
    or one of its k-ring neighbours (round-robin), so posts reach partly overlapping sets of
    readers; with ``spread="cell"`` every client of a home stands in the home cell itself.
    """
    homes = spread_cells(center, cells, resolution, 2 * k_ring + 2)
    slots = {home: [home, *sorted(set(h3.grid_disk(home, k_ring)) - {home})] for home in homes}
    spots = []
    for i in range(clients):
        home = homes[i % cells]
        cell = home if spread == "cell" else slots[home][(i // cells) % len(slots[home])]
        lat, lng = h3.cell_to_latlng(cell)
        spots.append(Spot(lat, lng, cell))
    return spots


class FeedWorkload:
    """Clients ``locate`` at their spot; senders ``post.create``; readers get ``post.created``."""

    op = "post.create"
    event = "post.created"

    def __init__(self, spots: Sequence[Spot], k_ring: int = 1) -> None:
        self.spots = list(spots)
        self.k_ring = k_ring
        by_cell: dict[str, list[int]] = defaultdict(list)
        for i, spot in enumerate(self.spots):
            by_cell[spot.cell].append(i)
        self._readers = {
            cell: sorted(i for near in h3.grid_disk(cell, k_ring) for i in by_cell.get(near, ()))
            for cell in by_cell
        }

    async def setup(self, client: Session) -> None:
        spot = self.spots[client.index]
        here = await client.request("locate", {"lat": spot.lat, "lng": spot.lng}, timeout_s=30)
        cells = set(here["cells"])
        if here["cell"] != spot.cell or cells != set(h3.grid_disk(spot.cell, self.k_ring)):
            raise RuntimeError(f"server neighbourhood {sorted(cells)} differs from k={self.k_ring}")

    def payload(self, client: Session, text: str) -> dict[str, Any]:
        return {"text": text}

    def receivers(self, sender: int) -> Sequence[int]:
        return self._readers[self.spots[sender].cell]

    def text_of(self, frame: dict[str, Any]) -> str | None:
        post = frame.get("data", {}).get("post")
        return post.get("text") if isinstance(post, dict) else None
