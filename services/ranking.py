"""Ranking candidates with the model that covers a cell: one mechanism for feed.get and
listings.nearby.

The scores are computed inside the shard that owns the caller's cell (the ``recommend.rank``
reader, actors/recommend_ops.py); this gateway-side object only routes the request and
remembers, for ``recommend_absent_ttl_s``, the cells that have no model, so that default-sorted
requests for them skip the ranking round trips (an explicit ``sort: relevance`` always asks).

It also counts which model served each ranked-by-default or relevance request, per surface
(``feed``, ``listings``) and kind (``cell``, ``parent``, ``global``, ``none``): ``served``, which
the gateway exports as ``hl_recommend_served_total``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from models.recommend.commands import RankRead
from models.recommend.serving import NO_MODEL, order_by_scores, scope_kind
from services.router import ShardRouter

_REMEMBER_MAX = 100_000


class CellRanker:
    """Routes ranking requests to the owner of a cell; remembers cells without a model."""

    def __init__(self, router: ShardRouter, absent_ttl_s: float) -> None:
        self.router = router
        self.absent_ttl_s = absent_ttl_s
        self._absent_until: dict[str, float] = {}
        self.served: Counter[tuple[str, str]] = Counter()
        """(surface, model kind) -> requests; kinds: cell, parent, global, none."""

    def known_unranked(self, cell: str) -> bool:
        """True while ``cell`` is remembered as having no model."""
        return self._absent_until.get(cell, 0.0) > time.monotonic()

    def unranked(self, surface: str) -> None:
        """Count a request of ``surface`` answered without a model, without asking a shard
        (its cell is remembered as unranked)."""
        self.served[(surface, NO_MODEL)] += 1

    async def order(
        self,
        user_id: str,
        lat: float,
        lng: float,
        cell: str,
        items: list[dict[str, Any]],
        surface: str,
    ) -> tuple[list[int], dict[str, Any]] | None:
        """Positions of ``items``, best first, and the model used; None if no model covers
        ``cell`` (remembered for ``absent_ttl_s``). Counted in ``served`` under ``surface``."""
        read = RankRead(cell=cell, user_id=user_id, lat=lat, lng=lng, items=tuple(items))
        ranked = await self.router.read(read)
        model = ranked.get("model")
        if model is None:
            self.served[(surface, NO_MODEL)] += 1
            if len(self._absent_until) >= _REMEMBER_MAX:
                self._absent_until.clear()
            self._absent_until[cell] = time.monotonic() + self.absent_ttl_s
            return None
        self.served[(surface, scope_kind(str(model["scope"]), cell))] += 1
        self._absent_until.pop(cell, None)
        return order_by_scores(len(items), ranked["scores"]), model
