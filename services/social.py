"""Social use cases beyond the feed's basics: profiles, follow lists, post pages, author
deletion, reposts and vendors near a point.

Reads go to Postgres (profiles and lists are public to any signed-in user; only a user's own
profile is editable: ``edit_profile`` takes the caller, never a user id). Deletion and reposts
are shard commands (models/social.py, run by actors/social_ops.py): a deletion at the owner of
the post's cell, which checks the author; a repost at the owner of the sharer's cell.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from cluster.config import Settings
from models.cells import Geo
from models.errors import BadRequest, NotFound
from models.market import NearbyCursor, PageCursor
from models.media import VARIANT_SIZES
from models.social import PostDelete, PostShare, ProfileEdit
from services.caller import Caller
from services.limits import check_text
from services.media import MediaService
from services.router import ShardRouter
from store import social_store


class SocialService:
    """Stateless over Postgres and the router; one per process."""

    def __init__(
        self, settings: Settings, db: asyncpg.Pool, geo: Geo, router: ShardRouter,
        media: MediaService,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.db = db
        self.geo = geo
        self.router = router
        self.media = media

    def _with_avatar_url(self, profile: dict[str, Any]) -> dict[str, Any]:
        """``avatar_url``: the avatar's smallest variant (docs/media.md), where there is one."""
        if profile.get("avatar"):
            size = VARIANT_SIZES[0]
            profile["avatar_url"] = f"{self.media.base_url}/{profile['avatar']}/{size}.webp"
        return profile

    # -- profiles -------------------------------------------------------------------------------
    async def profile(self, user_id: str) -> dict[str, Any]:
        found = await social_store.profile(self.db, user_id)
        if found is None:
            raise NotFound("no such user")
        return {"user": self._with_avatar_url(found)}

    async def edit_profile(self, who: Caller, fields: dict[str, Any]) -> dict[str, Any]:
        """The caller's own profile, changed by ``fields`` (validated: ``bad_request``). A new
        avatar must be one of the caller's own live uploads, which it then marks used (it no
        longer expires): another's is ``forbidden``, an unknown one ``not_found``, and nothing
        changes."""
        edit = ProfileEdit.of(fields)
        if edit.avatar_media_id is not None:
            await self.media.attach(who.user_id, [edit.avatar_media_id])
        if not await social_store.edit_profile(self.db, who.user_id, edit):
            raise NotFound("this account no longer exists")
        return await self.profile(who.user_id)

    async def follow_list(
        self, user_id: str, direction: str, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        """``followers`` or ``following`` of a user, newest follow first."""
        after = PageCursor.decode(cursor)
        if not await social_store.user_exists(self.db, user_id):
            raise NotFound("no such user")
        items, next_cursor = await social_store.follow_list(
            self.db, user_id, direction, after, limit
        )
        return {"items": items, "next_cursor": next_cursor}

    # -- posts ----------------------------------------------------------------------------------
    async def post_page(self, post_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """A visible post with a page of its comments, oldest first (``next_cursor`` pages on)."""
        after = PageCursor.decode(cursor)
        post = await social_store.post(self.db, post_id)
        if post is None:
            raise NotFound("no such post")
        comments, next_cursor = await social_store.comments(self.db, post_id, after, limit)
        return {"post": post, "comments": comments, "next_cursor": next_cursor}

    async def delete_post(self, who: Caller, post_id: str) -> dict[str, Any]:
        key = who.idempotency_key()
        return await self.router.call(PostDelete(user_id=who.user_id, key=key, post_id=post_id))

    async def share_post(
        self, who: Caller, post_id: str, text: str, lat: float | None, lng: float | None
    ) -> dict[str, Any]:
        """Repost ``post_id`` into the sharer's cell feed (where they are, or ``lat, lng``)."""
        if text:
            check_text(text, self.settings.max_text_chars)
        key = who.idempotency_key()
        lat, lng = who.where(lat, lng)
        command = PostShare(
            user_id=who.user_id,
            key=key,
            cell=self.geo.cell_of(lat, lng),
            lat=lat,
            lng=lng,
            post_id=post_id,
            text=text,
        )
        return await self.router.call(command)

    # -- vendors --------------------------------------------------------------------------------
    async def vendors_nearby(
        self, lat: float, lng: float, category: str | None, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        """Vendors of the neighbourhood around ``lat, lng``, nearest first."""
        after: tuple[float, str] | None = None
        if cursor:
            decoded = NearbyCursor.decode(cursor, "distance")
            if not isinstance(decoded.value, int | float):
                raise BadRequest("cursor is not valid")
            after = (float(decoded.value), decoded.last_id)
        cells = self.geo.neighbourhood(self.geo.cell_of(lat, lng))
        items, last = await social_store.vendors_nearby(
            self.db, cells, lat, lng, category, after, limit
        )
        next_cursor = NearbyCursor("distance", last[0], last[1]).encode() if last else None
        return {"items": items, "next_cursor": next_cursor}
