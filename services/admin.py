"""User administration: roles, suspensions and the audit log (docs/admin.md).

``AdminService`` owns no state: Postgres has it. Every action checks its permission
(models/rbac.py) and the rank rules, writes its change and its audit entry in one transaction,
and only after COMMIT makes the change felt live:

- a role change is broadcast (``user.roles`` on the control channel) and every gateway updates
  the user's open sockets; REST reads roles from Postgres on every request anyway;
- a suspension is broadcast (``user.suspended``): every gateway closes the user's sockets with
  4003; sign-ins are refused with ``403 forbidden`` ``{reason: "suspended", until}`` (accounts);
  the user's pending orders are released through their owner shards (rule 2); the user's inbox
  gets a ``notification`` with the reason; if the user is a vendor, its listings leave every
  read op and checkout until the suspension ends (``vendor.suspend`` at the vendor's owner
  shard, sent again by the control actor's sweep should it have failed: ``sync_vendors``);
- an admin's refund of an order, whole or partial (``refund_order``), runs at the order's owner
  shard, which writes its audit entry with the refund, then at the provider.

A lost broadcast (Redis down) is logged; REST and refresh refuse from Postgres regardless.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from models import rbac
from models.admin import target_ref
from models.auth import normalize_email
from models.commands import route_of
from models.errors import AppError, BadRequest, Conflict, NotFound
from models.market import OrderAct, VendorSuspend
from models.rbac import Staff
from models.streams import Event
from services.market import SYSTEM, Actor, MarketService
from store import admin_store as st
from store.fanout import CONTROL_CHANNEL, publish

log = logging.getLogger("hyperlocal.admin")


class RolesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(max_length=8)


class SuspendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)
    until: datetime | None = None


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int | None = Field(None, ge=1, le=2**62)
    """Minor units; none: all that is left to refund."""
    currency: str | None = Field(None, pattern="^[A-Za-z]{3}$")
    reason: str = Field(min_length=1, max_length=500)


class AdminService:
    """Roles, suspensions, the audit log. See the module docstring for what is guaranteed."""

    def __init__(self, db: asyncpg.Pool, redis: aioredis.Redis, market: MarketService) -> None:
        self.db = db
        self.redis = redis
        self.market = market

    # -- shared plumbing ------------------------------------------------------------------------
    async def broadcast(self, message: dict[str, Any]) -> None:
        try:
            await self.redis.publish(CONTROL_CHANNEL, json.dumps(message))
        except (RedisError, OSError) as exc:
            log.warning("control message %s not broadcast: %r", message.get("kind"), exc)

    async def publish(self, events: list[Event]) -> None:
        await publish(self.redis, events)

    async def _target(self, conn: Any, user_id: str) -> asyncpg.Record:
        row = await st.user_row(conn, user_id, lock=True)
        if row is None:
            raise NotFound("no such user")
        return row

    # -- reads ----------------------------------------------------------------------------------
    async def user(self, staff: Staff, user_id: str) -> dict[str, Any]:
        staff.require("users.get")
        row = await st.user_row(self.db, user_id)
        if row is None:
            raise NotFound("no such user")
        return {"user": st.admin_user(row)}

    async def find(self, staff: Staff, email: str) -> dict[str, Any]:
        return await self.user(staff, await self._by_email(email))

    async def audit(
        self,
        staff: Staff,
        actor_id: str | None = None,
        target: str | None = None,
        action: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        staff.require("audit.list")
        if not 1 <= limit <= 200:
            raise BadRequest("limit: must be 1 to 200")
        return await st.audit_page(self.db, actor_id, target, action, cursor, limit)

    # -- roles ----------------------------------------------------------------------------------
    async def set_roles(
        self, staff: Staff, user_id: str, wanted: list[str], reason: str | None = None
    ) -> dict[str, Any]:
        staff.require("users.roles")
        async with self.db.acquire() as conn, conn.transaction():
            row = await self._target(conn, user_id)
            rbac.require_over(staff.user_id, staff.roles, user_id, row["roles"])
            roles = rbac.new_roles(staff.user_id, staff.roles, row["roles"], wanted)
            before = list(row["roles"])
            row = await st.set_roles(conn, user_id, roles)
            user = st.admin_user(row)
            result = {"before": before, "after": list(roles)}
            await st.audit(
                conn, staff.user_id, "roles.set", target_ref("user", user_id), reason, result
            )
        await self.broadcast({"kind": "user.roles", "user_id": user_id, "roles": list(roles)})
        return {"user": user}

    async def id_of(self, email: str) -> str:
        """The id of the user with this email, or ``not_found``."""
        return await self._by_email(email)

    async def _by_email(self, email: str) -> str:
        user_id = await st.user_id_by_email(self.db, normalize_email(email))
        if user_id is None:
            raise NotFound(f"no user with email {email}")
        return user_id

    async def grant(self, staff: Staff, email: str, role: str) -> dict[str, Any]:
        """Add one role to the user with this email (the CLI's ``admin grant``)."""
        user_id = await self._by_email(email)
        row = await st.user_row(self.db, user_id)
        assert row is not None
        return await self.set_roles(staff, user_id, [*row["roles"], role], f"grant {role}")

    async def revoke(self, staff: Staff, email: str, role: str) -> dict[str, Any]:
        user_id = await self._by_email(email)
        row = await st.user_row(self.db, user_id)
        assert row is not None
        if role not in rbac.STAFF_ROLES:
            raise BadRequest(f"only {sorted(rbac.STAFF_ROLES)} can be revoked")
        kept = [r for r in row["roles"] if r != role]
        return await self.set_roles(staff, user_id, kept, f"revoke {role}")

    # -- suspensions ----------------------------------------------------------------------------
    async def suspend(self, staff: Staff, user_id: str, body: SuspendBody) -> dict[str, Any]:
        staff.require("users.suspend")
        until = body.until
        if until is not None:
            if until.tzinfo is None:
                until = until.replace(tzinfo=UTC)
            if until <= datetime.now(UTC):
                raise BadRequest("until: must be in the future")
        async with self.db.acquire() as conn, conn.transaction():
            row = await self._target(conn, user_id)
            rbac.require_over(staff.user_id, staff.roles, user_id, row["roles"])
            user, action_id, notice = await self._suspend_in(
                conn, staff, user_id, body.reason, until
            )
        await self._after_suspend(user_id, action_id, notice)
        return {"user": user, "action_id": action_id}

    async def _suspend_in(
        self, conn: Any, staff: Staff, user_id: str, reason: str, until: datetime | None
    ) -> tuple[dict[str, Any], str, Event]:
        """The suspension's writes inside the caller's transaction (also used by reports)."""
        user = st.admin_user(await st.suspend(conn, user_id, reason, until))
        action = await st.add_action(
            conn, "suspend", "user", user_id, user_id, staff.user_id, reason, until
        )
        result = {"action_id": action["id"], "until": user["suspended_until"]}
        await st.audit(
            conn, staff.user_id, "user.suspend", target_ref("user", user_id), reason, result
        )
        notice = await st.inbox_event(
            conn,
            user_id,
            "notification",
            {
                "kind": "moderation.suspended",
                "action_id": action["id"],
                "reason": reason,
                "until": user["suspended_until"],
            },
        )
        return user, action["id"], notice

    async def _after_suspend(self, user_id: str, action_id: str, notice: Event) -> None:
        await self.publish([notice])
        await self.broadcast({"kind": "user.suspended", "user_id": user_id})
        await self.release_pending_orders(user_id, action_id)
        await self.vendor_suspended(user_id, True)

    async def after_unsuspend(self, user_id: str, notice: Event) -> None:
        """What follows a lifted suspension's commit: the notice, the vendor's listings back."""
        await self.publish([notice])
        await self.vendor_suspended(user_id, False)

    async def vendor_suspended(self, user_id: str, suspended: bool) -> bool:
        """Flag (or unflag) the user's vendor listings at the vendor's owner shard; False if
        the shard could not be reached (the sweep, ``sync_vendors``, sends it again)."""
        vendor_id = await self.db.fetchval("SELECT id FROM vendors WHERE user_id = $1", user_id)
        if vendor_id is None:
            return True
        command = VendorSuspend(
            user_id=SYSTEM, key=f"vendor-suspend:{uuid.uuid4().hex}", vendor_id=vendor_id,
            suspended=suspended,
        )  # fmt: skip
        try:
            await self.market.mutate(command)
        except AppError as err:
            log.warning("vendor %s suspended=%s not applied yet: %s", vendor_id, suspended,
                        err.message)  # fmt: skip
            return False
        return True

    async def sync_vendors(self, limit: int = 100) -> int:
        """Vendors whose suspension flag disagrees with their user's (a ``vendor.suspend`` that
        failed): sent again (the control actor's sweep). The number put right."""
        rows = await self.db.fetch(
            "SELECT v.user_id, u.disabled_at IS NOT NULL AS suspended FROM vendors v"
            " JOIN users u ON u.id = v.user_id"
            " WHERE (u.disabled_at IS NOT NULL) <> (v.suspended_at IS NOT NULL) LIMIT $1",
            limit,
        )
        fixed = 0
        for row in rows:
            fixed += await self.vendor_suspended(row["user_id"], row["suspended"])
        return fixed

    async def release_pending_orders(self, user_id: str, action_id: str) -> int:
        """Release the reservations of the user's pending orders at their owner shards."""
        rows = await self.db.fetch(
            "SELECT id FROM orders WHERE buyer_id = $1 AND status = 'pending_payment'", user_id
        )
        released = 0
        for row in rows:
            command = OrderAct(
                user_id=SYSTEM,
                key=f"suspend:{action_id}:{row['id']}",
                order_id=row["id"],
                action="release",
                actor="system",
                reason="the buyer was suspended",
            )
            try:
                result = await self.market.mutate(command)
            except AppError as err:  # paid meanwhile, or a shard away: the sweeper expires it
                log.warning("order %s not released on suspension: %s", row["id"], err.message)
                continue
            released += bool(result.get("changed", True))
        return released

    async def unsuspend(
        self, staff: Staff, user_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        staff.require("users.unsuspend")
        async with self.db.acquire() as conn, conn.transaction():
            row = await self._target(conn, user_id)
            rbac.require_over(staff.user_id, staff.roles, user_id, row["roles"])
            if row["disabled_at"] is None:
                raise Conflict("this user is not suspended")
            user, notice = await self.unsuspend_in(conn, staff.user_id, user_id, reason)
        await self.after_unsuspend(user_id, notice)
        return {"user": user}

    async def unsuspend_in(
        self, conn: Any, actor_id: str | None, user_id: str, reason: str | None
    ) -> tuple[dict[str, Any], Event]:
        actions = await st.open_suspension_actions(conn, user_id)
        await st.reverse_actions(conn, actions, actor_id)
        user = st.admin_user(await st.unsuspend(conn, user_id))
        await st.audit(
            conn,
            actor_id,
            "user.unsuspend",
            target_ref("user", user_id),
            reason,
            {"reversed": actions},
        )
        notice = await st.inbox_event(
            conn, user_id, "notification", {"kind": "moderation.unsuspended", "reason": reason}
        )
        return user, notice

    async def lift_expired(self) -> int:
        """Lift every suspension whose ``until`` has passed (the control actor's sweep)."""
        lifted = 0
        for user_id in await st.expired_suspensions(self.db):
            async with self.db.acquire() as conn, conn.transaction():
                row = await st.user_row(conn, user_id, lock=True)
                if row is None or row["disabled_at"] is None:
                    continue
                until = row["suspended_until"]
                if until is None or until > datetime.now(UTC):
                    continue
                _, notice = await self.unsuspend_in(conn, None, user_id, "suspension ended")
            await self.after_unsuspend(user_id, notice)
            lifted += 1
        return lifted

    # -- money ----------------------------------------------------------------------------------
    async def refund_order(
        self, staff: Staff, order_id: str, body: RefundBody, key: str | None
    ) -> dict[str, Any]:
        """Refund ``body.amount`` (none: all that is left) of an order, whatever its state but
        unpaid or refunded; a retry with the same idempotency ``key`` is the same refund."""
        staff.require("orders.refund")
        route_of(order_id, "order")  # a made-up id is not_found before any shard
        who = Actor(SYSTEM, f"admin-refund:{key or uuid.uuid4().hex}")
        audit = {"actor_id": staff.user_id, "action": "order.refund", "reason": body.reason}
        result = await self.market.refund(
            who, order_id, "admin", body.amount, body.currency, body.reason, audit
        )
        return {"order": result["order"], "refund_id": result["refund_id"],
                "amount": result["amount"]}  # fmt: skip
