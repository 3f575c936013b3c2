"""`hyperlocal admin ...`: the operator's commands, sent to the running deployment's control
actor (cluster/control.py) and audited with a null actor, by the shape cluster/action_cli.py
gives every action command."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.action_cli import Built, arg, command, fields


def _suspend(a: argparse.Namespace) -> Built:
    body: dict[str, Any] = {"reason": a.reason}
    if a.until:
        body["until"] = a.until
    return "users.suspend", {"email": a.email, "body": body}


def _refund(a: argparse.Namespace) -> Built:
    body: dict[str, Any] = {"reason": a.reason}
    if a.amount is not None:
        body["amount"] = a.amount
    if a.currency:
        body["currency"] = a.currency
    return "orders.refund", {"order_id": a.order_id, "body": body, "key": a.key}


def _hold(a: argparse.Namespace) -> Built:
    body: dict[str, Any] = {"vendor_id": a.vendor_id, "reason": a.reason}
    if a.order:
        body["order_id"] = a.order
    return "payouts.hold", {"body": body}


def _release(a: argparse.Namespace) -> Built:
    return "payouts.release", {"hold_id": a.hold_id, "body": {"note": a.note}}


_REASON = arg("--reason", required=True)


def _money(cmds: Any) -> None:
    command(
        cmds,
        "refund",
        "refund an order, whole or partly (minor units)",
        _refund,
        arg("order_id"),
        arg("--amount", type=int, help="default: all that is left to refund"),
        arg("--currency"),
        _REASON,
        arg("--key", help="idempotency key: the same key is the same refund"),
    )
    command(
        cmds,
        "hold",
        "hold a vendor's payouts (or one order's: --order)",
        _hold,
        arg("vendor_id"),
        arg("--order"),
        _REASON,
    )
    command(cmds, "release", "release a payout hold", _release, arg("hold_id"), arg("--note"))
    command(
        cmds,
        "holds",
        "payout holds, newest first",
        fields("payouts.list", "status", "cursor", vendor_id="vendor"),
        arg("--vendor"),
        arg("--status", choices=("open", "released")),
        arg("--cursor"),
    )


def register(sub: Any) -> None:
    admin = sub.add_parser("admin", help="admin actions through the control actor")
    cmds = admin.add_subparsers(dest="admin_command", required=True)
    email, role = arg("email"), arg("role")
    command(
        cmds,
        "grant",
        "give EMAIL the role ROLE (moderator, admin, ops)",
        fields("users.grant", "email", "role"),
        email,
        role,
    )
    command(
        cmds,
        "revoke",
        "take the role ROLE from EMAIL",
        fields("users.revoke", "email", "role"),
        email,
        role,
    )
    command(cmds, "show", "a user as admins see them", fields("users.find", "email"), email)
    command(
        cmds,
        "suspend",
        "suspend EMAIL: sockets closed, sign-ins refused",
        _suspend,
        email,
        _REASON,
        arg("--until", help="ISO 8601 time it ends (default: until lifted)"),
    )
    command(
        cmds,
        "unsuspend",
        "lift EMAIL's suspension",
        fields("users.unsuspend", "email", "reason"),
        email,
        arg("--reason"),
    )
    command(
        cmds,
        "audit",
        "the audit log, newest first",
        fields("audit.list", "target", "action", "limit", "cursor", actor_id="actor"),
        arg("--actor"),
        arg("--target", help="e.g. user:<id>, post:<id>"),
        arg("--action", help="e.g. roles.set, user.suspend"),
        arg("--limit", type=int, default=50),
        arg("--cursor"),
    )
    _money(cmds)
