"""Disputes: a buyer contests a paid order; the vendor responds or refunds; an admin resolves.

The steps are the state machine of models/admin.py (``dispute_step``: an illegal step is a
``conflict``, and changes nothing). A refund, whole or partial (``amount``: 1 up to what is
left to refund, in the order's currency; none: all of it), is the order's ``order.refund`` on
its owner shard (models/market.py ``OrderRefund``, by the admin or the vendor, keyed by the
dispute so a retry is the same refund), then the provider's refund (``MarketService.run_refund``:
the existing path, retried by the sweeper until it succeeds); only then does the dispute move,
conditionally on the state it was read in, with its audit entry (an admin's resolve) in the same
transaction. Both parties get ``dispute.updated {dispute}`` on their inbox, and
``order.updated`` comes from the order's owner when money moves. Orders a buyer may dispute:
paid, accepted, fulfilled, completed (an admin's or the vendor's refund reaches a completed
order too). An open dispute holds its order's payout (services/payout_holds.py): the hold is
placed in the transaction that opens it and released in the one that closes it.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from models.admin import (
    DISPUTABLE_ORDERS,
    DISPUTE_STATES,
    OPEN,
    REFUNDED,
    REJECTED,
    DisputeReason,
    SeqCursor,
    dispute_step,
    target_ref,
)
from models.errors import BadRequest, Conflict, NotFound
from models.ids import new_id
from models.market import ActorKind
from models.rbac import Staff
from models.streams import Event
from services.market import SYSTEM, Actor, MarketService
from services.payout_holds import hold_in, release_dispute_in
from store import admin_store as st
from store.fanout import publish

_COLUMNS = (
    "id, order_id, buyer_id, vendor_id, vendor_user, reason, text, status, response,"
    " outcome_note, amount, created_at, updated_at"
)


CLOSED = frozenset({REFUNDED, REJECTED})
"""Dispute states that release the order's payout hold."""


class DisputeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(min_length=1, max_length=128)
    reason: DisputeReason
    text: str = Field(min_length=1, max_length=5000)


_CURRENCY = "^[A-Za-z]{3}$"


class RespondBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=5000)
    refund: bool = False
    amount: int | None = Field(None, ge=1, le=2**62)
    """With ``refund``: how much (minor units); none: all that is left."""
    currency: str | None = Field(None, pattern=_CURRENCY)


class ResolveDisputeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str = Field(pattern="^(refund|reject)$")
    amount: int | None = Field(None, ge=1, le=2**62)
    currency: str | None = Field(None, pattern=_CURRENCY)
    note: str | None = Field(None, max_length=1000)


def dispute_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "order_id": row["order_id"],
        "buyer_id": row["buyer_id"],
        "vendor_id": row["vendor_id"],
        "reason": row["reason"],
        "text": row["text"],
        "status": row["status"],
        "response": row["response"],
        "outcome_note": row["outcome_note"],
        "amount": row["amount"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


class DisputeService:
    """Opening, responding to and resolving disputes; holds no state (see module docstring)."""

    def __init__(self, db: asyncpg.Pool, redis: aioredis.Redis, market: MarketService) -> None:
        self.db = db
        self.redis = redis
        self.market = market

    async def _notify(self, conn: Any, row: asyncpg.Record) -> list[Event]:
        data = {"dispute": dispute_public(row)}
        return [
            await st.inbox_event(conn, user, "dispute.updated", data)
            for user in (row["buyer_id"], row["vendor_user"])
        ]

    async def open(self, user_id: str, body: DisputeBody, key: str | None = None) -> dict[str, Any]:
        """Open a dispute; a retry with the same idempotency ``key`` returns the first one."""
        if key is not None:
            first = await self.db.fetchrow(
                f"SELECT {_COLUMNS} FROM disputes WHERE buyer_id = $1 AND idem_key = $2",
                user_id,
                key,
            )
            if first is not None:
                return {"dispute": dispute_public(first)}
        order = await self.db.fetchrow(
            "SELECT id, buyer_id, vendor_id, vendor_user_id, status, total FROM orders"
            " WHERE id = $1",
            body.order_id,
        )
        if order is None or order["buyer_id"] != user_id:
            raise NotFound("no such order")
        if order["status"] not in DISPUTABLE_ORDERS:
            raise Conflict(f"an order that is {order['status']} cannot be disputed")
        async with self.db.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    "INSERT INTO disputes (id, order_id, buyer_id, vendor_id, vendor_user, reason,"
                    " text, status, idem_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    f" RETURNING {_COLUMNS}",
                    new_id(),
                    order["id"],
                    user_id,
                    order["vendor_id"],
                    order["vendor_user_id"],
                    body.reason,
                    body.text,
                    OPEN,
                    key,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict("this order already has a dispute") from None
            assert row is not None
            reason = f"dispute {row['id']} is open"
            await hold_in(conn, order["vendor_id"], order["id"], reason, None, row["id"])
            events = await self._notify(conn, row)
        await publish(self.redis, events)
        return {"dispute": dispute_public(row)}

    async def _row(self, dispute_id: str) -> asyncpg.Record:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM disputes WHERE id = $1", dispute_id)
        if row is None:
            raise NotFound("no such dispute")
        return row

    async def _page(
        self, where: str, arg: str | None, status: str | None, cursor: str | None
    ) -> dict[str, Any]:
        if status is not None and status not in DISPUTE_STATES:
            raise BadRequest(f"status: one of {list(DISPUTE_STATES)}")
        offset = (SeqCursor.decode(cursor) or 1) - 1
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM disputes WHERE ({where})"
            " AND ($2::text IS NULL OR status = $2)"
            " ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT 51",
            arg,
            status,
            offset,
        )
        more = len(rows) > 50
        return {
            "items": [dispute_public(r) for r in rows[:50]],
            "next_cursor": SeqCursor.encode(offset + 51) if more else None,
        }

    async def of_vendor(
        self, vendor_id: str, status: str | None, cursor: str | None
    ) -> dict[str, Any]:
        return await self._page("vendor_id = $1", vendor_id, status, cursor)

    async def listed(self, staff: Staff, status: str | None, cursor: str | None) -> dict[str, Any]:
        staff.require("disputes.list")
        return await self._page("$1::text IS NULL", None, status, cursor)

    async def _refund(
        self, row: asyncpg.Record, actor: ActorKind, amount: int | None, currency: str | None
    ) -> int:
        """The order's refund at its owner shard, then at the provider (existing path); the
        amount it refunded."""
        vendor = {"id": row["vendor_id"]} if actor == "vendor" else None
        who = Actor(user_id=SYSTEM, key=f"dispute:{row['id']}", vendor=vendor)
        reason = f"dispute refund by the {actor}"
        result = await self.market.refund(who, row["order_id"], actor, amount, currency, reason)
        return int(result["amount"])

    async def _move(
        self,
        row: asyncpg.Record,
        action: str,
        actor: ActorKind,
        changes: dict[str, Any],
        audit: tuple[str | None, str | None] | None = None,
    ) -> dict[str, Any]:
        target = dispute_step(row["status"], action, actor)
        if target == REFUNDED:
            amount = changes.pop("amount", None)
            changes["amount"] = await self._refund(row, actor, amount, changes.pop("currency"))
        async with self.db.acquire() as conn, conn.transaction():
            moved = await conn.fetchrow(
                "UPDATE disputes SET status = $3, response = coalesce($4, response),"
                " outcome_note = coalesce($5, outcome_note), amount = coalesce($6, amount),"
                f" updated_at = now() WHERE id = $1 AND status = $2 RETURNING {_COLUMNS}",
                row["id"],
                row["status"],
                target,
                changes.get("response"),
                changes.get("note"),
                changes.get("amount"),
            )
            if moved is None:
                raise Conflict("the dispute changed meanwhile: read it again")
            if target in CLOSED:
                await release_dispute_in(conn, row["id"], f"dispute {target}")
            if audit is not None:
                result = {"status": target, "order_id": row["order_id"]}
                if target == REFUNDED:
                    result["amount"] = changes["amount"]
                await st.audit(
                    conn,
                    audit[0],
                    "dispute.resolve",
                    target_ref("dispute", row["id"]),
                    audit[1],
                    result,
                )
            events = await self._notify(conn, moved)
        await publish(self.redis, events)
        return {"dispute": dispute_public(moved)}

    async def respond(self, vendor_id: str, dispute_id: str, body: RespondBody) -> dict[str, Any]:
        row = await self._row(dispute_id)
        if row["vendor_id"] != vendor_id:
            raise NotFound("no such dispute")
        if not body.refund and (body.amount is not None or body.currency is not None):
            raise BadRequest("amount and currency go with refund: true")
        action = "refund" if body.refund else "respond"
        changes: dict[str, Any] = {
            "response": body.text, "amount": body.amount, "currency": body.currency,
        }  # fmt: skip
        return await self._move(row, action, "vendor", changes)

    async def resolve(
        self, staff: Staff, dispute_id: str, body: ResolveDisputeBody
    ) -> dict[str, Any]:
        staff.require("disputes.resolve")
        row = await self._row(dispute_id)
        if body.outcome != "refund" and (body.amount is not None or body.currency is not None):
            raise BadRequest("amount and currency go with the outcome refund")
        changes: dict[str, Any] = {
            "note": body.note, "amount": body.amount, "currency": body.currency,
        }  # fmt: skip
        return await self._move(row, body.outcome, "admin", changes, (staff.user_id, body.note))
