"""Neighbourhood cells: H3 hexagons at a configured resolution and their k-rings."""

from __future__ import annotations

from dataclasses import dataclass

import h3

from models.errors import BadRequest


@dataclass(frozen=True)
class Geo:
    """Cell arithmetic for one deployment (resolution and k-ring radius from Settings)."""

    resolution: int = 8
    k_ring: int = 1

    def cell_of(self, lat: float, lng: float) -> str:
        check_latlng(lat, lng)
        return str(h3.latlng_to_cell(lat, lng, self.resolution))

    def neighbourhood(self, cell: str) -> list[str]:
        """The cell and its k-ring neighbours, the cell first, then by grid distance."""
        rings = h3.grid_ring if self.k_ring else None
        cells = [cell]
        if rings is not None:
            for k in range(1, self.k_ring + 1):
                cells.extend(sorted(h3.grid_ring(cell, k)))
        return cells

    def is_cell(self, value: str) -> bool:
        """True for a valid H3 cell at this deployment's resolution."""
        try:
            return bool(h3.is_valid_cell(value)) and h3.get_resolution(value) == self.resolution
        except (ValueError, TypeError):
            return False


def check_latlng(lat: float, lng: float) -> None:
    if not (-90.0 <= lat <= 90.0) or lat != lat:
        raise BadRequest(f"lat must be within -90..90, got {lat}")
    if not (-180.0 <= lng <= 180.0) or lng != lng:
        raise BadRequest(f"lng must be within -180..180, got {lng}")


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    return float(h3.great_circle_distance((lat1, lng1), (lat2, lng2), unit="m"))
