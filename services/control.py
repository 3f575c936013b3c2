"""The control actor's interface: one table of admin actions, and the clients that reach it.

``ControlHost`` is the control actor's whole logic, plain Python over the admin services: an
action name, who takes it (``Staff``, or None for the operator at the CLI) and plain-data
arguments in; plain data out — ``{"ok": true, "data": ...}`` or ``{"ok": false, "error":
{code, message, details}}`` — so nothing but JSON-like values crosses Ray. The Ray actor
(cluster/control.py) only hosts it; ``LocalControl`` hosts it in-process (a gateway without
Ray). Callers use a ``Control``: ``RayControl`` finds the named, detached actor and calls it.

The caller's roles are read again from Postgres on every call (``_current``): a role revoked
a moment ago is gone here too, whatever the caller's socket or token still holds; a suspended
caller holds none.

Every call is audited: a change writes its entry in its own transaction; the host writes one
for each read (``READS``) and each refused or failed action (``result: {error, message}``).

No action is retried by Ray (a suspension twice would be two actions): a caller that gets
``unavailable`` may retry, and the rank and state checks make a repeat harmless or a
``conflict``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg

from models.admin import target_ref
from models.errors import AppError, BadRequest, Unavailable, error_from_dict
from models.rbac import OPERATOR, Staff
from services.admin import AdminService, RefundBody, RolesBody, SuspendBody
from services.appeals import AppealService, DecideBody
from services.disputes import DisputeService, ResolveDisputeBody
from services.moderation import ModerationService, RemoveBody, ResolveBody
from services.named_actor import NamedActor
from services.payout_holds import HoldBody, PayoutHolds, ReleaseBody
from services.payouts import Payouts
from services.risk import ReviewBody, RiskReview
from services.scaling import ClusterService
from store import admin_store as st

log = logging.getLogger("hyperlocal.control")

Action = Callable[[Staff, dict[str, Any]], Awaitable[dict[str, Any]]]


def staff_data(staff: Staff | None) -> dict[str, Any] | None:
    if staff is None or staff.user_id is None:
        return None
    return {"user_id": staff.user_id, "roles": sorted(staff.roles)}


def staff_from(data: dict[str, Any] | None) -> Staff:
    if data is None:
        return OPERATOR
    return Staff(str(data["user_id"]), frozenset(data.get("roles", ())))


class ControlHost:
    """Every admin action by name (``ACTIONS``), run with its caller; holds no state."""

    def __init__(
        self,
        admin: AdminService,
        moderation: ModerationService,
        appeals: AppealService,
        disputes: DisputeService,
        risk: RiskReview,
        holds: PayoutHolds,
        cluster: ClusterService,
        *,
        payouts: Payouts | None = None,
    ) -> None:
        self.admin = admin
        self.moderation = moderation
        self.cluster = cluster
        a, m, ap, d, r, h, c = admin, moderation, appeals, disputes, risk, holds, cluster
        self.actions: dict[str, Action] = {
            "users.get": lambda s, x: a.user(s, x["user_id"]),
            "users.find": lambda s, x: a.find(s, x["email"]),
            "users.roles": lambda s, x: a.set_roles(
                s, x["user_id"], RolesBody.model_validate(x["body"]).roles, x.get("reason")
            ),
            "users.grant": lambda s, x: a.grant(s, x["email"], x["role"]),
            "users.revoke": lambda s, x: a.revoke(s, x["email"], x["role"]),
            "users.suspend": self._suspend,
            "users.unsuspend": self._unsuspend,
            "audit.list": lambda s, x: a.audit(
                s,
                x.get("actor_id"),
                x.get("target"),
                x.get("action"),
                x.get("cursor"),
                int(x.get("limit") or 50),
            ),
            "reports.list": lambda s, x: m.queue(s, x.get("status") or "open", x.get("cursor")),
            "reports.resolve": lambda s, x: m.resolve(
                s, x["report_id"], ResolveBody.model_validate(x["body"])
            ),
            "content.remove": lambda s, x: m.remove(s, RemoveBody.model_validate(x["body"])),
            "appeals.list": lambda s, x: ap.listed(s, x.get("status"), x.get("cursor")),
            "appeals.decide": lambda s, x: ap.decide(
                s, x["appeal_id"], DecideBody.model_validate(x["body"])
            ),
            "disputes.list": lambda s, x: d.listed(s, x.get("status"), x.get("cursor")),
            "disputes.resolve": lambda s, x: d.resolve(
                s, x["dispute_id"], ResolveDisputeBody.model_validate(x["body"])
            ),
            # fraud review (services/risk.py)
            "risk.list": lambda s, x: r.queue(s, x.get("cursor")),
            "risk.release": lambda s, x: r.release(
                s, x["order_id"], ReviewBody.model_validate(x.get("body") or {})
            ),
            "risk.reject": lambda s, x: r.reject(
                s, x["order_id"], ReviewBody.model_validate(x.get("body") or {})
            ),
            "orders.refund": lambda s, x: a.refund_order(
                s, x["order_id"], RefundBody.model_validate(x["body"]), x.get("key")
            ),
            "payouts.hold": lambda s, x: h.hold(s, HoldBody.model_validate(x["body"])),
            "payouts.release": lambda s, x: h.release(
                s, x["hold_id"], ReleaseBody.model_validate(x.get("body") or {})
            ),
            "payouts.list": lambda s, x: h.listed(
                s, x.get("vendor_id"), x.get("status"), x.get("cursor")
            ),
            "cluster.view": lambda s, x: c.view(s),
            "cluster.cell": lambda s, x: c.cell(s, str(x["cell"])),
            "cluster.move": lambda s, x: c.move(s, str(x["cell"]), str(x["shard"])),
            "cluster.pin": lambda s, x: c.pin(s, str(x["cell"]), str(x["shard"])),
            "cluster.unpin": lambda s, x: c.unpin(s, str(x["cell"])),
            "cluster.scale": lambda s, x: c.scale(s, x["shards"]),
        }
        if payouts is not None:  # the ledger and payouts (issue 17, docs/payments.md)
            self.actions.update(_money_actions(payouts))

    async def _user_id(self, args: dict[str, Any]) -> str:
        """The target user of an action: ``user_id`` (REST) or ``email`` (the CLI)."""
        if args.get("user_id"):
            return str(args["user_id"])
        return await self.admin.id_of(str(args["email"]))

    async def _suspend(self, staff: Staff, args: dict[str, Any]) -> dict[str, Any]:
        body = SuspendBody.model_validate(args["body"])
        return await self.admin.suspend(staff, await self._user_id(args), body)

    async def _unsuspend(self, staff: Staff, args: dict[str, Any]) -> dict[str, Any]:
        return await self.admin.unsuspend(staff, await self._user_id(args), args.get("reason"))

    async def call(
        self, action: str, staff: dict[str, Any] | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        handler = self.actions.get(action)
        if handler is None:
            return {"ok": False, "error": BadRequest(f"unknown action {action!r}").to_dict()}
        try:
            who = await self._current(staff_from(staff))
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("control action %s: roles not read: %r", action, exc)
            return {"ok": False, "error": Unavailable("try again").to_dict()}
        try:
            data = await handler(who, args)
        except AppError as err:
            await self._note(who, action, args, {"error": err.code, "message": err.message})
            return {"ok": False, "error": err.to_dict()}
        except (KeyError, TypeError, ValueError) as exc:  # malformed args from a caller
            log.warning("control action %s: bad arguments: %r", action, exc)
            bad = BadRequest(f"bad arguments for {action}")
            await self._note(who, action, args, {"error": bad.code, "message": bad.message})
            return {"ok": False, "error": bad.to_dict()}
        if action in READS:
            await self._note(who, action, args, {"ok": True, "items": len(data.get("items", ()))})
        return {"ok": True, "data": data}

    async def _current(self, who: Staff) -> Staff:
        """The caller with their roles as Postgres has them now (none while suspended)."""
        if who.user_id is None:
            return who
        row = await st.user_row(self.admin.db, who.user_id)
        if row is None or row["disabled_at"] is not None:
            return Staff(who.user_id, frozenset())
        return Staff(who.user_id, frozenset(row["roles"]))

    async def _note(
        self, staff: Staff, action: str, args: dict[str, Any], result: dict[str, Any]
    ) -> None:
        """The audit entry of a read or a refused action (a change writes its own, in its
        transaction). Losing it must not hide the answer: logged if Postgres refuses."""
        try:
            await st.audit(self.admin.db, staff.user_id, action, _target(args), None, result)
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("audit entry of %s not written: %r", action, exc)


def _money_actions(p: Payouts) -> dict[str, Action]:
    """Revenue reports and payouts (services/ledger.py, services/payouts.py)."""
    return {
        "revenue.report": lambda s, x: p.ledger.revenue(
            s, x.get("from"), x.get("to"), x.get("group")
        ),
        "payouts.run": lambda s, x: p.run(s),
        "payouts.paid": lambda s, x: p.mark_paid(s, str(x["payout_id"]), str(x["reference"])),
        "payouts.listed": lambda s, x: p.listed(s, x.get("status")),
        "payouts.account": lambda s, x: p.account_details(s, str(x["vendor_id"])),
    }


READS = frozenset(
    {"users.get", "users.find", "audit.list", "reports.list", "appeals.list", "disputes.list",
     "risk.list", "payouts.list", "cluster.view", "cluster.cell",
     "revenue.report", "payouts.listed", "payouts.account"}
)  # fmt: skip
"""Actions that change nothing: audited by the host (a change audits itself)."""

_TARGET_ARGS = (
    ("user_id", "user"),
    ("report_id", "report"),
    ("appeal_id", "appeal"),
    ("dispute_id", "dispute"),
    ("order_id", "order"),
    ("hold_id", "hold"),
    ("payout_id", "payout"),
    ("vendor_id", "vendor"),
    ("email", "email"),
    ("cell", "cell"),
)


def _target(args: dict[str, Any]) -> str:
    """What an action's audit entry names as its target, from its arguments."""
    for name, kind in _TARGET_ARGS:
        if args.get(name):
            return target_ref(kind, str(args[name]))
    body = args.get("body")
    if isinstance(body, dict) and body.get("kind") and body.get("id"):
        return target_ref(str(body["kind"]), str(body["id"]))
    if isinstance(body, dict) and body.get("vendor_id"):
        return target_ref("vendor", str(body["vendor_id"]))
    return "-"


class Control(Protocol):
    """How the gateway and the CLI reach the control actor."""

    async def call(
        self, action: str, staff: Staff | None, args: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def refresh(self) -> None:
        """Read the control actor's loop failures now (``/metrics`` calls it)."""

    def loop_items(self) -> list[tuple[tuple[str], float]]:
        """Its loops' failed rounds as ``hl_loop_failures{loop}`` pairs (last read)."""
        ...


def unwrap(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("ok"):
        return dict(reply["data"])
    raise error_from_dict(dict(reply.get("error") or {}))


class LocalControl:
    """The control host in this process (a gateway over ``LocalTransport``, unit tests)."""

    def __init__(self, host: ControlHost) -> None:
        self.host = host

    async def call(self, action: str, staff: Staff | None, args: dict[str, Any]) -> dict[str, Any]:
        return unwrap(await self.host.call(action, staff_data(staff), args))

    async def refresh(self) -> None:
        """Nothing to read: an in-process host runs no loops of its own."""

    def loop_items(self) -> list[tuple[tuple[str], float]]:
        return []


SLOW_ACTIONS: dict[str, float] = {"cluster.scale": 180.0}
"""Actions that may take longer than ``control_call_timeout_s`` (a scale starts shard actors,
waits ``shard_start_timeout_s`` at most, and drains for ``scale_drain_s``): their timeout."""


class RayControl:
    """The named, detached control actor (``NamedActor``). Owns the last loop failures it
    answered (``refresh``; ``up`` False while it does not answer, the last counts kept)."""

    def __init__(
        self, name: str, namespace: str, timeout_s: float, stats_timeout_s: float = 2.0
    ) -> None:
        self.actor = NamedActor(name, namespace)
        self.timeout_s = timeout_s
        self.stats_timeout_s = stats_timeout_s
        """``refresh``'s bound: a scrape of ``/metrics`` must not wait out an action's."""
        self.loop_failures: dict[str, float] = {}
        self.up = False

    async def _actor(self) -> Any:
        try:
            return await self.actor.handle()
        except LookupError:
            raise Unavailable("the control actor is not running") from None

    async def refresh(self) -> None:
        """Read the actor's loop failures (``background``), bounded by ``stats_timeout_s``."""
        import ray.exceptions

        try:
            actor = await asyncio.wait_for(self._actor(), self.stats_timeout_s)
            answer = await asyncio.wait_for(actor.background.remote(), self.stats_timeout_s)
        except (Unavailable, ray.exceptions.RayError, TimeoutError) as exc:
            self.actor.forget()
            if self.up:
                log.warning("the control actor did not answer its loops: %r", exc)
            self.up = False
            return
        self.loop_failures = {str(k): float(n) for k, n in answer["loop_failures"].items()}
        self.up = True

    def loop_items(self) -> list[tuple[tuple[str], float]]:
        return [((name,), n) for name, n in self.loop_failures.items()]

    async def call(self, action: str, staff: Staff | None, args: dict[str, Any]) -> dict[str, Any]:
        import ray.exceptions

        try:
            ref = (await self._actor()).call.remote(action, staff_data(staff), args)
            reply = await asyncio.wait_for(ref, max(self.timeout_s, SLOW_ACTIONS.get(action, 0)))
        except (ray.exceptions.RayError, TimeoutError) as exc:
            self.actor.forget()
            log.warning("control actor call %s failed: %r", action, exc)
            raise Unavailable("the control actor is unavailable; try again") from None
        return unwrap(reply)
