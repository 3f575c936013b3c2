"""The risk review: held checkouts, and an admin's release or reject of them.

A checkout whose score reached ``risk_hold_score`` (services/checkout.py, models/risk.py) has
its payment ``authorized`` (nothing captured) and its orders ``held``. Here, behind the
control actor (``risk.list``, ``risk.review``: models/rbac.py):

- **queue**: held orders, longest held first, each with its checkout's full risk (signals with
  points and why), buyer and payment;
- **release**: the payment is captured at its provider, then the checkout settles as any paid
  one (services/checkout.py ``settle``: each order ``held -> paid`` at its owner shard, which
  tells the buyer and the vendor, ``order.updated``); an authorisation that is gone (lapsed,
  voided) settles as declined instead;
- **reject**: the authorisation is voided, then every held order of the checkout is released
  (``held -> cancelled``, its stock back) at its owner shard.

A decision covers the whole checkout (one payment, captured once): releasing one of its orders
releases its other held orders. It is claimed first with a conditional update of the group's
``review`` (a second admin's other decision is a ``conflict``; the same decision again resumes
what a crash interrupted: every step is idempotent by key), and written to the audit log with
its outcome once done. The sweeper rejects holds nobody reviewed within ``risk_hold_s``.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from models.admin import SeqCursor, target_ref
from models.errors import AppError, Conflict, NotFound
from models.market import HELD
from models.rbac import Staff
from services.checkout import Checkout, payment_public
from store import admin_store as st
from store import market_store as ms
from store.db import one

log = logging.getLogger("hyperlocal.risk")

_PAGE = 50


class ReviewBody(BaseModel):
    """An admin's note on a release or a reject (optional)."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=1000)


class RiskReview:
    """The review queue and its decisions; holds no state (see the module docstring)."""

    def __init__(self, checkout: Checkout) -> None:
        self.checkout = checkout
        self.market = checkout.market
        self.db: asyncpg.Pool = checkout.db

    async def queue(self, staff: Staff, cursor: str | None) -> dict[str, Any]:
        staff.require("risk.list")
        offset = (SeqCursor.decode(cursor) or 1) - 1
        items = await ms.held_orders(self.db, offset, _PAGE + 1)
        more = len(items) > _PAGE
        return {
            "items": items[:_PAGE],
            "next_cursor": SeqCursor.encode(offset + _PAGE + 1) if more else None,
        }

    async def release(self, staff: Staff, order_id: str, body: ReviewBody) -> dict[str, Any]:
        staff.require("risk.review")
        return await self._decide(staff.user_id, order_id, "release", body.note)

    async def reject(self, staff: Staff, order_id: str, body: ReviewBody) -> dict[str, Any]:
        staff.require("risk.review")
        return await self._decide(staff.user_id, order_id, "reject", body.note)

    async def reject_stale(self, limit: int = 100) -> int:
        """Reject holds older than ``risk_hold_s`` (the sweeper's step); how many."""
        done = 0
        for order_id in await ms.stale_holds(self.db, self.market.settings.risk_hold_s, limit):
            try:
                await self._decide(None, order_id, "reject", "not reviewed in time")
                done += 1
            except AppError as err:  # one stuck hold must not block the others
                log.warning("stale hold %s not rejected: %s", order_id, err.message)
        return done

    # -- one decision ---------------------------------------------------------------------------
    async def _decide(
        self, actor_id: str | None, order_id: str, outcome: str, note: str | None
    ) -> dict[str, Any]:
        row = await self._claim(actor_id, order_id, outcome, note)
        group_id = row["group_id"]
        key_base = f"risk:{group_id}:{outcome}#"
        if outcome == "release":
            payment = await self._capture(row)
            settled = "captured" if payment["status"] == "captured" else "declined"
            reason = "released by review" if settled == "captured" else "authorisation gone"
        else:
            payment = await self._void(row)
            settled, reason = "declined", "rejected by review"
        orders = await self.checkout.settle(group_id, settled, key_base, reason)
        result = {"outcome": outcome, "payment": payment["status"], "group_id": group_id}
        async with self.db.acquire() as conn, conn.transaction():
            first = await conn.fetchval(
                "UPDATE order_groups SET review = review || jsonb_build_object('done', $2::jsonb,"
                " 'at', now()) WHERE id = $1 AND NOT review ? 'done' RETURNING id",
                group_id,
                result,
            )  # two callers resuming one decision at once (two sweepers): one entry
            if first is not None:
                await st.audit(
                    conn, actor_id, f"risk.{outcome}", target_ref("order", order_id), note, result
                )
        log.info("checkout %s %sd by review (%s): payment %s", group_id, outcome, actor_id,
                 payment["status"])  # fmt: skip
        return {"orders": orders, "payment": payment_public(payment)}

    async def _claim(
        self, actor_id: str | None, order_id: str, outcome: str, note: str | None
    ) -> asyncpg.Record:
        """The order and its checkout's payment, once the decision is this one's: a held
        checkout not decided yet, or decided alike (a repeat resumes it)."""
        row = await self.db.fetchrow(
            "SELECT o.id, o.status, o.group_id, g.review, p.id AS payment_id"
            " FROM orders o JOIN order_groups g ON g.id = o.group_id"
            " LEFT JOIN payments p ON p.group_id = o.group_id WHERE o.id = $1",
            order_id,
        )
        if row is None:
            raise NotFound("no such order")
        review = row["review"] or {}
        resuming = review.get("outcome") == outcome and not review.get("done")
        if row["status"] != HELD and not resuming:
            raise Conflict(f"the order is {row['status']}, not held", order_id=order_id)
        if row["payment_id"] is None:
            raise Conflict("the held order has no payment", order_id=order_id)
        claimed = await self.db.fetchval(
            "UPDATE order_groups SET review = jsonb_build_object('outcome', $2::text,"
            " 'by', $3::text, 'note', $4::text, 'claimed_at', now())"
            " WHERE id = $1 AND (review IS NULL OR (review->>'outcome' = $2"
            " AND NOT review ? 'done')) RETURNING id",
            row["group_id"],
            outcome,
            actor_id,
            note,
        )
        if claimed is None:
            decided = (await self._review(row["group_id"])).get("outcome")
            raise Conflict(f"this checkout is already being {decided}d", order_id=order_id)
        return row

    async def _review(self, group_id: str) -> dict[str, Any]:
        value = await self.db.fetchval("SELECT review FROM order_groups WHERE id = $1", group_id)
        return dict(value or {})

    async def _payment(self, payment_id: str) -> asyncpg.Record:
        return one(await self.db.fetchrow("SELECT * FROM payments WHERE id = $1", payment_id))

    async def _capture(self, row: asyncpg.Record) -> asyncpg.Record:
        """Capture the checkout's authorised payment (idempotent at the provider by the
        payment id); the payment row afterwards."""
        payment = await self._payment(row["payment_id"])
        if payment["status"] != "authorized":
            return payment  # captured by a first attempt, or gone (settled as it stands)
        provider = self.market.provider(payment["provider"])
        result = await provider.capture(
            payment["provider_ref"], payment["amount"], f"capture:{payment['id']}"
        )
        status = "captured" if result.status == "captured" else "declined"
        updated = await self.db.fetchrow(
            "UPDATE payments SET status = $2, provider_ref = COALESCE($3, provider_ref),"
            " updated_at = now() WHERE id = $1 AND status = 'authorized' RETURNING *",
            payment["id"],
            status,
            result.provider_ref,
        )
        return updated or await self._payment(payment["id"])

    async def _void(self, row: asyncpg.Record) -> asyncpg.Record:
        """Void the checkout's authorisation; the payment row afterwards. One captured at the
        provider meanwhile (by hand, at its dashboard) cannot be rejected: ``conflict``."""
        payment = await self._payment(row["payment_id"])
        if payment["status"] == "captured":
            raise Conflict("the payment is captured: refund the orders instead")
        if payment["status"] != "authorized":
            return payment
        provider = self.market.provider(payment["provider"])
        ref = payment["provider_ref"]
        if not await provider.cancel(ref) and await provider.status(ref) == "captured":
            raise Conflict("the payment was captured at the provider: refund it instead")
        updated = await self.db.fetchrow(
            "UPDATE payments SET status = 'cancelled', updated_at = now()"
            " WHERE id = $1 AND status = 'authorized' RETURNING *",
            payment["id"],
        )
        return updated or await self._payment(payment["id"])
