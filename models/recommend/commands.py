"""The ranking read a shard answers for the cells it owns (actors/recommend_ops.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from models.commands import RoutedBy, ShardRead, command
from models.placement import cell_key


@command
class RankRead(ShardRead):
    """Score ``items`` for ``user_id`` at ``lat, lng`` with the model covering ``cell`` (the
    caller's cell, whose owner answers). Items: ``{id, lat, lng, cell?, category?, author_id?,
    created_ms?, price?}``, checked by the owner."""

    op: ClassVar[str] = "recommend.rank"
    cell: str
    user_id: str
    lat: float
    lng: float
    items: tuple[dict[str, Any], ...]

    route_by: ClassVar[RoutedBy] = RoutedBy("cell", cell_key)
