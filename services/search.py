"""Search over posts, listings, vendors and users (store/search_store.py has the ranking).

Bounded on every axis: the query text (``SEARCH_QUERY_MAX_CHARS``), the page (``limit`` up
to ``search_max_limit``), how deep pages go (``search_max_offset`` results in all), and time
(``search_timeout_s``, then ``unavailable``) and work (each match path reads at most
``search_candidates`` rows). Everything searched is public to any signed-in
user: visible posts, listings on sale, vendors, users whose account is open.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from cluster.config import Settings
from models.errors import BadRequest, Unavailable
from models.social import SearchQuery
from services.market import MarketService
from store import search_store


class SearchService:
    """Stateless over Postgres; listings found carry their vendor as every listing does."""

    def __init__(self, settings: Settings, db: asyncpg.Pool, market: MarketService) -> None:
        self.settings = settings
        self.db = db
        self.market = market

    async def search(
        self, q: str, kind: str, lat: float | None, lng: float | None, cursor: str | None,
        limit: int,
    ) -> dict[str, Any]:  # fmt: skip
        most = self.settings.search_max_limit
        if not 1 <= limit <= most:
            raise BadRequest(f"limit: 1 to {most}")
        query = SearchQuery.of(q, kind, lat, lng, cursor, limit, self.settings.search_max_offset)
        try:
            items = await search_store.search(
                self.db, query, self.settings.search_candidates,
                self.settings.search_distance_scale_km,
                self.settings.search_timeout_s,
            )  # fmt: skip
        except TimeoutError:
            raise Unavailable("search took too long; try more specific words") from None
        if kind == "listings":
            items = await self.market.with_vendors(items)
        return {
            "items": items,
            "next_cursor": query.next_cursor(len(items), self.settings.search_max_offset),
        }
