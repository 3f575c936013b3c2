"""Appeals: the user a moderation action affected asks an admin to reverse it.

- ``create``: by the affected user only (another's action is ``not_found``), once per action
  while one is open (``conflict``), never for a reversed action (``conflict``). A suspended
  user signs in to appeal with email and password (gateway: HTTP Basic), since every token
  of theirs is refused while suspended.
- ``decide``: an admin (not the appellant) accepts — the action is reversed: a suspension is
  lifted (services/admin.py), removed content restored by its owner shard
  (services/moderation.py) — or rejects. The appeal's decision and its audit entry commit in
  one transaction; the appellant and the moderator who took the action are notified
  (``notification {kind: "appeal.decided", appeal}`` on their inboxes).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from models.admin import SeqCursor, target_ref
from models.errors import BadRequest, Conflict, Forbidden, NotFound
from models.ids import new_id
from models.rbac import Staff
from models.streams import Event
from services.admin import AdminService
from services.moderation import ModerationService
from store import admin_store as st
from store.fanout import publish

_COLUMNS = "id, action_id, user_id, text, status, decided_by, note, created_at, decided_at"


_CONTENT_SQL = {
    "post": "SELECT text FROM posts WHERE id = $1",
    "comment": "SELECT text FROM comments WHERE id = $1",
    "message": "SELECT text FROM messages WHERE id = $1",
    "listing": "SELECT title FROM listings WHERE id = $1",
}
"""What a removed object said, for its author's own record (removal keeps the row)."""


class AppealBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action_id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=5000)


class DecideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accept: bool
    note: str | None = Field(None, max_length=1000)


def appeal_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "action_id": row["action_id"],
        "user_id": row["user_id"],
        "text": row["text"],
        "status": row["status"],
        "decided_by": row["decided_by"],
        "note": row["note"],
        "created_at": st.iso(row["created_at"]),
        "decided_at": st.iso(row["decided_at"]),
    }


class AppealService:
    """Appeals of moderation actions; holds no state (see the module docstring)."""

    def __init__(
        self,
        db: asyncpg.Pool,
        redis: aioredis.Redis,
        admin: AdminService,
        moderation: ModerationService,
    ) -> None:
        self.db = db
        self.redis = redis
        self.admin = admin
        self.moderation = moderation

    async def create(self, user_id: str, body: AppealBody) -> dict[str, Any]:
        action = await st.action_row(self.db, body.action_id)
        if action is None or action["user_id"] != user_id:
            raise NotFound("no such action")
        if action["reversed_at"] is not None:
            raise Conflict("that action was already reversed")
        try:
            row = await self.db.fetchrow(
                "INSERT INTO appeals (id, action_id, user_id, text) VALUES ($1, $2, $3, $4)"
                f" RETURNING {_COLUMNS}",
                new_id(),
                action["id"],
                user_id,
                body.text,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("this action already has an open appeal") from None
        assert row is not None
        return {"appeal": {**appeal_public(row), "action": st.action_public(action)}}

    async def mine(self, user_id: str) -> dict[str, Any]:
        """The moderation actions that affected this user, newest first, each with what it
        was about (removed content's text or title stays visible to its author here) and
        its appeals: what the user needs to appeal (the action ids)."""
        rows = await self.db.fetch(
            "SELECT * FROM moderation_actions WHERE user_id = $1 ORDER BY created_at DESC, id"
            " LIMIT 100",
            user_id,
        )
        appeals = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM appeals WHERE user_id = $1 ORDER BY created_at", user_id
        )
        by_action: dict[str, list[dict[str, Any]]] = {}
        for appeal in appeals:
            by_action.setdefault(appeal["action_id"], []).append(appeal_public(appeal))
        items = []
        for row in rows:
            item = st.action_public(row)
            item["content"] = await self._content(row["target_kind"], row["target_id"])
            item["appeals"] = by_action.get(row["id"], [])
            items.append(item)
        return {"items": items}

    async def _content(self, kind: str, ident: str) -> str | None:
        sql = _CONTENT_SQL.get(kind)
        if sql is None:
            return None
        value = await self.db.fetchval(sql, ident)
        return str(value) if value is not None else None

    async def listed(self, staff: Staff, status: str | None, cursor: str | None) -> dict[str, Any]:
        staff.require("appeals.list")
        if status is not None and status not in ("open", "accepted", "rejected"):
            raise BadRequest("status: open, accepted or rejected")
        offset = (SeqCursor.decode(cursor) or 1) - 1
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM appeals WHERE ($1::text IS NULL OR status = $1)"
            " ORDER BY created_at, id OFFSET $2 LIMIT 51",
            status,
            offset,
        )
        more = len(rows) > 50
        return {
            "items": [appeal_public(r) for r in rows[:50]],
            "next_cursor": SeqCursor.encode(offset + 51) if more else None,
        }

    async def decide(self, staff: Staff, appeal_id: str, body: DecideBody) -> dict[str, Any]:
        staff.require("appeals.decide")
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM appeals WHERE id = $1", appeal_id)
        if row is None:
            raise NotFound("no such appeal")
        if row["status"] != "open":
            raise Conflict("this appeal was already decided")
        if row["user_id"] == staff.user_id:
            raise Forbidden("you cannot decide your own appeal")
        action = await st.action_row(self.db, row["action_id"])
        assert action is not None
        if body.accept and action["kind"] == "remove" and action["reversed_at"] is None:
            await self.moderation.restore(
                staff.user_id,
                action["target_kind"],
                action["target_id"],
                body.note or "appeal accepted",
                f"appeal:{appeal_id}",
            )
        status = "accepted" if body.accept else "rejected"
        events: list[Event] = []
        lifted: Event | None = None
        async with self.db.acquire() as conn, conn.transaction():
            decided = await conn.fetchrow(
                "UPDATE appeals SET status = $2, decided_by = $3, note = $4, decided_at = now()"
                f" WHERE id = $1 AND status = 'open' RETURNING {_COLUMNS}",
                appeal_id,
                status,
                staff.user_id,
                body.note,
            )
            if decided is None:
                raise Conflict("this appeal was already decided")
            if body.accept and action["kind"] == "suspend":
                suspended = await st.user_row(conn, action["user_id"], lock=True)
                if suspended is not None and suspended["disabled_at"] is not None:
                    _, lifted = await self.admin.unsuspend_in(
                        conn, staff.user_id, action["user_id"], body.note or "appeal accepted"
                    )
            result = {"status": status, "action_id": action["id"]}
            await st.audit(
                conn,
                staff.user_id,
                "appeal.decide",
                target_ref("appeal", appeal_id),
                body.note,
                result,
            )
            data = {"kind": "appeal.decided", "appeal": appeal_public(decided)}
            for user in {row["user_id"], action["actor_id"]} - {None}:
                events.append(await st.inbox_event(conn, user, "notification", data))
        await publish(self.redis, events)
        if lifted is not None:
            await self.admin.after_unsuspend(action["user_id"], lifted)
        return {"appeal": appeal_public(decided)}
