"""Reports, the review queue and content removal (docs/admin.md).

- ``report``: any signed-in user reports a post, comment, listing, message or user; one open
  report per reporter and target (a unique index: ``conflict``), at most
  ``report_max_per_hour`` a reporter (``rate_limited``). Once ``report_hide_threshold``
  distinct reporters have an open report on a piece of content, it is hidden pending review
  (removed by the system, audited as ``content.hide``; dismissing its reports restores it).
- ``queue``: open (or resolved) reports, the most severe reason first, then the most reported.
- ``remove``: the content's owner shard removes it (rule 2), writes the audit entry and the
  moderation action, and notifies the author, in one transaction (actors/moderation_ops.py).
- ``resolve``: dismiss, remove the content, or suspend its author; every open report of that
  target is resolved together, audited.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from cluster.config import Settings
from models.admin import CONTENT_KINDS, SEVERITY, ReportReason, ResolveAction, SeqCursor, TargetKind
from models.chat import parse_room
from models.commands import ShardCommand
from models.errors import BadRequest, Conflict, NotFound, RateLimited
from models.ids import new_id
from models.moderation import EntityRemove, MessageRemove
from models.rbac import Staff
from services.admin import AdminService, SuspendBody
from services.market import SYSTEM
from services.router import ShardRouter
from store import admin_store as st
from store import chat_store
from store.fanout import publish

log = logging.getLogger("hyperlocal.moderation")


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: TargetKind
    id: str = Field(min_length=1, max_length=128)


class ReportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Target
    reason: ReportReason
    note: str | None = Field(None, max_length=1000)


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: ResolveAction
    note: str | None = Field(None, max_length=1000)


class RemoveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: TargetKind
    id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500)


_AUTHOR_SQL = {
    "post": "SELECT author_id FROM posts WHERE id = $1 AND removed_at IS NULL",
    "comment": "SELECT author_id FROM comments WHERE id = $1 AND removed_at IS NULL",
    "listing": "SELECT v.user_id FROM listings l JOIN vendors v ON v.id = l.vendor_id"
    " WHERE l.id = $1 AND l.deleted_at IS NULL",
    "message": "SELECT sender_id FROM messages WHERE id = $1 AND removed_at IS NULL",
    "user": "SELECT id FROM users WHERE id = $1",
}

_REPORT_COLUMNS = (
    "id, reporter_id, target_kind, target_id, target_user, reason, note, severity, status,"
    " resolution, resolved_by, resolved_note, created_at, resolved_at"
)


def report_public(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "reporter_id": row["reporter_id"],
        "target": {"kind": row["target_kind"], "id": row["target_id"]},
        "target_user": row["target_user"],
        "reason": row["reason"],
        "note": row["note"],
        "severity": row["severity"],
        "status": row["status"],
        "resolution": row["resolution"],
        "resolved_by": row["resolved_by"],
        "resolved_note": row["resolved_note"],
        "created_at": st.iso(row["created_at"]),
        "resolved_at": st.iso(row["resolved_at"]),
    }
    if "reports" in row.keys():  # noqa: SIM118 - asyncpg records have keys(), not `in`
        out["target_reports"] = row["reports"]
    return out


class ModerationService:
    """Reports, the queue, removals. Holds no state; see the module docstring."""

    def __init__(
        self, settings: Settings, db: asyncpg.Pool, router: ShardRouter, admin: AdminService
    ) -> None:
        self.settings = settings
        self.db = db
        self.router = router
        self.admin = admin

    # -- reports --------------------------------------------------------------------------------
    async def report(
        self, user_id: str, body: ReportBody, key: str | None = None
    ) -> dict[str, Any]:
        """File a report; a retry with the same idempotency ``key`` returns the first one."""
        if key is not None:
            first = await self.db.fetchrow(
                f"SELECT {_REPORT_COLUMNS} FROM reports WHERE reporter_id = $1 AND idem_key = $2",
                user_id,
                key,
            )
            if first is not None:
                return {"report": report_public(first)}
        kind, ident = body.target.kind, body.target.id
        author = await self.db.fetchval(_AUTHOR_SQL[kind], ident)
        if author is None or (kind == "message" and not await self._sees(user_id, ident)):
            raise NotFound(f"no such {kind}")
        if author == user_id:
            raise BadRequest("you cannot report yourself or your own content")
        recent = await self.db.fetchval(
            "SELECT count(*) FROM reports WHERE reporter_id = $1"
            " AND created_at > now() - interval '1 hour'",
            user_id,
        )
        if recent >= self.settings.report_max_per_hour:
            raise RateLimited("too many reports in the last hour", retry_after_s=600)
        try:
            row = await self.db.fetchrow(
                "INSERT INTO reports (id, reporter_id, target_kind, target_id, target_user,"
                " reason, note, severity, idem_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                f" RETURNING {_REPORT_COLUMNS}",
                new_id(),
                user_id,
                kind,
                ident,
                author,
                body.reason,
                body.note,
                SEVERITY[body.reason],
                key,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("you already have an open report on this") from None
        assert row is not None
        await self._maybe_hide(kind, ident)
        return {"report": report_public(row)}

    async def _sees(self, user_id: str, message_id: str) -> bool:
        """Rule 7: a message of a member room is reported only by a member of it."""
        room_id = await self.db.fetchval("SELECT room_id FROM messages WHERE id = $1", message_id)
        ref = parse_room(str(room_id))
        if ref is None or ref.kind == "neighbourhood":
            return ref is not None
        return await chat_store.membership(self.db, ref.room_id, user_id) == "member"

    async def _maybe_hide(self, kind: str, ident: str) -> None:
        threshold = self.settings.report_hide_threshold
        if threshold <= 0 or kind not in CONTENT_KINDS:
            return
        reporters = await self.db.fetchval(
            "SELECT count(DISTINCT reporter_id) FROM reports WHERE target_kind = $1"
            " AND target_id = $2 AND status = 'open'",
            kind,
            ident,
        )
        if reporters != threshold:  # exactly at the threshold: hidden once
            return
        reason = f"hidden pending review: reported by {reporters} neighbours"
        try:
            await self._remove(
                None, kind, ident, reason, "content.hide", f"hide:{uuid.uuid4().hex}"
            )
        except (Conflict, NotFound) as err:  # already removed by a moderator meanwhile
            log.info("content %s:%s not hidden: %s", kind, ident, err.message)

    # -- the queue ------------------------------------------------------------------------------
    async def queue(self, staff: Staff, status: str, cursor: str | None) -> dict[str, Any]:
        staff.require("reports.list")
        if status not in ("open", "resolved"):
            raise BadRequest("status: open or resolved")
        offset = (SeqCursor.decode(cursor) or 1) - 1
        limit = 50
        rows = await self.db.fetch(
            f"SELECT {_REPORT_COLUMNS}, count(*) OVER w AS reports,"
            " max(severity) OVER w AS top FROM reports WHERE status = $1"
            " WINDOW w AS (PARTITION BY target_kind, target_id)"
            " ORDER BY top DESC, reports DESC, target_kind, target_id, created_at, id"
            " OFFSET $2 LIMIT $3",
            status,
            offset,
            limit + 1,
        )
        items = [report_public(r) for r in rows[:limit]]
        more = len(rows) > limit
        return {
            "items": items,
            "next_cursor": SeqCursor.encode(offset + limit + 1) if more else None,
        }

    async def resolve(self, staff: Staff, report_id: str, body: ResolveBody) -> dict[str, Any]:
        staff.require("reports.resolve")
        row = await self.db.fetchrow(
            f"SELECT {_REPORT_COLUMNS} FROM reports WHERE id = $1", report_id
        )
        if row is None:
            raise NotFound("no such report")
        if row["status"] != "open":
            raise Conflict("this report is already resolved")
        kind, ident = row["target_kind"], row["target_id"]
        note = body.note or f"report: {row['reason']}"
        if body.action == "remove":
            if kind not in CONTENT_KINDS:
                raise BadRequest("a user is suspended, not removed")
            if await self._hidden(kind, ident):  # hidden by the reports already: it stays out
                return await self._close(staff, row, body)
            await self._remove(
                staff.user_id, kind, ident, note, "content.remove", f"report:{report_id}"
            )
        elif body.action == "suspend":
            if row["target_user"] is None:
                raise BadRequest("this report names no user")
            await self.admin.suspend(staff, row["target_user"], SuspendBody(reason=note))
        elif await self._hidden(kind, ident):  # dismissed: what reports hid comes back
            await self._remove(
                None,
                kind,
                ident,
                "reports dismissed",
                "content.restore",
                f"restore:{report_id}",
                restore=True,
            )
        return await self._close(staff, row, body)

    async def _hidden(self, kind: str, ident: str) -> bool:
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM moderation_actions WHERE kind = 'remove' AND target_kind = $1"
                " AND target_id = $2 AND actor_id IS NULL AND reversed_at IS NULL",
                kind,
                ident,
            )
        )

    async def _close(self, staff: Staff, row: asyncpg.Record, body: ResolveBody) -> dict[str, Any]:
        async with self.db.acquire() as conn, conn.transaction():
            closed = await conn.fetch(
                "UPDATE reports SET status = 'resolved', resolution = $3, resolved_by = $4,"
                " resolved_note = $5, resolved_at = now() WHERE target_kind = $1"
                f" AND target_id = $2 AND status = 'open' RETURNING {_REPORT_COLUMNS}",
                row["target_kind"],
                row["target_id"],
                body.action,
                staff.user_id,
                body.note,
            )
            ids = [r["id"] for r in closed]
            if row["id"] not in ids:
                raise Conflict("this report is already resolved")
            await st.audit(
                conn,
                staff.user_id,
                "report.resolve",
                f"{row['target_kind']}:{row['target_id']}",
                body.note,
                {"action": body.action, "reports": ids},
            )
            notices = [  # each reporter hears what came of it (not who decided)
                await st.inbox_event(
                    conn,
                    r["reporter_id"],
                    "notification",
                    {"kind": "report.resolved", "report_id": r["id"], "outcome": body.action},
                )
                for r in closed
            ]
        await publish(self.admin.redis, notices)
        mine = next(r for r in closed if r["id"] == row["id"])
        return {"report": report_public(mine)}

    # -- removal --------------------------------------------------------------------------------
    async def remove(self, staff: Staff, body: RemoveBody) -> dict[str, Any]:
        staff.require("content.remove")
        if body.kind not in CONTENT_KINDS:
            raise BadRequest("kind: a user is suspended, not removed")
        result = await self._remove(
            staff.user_id,
            body.kind,
            body.id,
            body.reason,
            "content.remove",
            f"remove:{uuid.uuid4().hex}",
        )
        return {"removed": True, "action_id": result.get("action_id")}

    async def restore(
        self, actor_id: str | None, kind: str, ident: str, reason: str, key: str
    ) -> dict[str, Any]:
        return await self._remove(
            actor_id, kind, ident, reason, "content.restore", key, restore=True
        )

    async def _remove(
        self,
        actor_id: str | None,
        kind: str,
        ident: str,
        reason: str,
        action: str,
        key: str,
        restore: bool = False,
    ) -> dict[str, Any]:
        command: ShardCommand
        if kind == "message":
            room_id = await self.db.fetchval("SELECT room_id FROM messages WHERE id = $1", ident)
            if room_id is None:
                raise NotFound("no such message")
            command = MessageRemove(
                user_id=SYSTEM,
                key=key,
                room_id=room_id,
                message_id=ident,
                reason=reason,
                actor_id=actor_id,
                action=action,
                restore=restore,
            )
        else:
            command = EntityRemove(
                user_id=SYSTEM,
                key=key,
                kind=kind,
                target_id=ident,
                reason=reason,
                actor_id=actor_id,
                action=action,
                restore=restore,
            )
        return await self.router.call(command)
