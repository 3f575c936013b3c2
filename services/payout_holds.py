"""Payout holds: what stops money from going out to a vendor (docs/admin.md, "Payout holds").

Payouts (services/payouts.py, docs/payments.md) honour what is here:

- a **dispute** holds the payout of its order from the moment it opens until it closes
  (refunded or rejected): the hold is written and released in the dispute's own transactions
  (services/disputes.py, ``hold_in`` / ``release_dispute_in``);
- an **admin** holds one order's payout, or all of a vendor's (``order_id`` None), and
  releases it, through the control actor (``payouts.hold``, ``payouts.release``, audited in
  the same transaction);
- a **suspended vendor** is paid nothing while suspended (``vendors.suspended_at``).

``payout_blocked(vendor_id, order_ids)`` is the one question a payout asks before paying
anything, inside its own transaction if it passes its connection: the open holds and the
suspension that block it (empty: nothing does). Holds are rows of ``payout_holds``; this
service keeps no state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from models.admin import SeqCursor, target_ref
from models.errors import BadRequest, Conflict, NotFound
from models.ids import new_id
from models.rbac import Staff
from store import admin_store as st
from store.db import Conn, Db

_COLUMNS = (
    "id, vendor_id, order_id, dispute_id, reason, actor_id, created_at, released_at,"
    " released_by, release_note"
)


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vendor_id: str = Field(min_length=1, max_length=128)
    order_id: str | None = Field(None, min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500)


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=500)


def hold_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "vendor_id": row["vendor_id"],
        "order_id": row["order_id"],
        "dispute_id": row["dispute_id"],
        "reason": row["reason"],
        "actor_id": row["actor_id"],
        "status": "released" if row["released_at"] is not None else "open",
        "created_at": st.iso(row["created_at"]),
        "released_at": st.iso(row["released_at"]),
        "released_by": row["released_by"],
        "release_note": row["release_note"],
    }


def vendor_hold(hold: dict[str, Any]) -> dict[str, Any]:
    """An open hold as its vendor sees it: what is held and why, not which staff member held
    it (``actor_id``) nor anything of its release."""
    return {k: hold[k] for k in ("id", "order_id", "dispute_id", "reason", "created_at")}


async def hold_in(
    conn: Conn,
    vendor_id: str,
    order_id: str | None,
    reason: str,
    actor_id: str | None,
    dispute_id: str | None = None,
) -> asyncpg.Record:
    """A new open hold, inside the caller's transaction; ``conflict`` if that one is open."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO payout_holds (id, vendor_id, order_id, dispute_id, reason, actor_id)"
            f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            new_id(),
            vendor_id,
            order_id,
            dispute_id,
            reason,
            actor_id,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("this payout is already held") from None
    assert row is not None
    return row


async def release_dispute_in(conn: Conn, dispute_id: str, note: str) -> list[str]:
    """Release the open hold a dispute placed, inside the dispute's closing transaction."""
    rows = await conn.fetch(
        "UPDATE payout_holds SET released_at = now(), release_note = $2"
        " WHERE dispute_id = $1 AND released_at IS NULL RETURNING id",
        dispute_id,
        note,
    )
    return [r["id"] for r in rows]


async def payout_blocked(
    db: Db, vendor_id: str, order_ids: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """What blocks paying ``vendor_id`` out (for ``order_ids``; none given: any payout of the
    vendor at all): its open vendor-wide holds, the open holds of those orders (every order's
    when none are given) and ``{"reason": "vendor_suspended"}`` while the vendor is suspended.
    Empty: nothing blocks it. Issue 17's payouts must call this before paying, and skip (and
    keep) what it names; on their transaction's connection, it sees that transaction."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM payout_holds WHERE vendor_id = $1 AND released_at IS NULL"
        " AND (order_id IS NULL OR cardinality($2::text[]) = 0 OR order_id = ANY($2::text[]))"
        " ORDER BY created_at, id",
        vendor_id,
        list(order_ids),
    )
    blocked = [{"reason": "hold", "hold": hold_public(r)} for r in rows]
    if await db.fetchval("SELECT suspended_at FROM vendors WHERE id = $1", vendor_id):
        blocked.append({"reason": "vendor_suspended"})
    return blocked


async def orders_held(db: Db, order_ids: Sequence[str]) -> set[str]:
    """Which of ``order_ids`` have an open hold of their own (a release leaves them queued;
    vendor-wide holds and suspensions block payouts, not releases)."""
    rows = await db.fetch(
        "SELECT DISTINCT order_id FROM payout_holds WHERE released_at IS NULL"
        " AND order_id = ANY($1::text[])",
        list(order_ids),
    )
    return {r["order_id"] for r in rows}


class PayoutHolds:
    """The admin side of payout holds: place, release, list (see the module docstring)."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db

    async def blocked(self, vendor_id: str, order_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        return await payout_blocked(self.db, vendor_id, order_ids)

    async def hold(self, staff: Staff, body: HoldBody) -> dict[str, Any]:
        staff.require("payouts.hold")
        async with self.db.acquire() as conn, conn.transaction():
            vendor = await conn.fetchval("SELECT id FROM vendors WHERE id = $1", body.vendor_id)
            if vendor is None:
                raise NotFound("no such vendor")
            if body.order_id is not None:
                owner = await conn.fetchval(
                    "SELECT vendor_id FROM orders WHERE id = $1", body.order_id
                )
                if owner != body.vendor_id:
                    raise NotFound("no such order of this vendor")
            row = await hold_in(conn, body.vendor_id, body.order_id, body.reason, staff.user_id)
            await st.audit(conn, staff.user_id, "payout.hold", _target(row), body.reason,
                           {"hold_id": row["id"]})  # fmt: skip
        return {"hold": hold_public(row)}

    async def release(self, staff: Staff, hold_id: str, body: ReleaseBody) -> dict[str, Any]:
        staff.require("payouts.release")
        async with self.db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM payout_holds WHERE id = $1 FOR UPDATE", hold_id
            )
            if row is None:
                raise NotFound("no such payout hold")
            if row["released_at"] is not None:
                raise Conflict("this payout hold is already released")
            if row["dispute_id"] is not None:
                raise Conflict("a dispute's hold is released when the dispute closes")
            row = await conn.fetchrow(
                "UPDATE payout_holds SET released_at = now(), released_by = $2,"
                f" release_note = $3 WHERE id = $1 RETURNING {_COLUMNS}",
                hold_id,
                staff.user_id,
                body.note,
            )
            assert row is not None
            await st.audit(conn, staff.user_id, "payout.release", _target(row), body.note,
                           {"hold_id": hold_id})  # fmt: skip
        return {"hold": hold_public(row)}

    async def listed(
        self, staff: Staff, vendor_id: str | None, status: str | None, cursor: str | None
    ) -> dict[str, Any]:
        staff.require("payouts.list")
        if status not in (None, "open", "released"):
            raise BadRequest("status: open or released")
        offset = (SeqCursor.decode(cursor) or 1) - 1
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM payout_holds WHERE ($1::text IS NULL OR vendor_id = $1)"
            " AND ($2::text IS NULL OR (released_at IS NULL) = ($2 = 'open'))"
            " ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT 51",
            vendor_id,
            status,
            offset,
        )
        return {
            "items": [hold_public(r) for r in rows[:50]],
            "next_cursor": SeqCursor.encode(offset + 51) if len(rows) > 50 else None,
        }


def _target(row: asyncpg.Record) -> str:
    if row["order_id"] is not None:
        return target_ref("order", row["order_id"])
    return target_ref("vendor", row["vendor_id"])
