"""Workloads of the load generator: where clients stand and what they do.

``place_clients`` spreads clients over H3 cells whose neighbourhoods do not overlap;
``FeedWorkload`` is the feed fanout benchmark's (``locate``, ``post.create``, ``post.created``).
A chat benchmark adds its own ``Workload`` next to it (join a room, ``chat.send``,
``chat.message``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h3

if TYPE_CHECKING:
    from bench.loadgen import Client


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

    async def setup(self, client: Client) -> None:
        spot = self.spots[client.index]
        reply = await client.request("locate", {"lat": spot.lat, "lng": spot.lng})
        if not reply.get("ok"):
            raise RuntimeError(f"locate refused: {reply}")
        cells = set(reply["data"]["cells"])
        if reply["data"]["cell"] != spot.cell or cells != set(h3.grid_disk(spot.cell, self.k_ring)):
            raise RuntimeError(f"server neighbourhood {sorted(cells)} differs from k={self.k_ring}")

    def payload(self, client: Client, text: str) -> dict[str, Any]:
        return {"text": text}

    def receivers(self, sender: int) -> Sequence[int]:
        return self._readers[self.spots[sender].cell]

    def text_of(self, frame: dict[str, Any]) -> str | None:
        post = frame.get("data", {}).get("post")
        return post.get("text") if isinstance(post, dict) else None
