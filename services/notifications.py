"""The notification centre's use cases (PROTOCOL.md "Notifications"): the list, read marks,
preferences, push subscriptions, one-click unsubscribe, and vendors' promotions.

Notifications themselves are written by Postgres (the ``hl_notify`` trigger, migration 0012)
in the transaction of the inbox event that causes them, so no producer calls this service.
Delivery is the notifier's (services/notifier.py).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from models.cells import Geo
from models.errors import BadRequest, NotFound, RateLimited
from models.ids import new_id
from models.notifications import (
    Preferences,
    SettingsBody,
    check_unsubscribe,
    unsubscribe_body,
)
from services.webpush import WebPush
from store import notifications_store as st
from store.admin_store import inbox_event
from store.fanout import publish


class NotificationService:
    """What a user (or a vendor, for promotions) does with notifications."""

    def __init__(
        self,
        db: asyncpg.Pool,
        redis: aioredis.Redis,
        push: WebPush,
        key: Callable[[], bytes],
        cap: int,
        geo: Geo,
        nearby_cap: int,
    ) -> None:
        self.db = db
        self.redis = redis
        self.push = push
        self._key = key  # the unsubscribe key (known once Links has started)
        self.promotion_cap = cap
        self.geo = geo
        self.nearby_cap = nearby_cap

    # -- the centre -----------------------------------------------------------------------------
    async def listing(
        self, user_id: str, cursor: str | None, limit: int, unread_only: bool
    ) -> dict[str, Any]:
        before = _cursor(cursor)
        rows = await st.page(self.db, user_id, before, limit + 1, unread_only)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [st.item_public(r) for r in rows],
            "next_cursor": str(rows[-1]["id"]) if more else None,
            "unread": await st.unread(self.db, user_id),
        }

    async def read(self, user_id: str, ids: list[str] | None, all_: bool) -> dict[str, Any]:
        if all_ == (ids is not None):
            raise BadRequest("give either ids or all: true")
        numeric = None if all_ else [_id(i) for i in ids or []]
        marked = await st.mark_read(self.db, user_id, numeric)
        return {"marked": marked, "unread": await st.unread(self.db, user_id)}

    # -- preferences ----------------------------------------------------------------------------
    async def settings(self, user_id: str) -> dict[str, Any]:
        return Preferences.of(await st.settings_of(self.db, user_id)).public()

    async def update_settings(self, user_id: str, body: SettingsBody) -> dict[str, Any]:
        cell = self.geo.cell_of(body.nearby.lat, body.nearby.lng) if body.nearby else None
        prefs = Preferences.of(await st.settings_of(self.db, user_id)).updated(body, cell)
        await st.save_settings(self.db, user_id, prefs.stored)
        return prefs.public()

    async def unsubscribe(self, user_id: str, scope: str, token: str) -> dict[str, Any]:
        """A signed link's change (``bad_request`` for a forged one): one kind's emails, or
        all emails, off."""
        check_unsubscribe(self._key(), user_id, scope, token)
        if await st.names(self.db, [user_id]) == {}:
            raise NotFound("no such user")
        await self.update_settings(user_id, unsubscribe_body(scope))
        return {"unsubscribed": scope}

    # -- push subscriptions ---------------------------------------------------------------------
    def vapid_public_key(self) -> dict[str, str]:
        return {"key": self.push.public_key}

    async def subscribe(self, user_id: str, endpoint: str, p256dh: str, auth: str) -> None:
        await self.push.check_endpoint(endpoint)
        _check_key(p256dh, 65, "keys.p256dh")
        _check_key(auth, 16, "keys.auth")
        await st.add_subscription(self.db, user_id, endpoint, p256dh, auth)

    async def unsubscribe_device(self, user_id: str, endpoint: str) -> None:
        if not await st.remove_subscription(self.db, endpoint, user_id):
            raise NotFound("no such push subscription")

    # -- promotions -----------------------------------------------------------------------------
    async def promote(
        self,
        vendor_id: str,
        vendor_user: str,
        vendor_name: str,
        title: str,
        text: str,
        key: str | None,
    ) -> dict[str, Any]:
        """A ``promotion`` notification to every follower of the vendor's user and to every
        user nearby who is not one (their ``nearby`` cell in the vendor's neighbourhood, at most
        ``nearby_cap`` such a day each), of those who turned the kind on (an opt-in kind: only
        they get it, in-app, by email or push as they chose); at most ``promotion_daily_cap`` a
        day per vendor. A retry with the same ``key`` answers the first promotion and sends
        nothing."""
        promo_id = new_id()
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"promo:{vendor_id}")
            if key is not None:
                prior = await conn.fetchrow(
                    "SELECT id, recipients, created_at FROM promotions"
                    " WHERE vendor_id = $1 AND key = $2",
                    vendor_id,
                    key,
                )
                if prior is not None:
                    return {
                        "promotion": {
                            "id": prior["id"],
                            "recipients": prior["recipients"],
                            "created_at": prior["created_at"].isoformat(),
                        }
                    }
            today = await conn.fetchval(
                "SELECT count(*) FROM promotions WHERE vendor_id = $1"
                " AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
                vendor_id,
            )
            if int(today or 0) >= self.promotion_cap:
                raise RateLimited(f"at most {self.promotion_cap} promotions a day")
            cell = await conn.fetchval("SELECT cell FROM vendors WHERE id = $1", vendor_id)
            cells = self.geo.neighbourhood(str(cell)) if cell else []
            audience = await st.promotion_audience(conn, vendor_user, cells, self.nearby_cap)
            data = {
                "kind": "promotion",
                "promotion_id": promo_id,
                "vendor_id": vendor_id,
                "vendor_name": vendor_name,
                "title": title,
                "text": text,
            }
            events = [
                await inbox_event(conn, user, "notification", {**data, "reach": reach})
                for user, reach in audience
            ]
            created = await conn.fetchval(
                "INSERT INTO promotions (id, vendor_id, key, title, body, recipients)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
                promo_id,
                vendor_id,
                key,
                title,
                text,
                len(events),
            )
        await publish(self.redis, events)
        return {
            "promotion": {
                "id": promo_id,
                "recipients": len(events),
                "created_at": created.isoformat(),
            }
        }


def _id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest("ids: notification ids are decimal strings") from None
    if not 0 < number < 2**63:
        raise BadRequest("ids: out of range")
    return number


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return _id(value)
    except BadRequest:
        raise BadRequest("cursor: not a cursor of this list") from None


def _check_key(value: str, size: int, name: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        raise BadRequest(f"{name}: not base64url") from None
    if len(raw) != size:
        raise BadRequest(f"{name}: {size} bytes expected")
