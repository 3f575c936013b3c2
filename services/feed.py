"""The feed's use cases: posts, comments, likes, follows, and reading a neighbourhood's feed.

Mutations become typed commands (models/feed.py) for the owner of their cell or user key;
``feed`` reads newest-first pages from the shards that own the neighbourhood's cells, or ranks
the newest ``recommend_candidates`` with the model of the caller's cell (services/ranking.py).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from cluster.config import Settings
from models.cells import Geo
from models.feed import (
    CommentCreate,
    FeedCursor,
    PostCreate,
    PostLike,
    PostUnlike,
    UserFollow,
    UserUnfollow,
    merge_pages,
)
from models.recommend import serving as rec
from models.recommend.listings import relevance_page
from services.caller import Caller
from services.limits import check_text
from services.media import MediaService
from services.ranking import CellRanker
from services.router import ShardRouter
from store import social_store


class FeedService:
    """Stateless over the router and the ranker; one per process."""

    def __init__(
        self,
        settings: Settings,
        geo: Geo,
        router: ShardRouter,
        ranker: CellRanker,
        media: MediaService,
        db: asyncpg.Pool,
    ) -> None:
        self.settings = settings
        self.media = media
        self.db = db
        self.geo = geo
        self.router = router
        self.ranker = ranker

    async def create_post(
        self, who: Caller, lat: float | None, lng: float | None, text: str, media: list[str]
    ) -> dict[str, Any]:
        check_text(text, self.settings.max_text_chars)
        lat, lng = who.where(lat, lng)
        key = who.idempotency_key()
        media = await self.media.attach(who.user_id, media)  # the caller's own uploads only
        command = PostCreate(
            user_id=who.user_id,
            key=key,
            cell=self.geo.cell_of(lat, lng),
            lat=lat,
            lng=lng,
            text=text,
            media=tuple(media),
        )
        return await self.router.call(command)

    async def comment(self, who: Caller, post_id: str, text: str) -> dict[str, Any]:
        check_text(text, self.settings.max_text_chars)
        key = who.idempotency_key()
        return await self.router.call(
            CommentCreate(user_id=who.user_id, key=key, post_id=post_id, text=text)
        )

    async def like(self, who: Caller, post_id: str, liked: bool) -> dict[str, Any]:
        kind = PostLike if liked else PostUnlike
        return await self.router.call(
            kind(user_id=who.user_id, key=who.idempotency_key(), post_id=post_id)
        )

    async def follow(self, who: Caller, target_id: str, following: bool) -> dict[str, Any]:
        kind = UserFollow if following else UserUnfollow
        return await self.router.call(
            kind(user_id=who.user_id, key=who.idempotency_key(), target_id=target_id)
        )

    async def following(self, who: Caller, cursor: str | None, limit: int) -> dict[str, Any]:
        """Newest-first posts of the people the caller follows, wherever they posted (no
        location needed): read from Postgres, keyset-paged like the neighbourhood feed."""
        before = FeedCursor.decode(cursor) if cursor else None
        items = await social_store.following_feed(self.db, who.user_id, before, limit)
        after = FeedCursor.after(items[-1]).encode() if len(items) == limit else None
        return {"items": items, "next_cursor": after, "sort": "following"}

    async def feed(
        self,
        who: Caller,
        lat: float | None,
        lng: float | None,
        cursor: str | None,
        limit: int,
        sort: str | None,
    ) -> dict[str, Any]:
        """Newest first, or by relevance: the newest ``recommend_candidates`` posts of the
        neighbourhood ranked by the model of the caller's cell, inside the shard owning it."""
        if sort == "following":
            return await self.following(who, cursor, limit)
        lat, lng = who.where(lat, lng)
        cell = self.geo.cell_of(lat, lng)
        cells = self.geo.neighbourhood(cell)
        offset = rec.parse_relevance_cursor(cursor)
        known_plain = sort is None and offset is None and self.ranker.known_unranked(cell)
        if known_plain:
            self.ranker.unranked("feed")
        if sort != "newest" and not known_plain and (cursor is None or offset is not None):
            pool = self.settings.recommend_candidates
            items, _ = merge_pages(await self.router.feed_page(cells, None, pool), pool)
            ranked = await self.ranker.order(who.user_id, lat, lng, cell, items, "feed")
            if ranked is not None:
                order, model = ranked
                page, after = relevance_page(order, offset or 0, limit)
                return {
                    "items": [items[i] for i in page],
                    "next_cursor": rec.relevance_cursor(after) if after is not None else None,
                    "sort": "relevance",
                    "model": model,
                }
            if offset is not None:  # the model went away between pages: start again, newest
                return {"items": [], "next_cursor": None, "sort": "newest"}
        if cursor is not None:
            FeedCursor.decode(cursor)  # a bad cursor is the client's error, refused here
        pages = await self.router.feed_page(cells, cursor, limit)
        items, next_cursor = merge_pages(pages, limit)
        return {"items": items, "next_cursor": next_cursor, "sort": "newest"}
