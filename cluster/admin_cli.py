"""`hyperlocal admin ...`: the operator's commands, sent to the running deployment's control
actor (cluster/control.py) and audited with a null actor (the operator on a machine of the
deployment). The deployment is found by RAY_ADDRESS, else by the file `hyperlocal up` writes
under HL_DATA_DIR while it runs (cluster/runtime.py: ``deployment_file``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

from cluster.config import Settings, load_settings
from cluster.runtime import deployment_file
from models.errors import AppError


def _join(settings: Settings) -> tuple[str, str, str] | None:
    """(ray address, namespace, actor name) of the running deployment, or None. From the
    deployment file, Ray's authentication mode too (a fresh shell has none set)."""
    if settings.ray_address:
        return settings.ray_address, settings.ray_namespace, settings.control_actor_name
    path = deployment_file(settings)
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    mode = info.get("ray_auth_mode")
    if mode and "RAY_AUTH_MODE" not in os.environ:
        # Ray reads its authentication mode when it is imported (cluster.runtime imports it):
        # run again with the deployment's mode in the environment, as its own processes have.
        env = {**os.environ, "RAY_AUTH_MODE": str(mode)}
        os.execve(sys.executable, [sys.executable, "-m", "cluster.cli", *sys.argv[1:]], env)
    return str(info["ray_address"]), str(info["ray_namespace"]), str(info["control_actor_name"])


async def _call(
    name: str, namespace: str, timeout_s: float, action: str, args: dict[str, Any]
) -> dict[str, Any]:
    from services.control import RayControl

    return await RayControl(name, namespace, timeout_s).call(action, None, args)


def run_action(args: argparse.Namespace) -> int:
    """Run ``args.build(args)`` (an action and its arguments) at the control actor; print it."""
    import ray

    settings = load_settings()
    where = _join(settings)
    if where is None:
        print("no running deployment: start one (`make run`) or set RAY_ADDRESS", file=sys.stderr)
        return 2
    address, namespace, name = where
    action, call_args = args.build(args)
    ray.init(
        address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        result = asyncio.run(
            _call(name, namespace, settings.control_call_timeout_s, action, call_args)
        )
    except AppError as err:
        print(json.dumps({"error": err.to_dict()}), file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    print(json.dumps(result, indent=2))
    return 0


def _grant(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "users.grant", {"email": a.email, "role": a.role}


def _revoke(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "users.revoke", {"email": a.email, "role": a.role}


def _show(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "users.find", {"email": a.email}


def _suspend(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"reason": a.reason}
    if a.until:
        body["until"] = a.until
    return "users.suspend", {"email": a.email, "body": body}


def _unsuspend(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "users.unsuspend", {"email": a.email, "reason": a.reason}


def _audit(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "audit.list", {
        "actor_id": a.actor,
        "target": a.target,
        "action": a.action,
        "limit": a.limit,
        "cursor": a.cursor,
    }


def _refund(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"reason": a.reason}
    if a.amount is not None:
        body["amount"] = a.amount
    if a.currency:
        body["currency"] = a.currency
    return "orders.refund", {"order_id": a.order_id, "body": body, "key": a.key}


def _hold(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"vendor_id": a.vendor_id, "reason": a.reason}
    if a.order:
        body["order_id"] = a.order
    return "payouts.hold", {"body": body}


def _release(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "payouts.release", {"hold_id": a.hold_id, "body": {"note": a.note}}


def _holds(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "payouts.list", {"vendor_id": a.vendor, "status": a.status, "cursor": a.cursor}


def _money(cmds: Any) -> None:
    refund = cmds.add_parser("refund", help="refund an order, whole or partly (minor units)")
    refund.add_argument("order_id")
    refund.add_argument("--amount", type=int, help="default: all that is left to refund")
    refund.add_argument("--currency")
    refund.add_argument("--reason", required=True)
    refund.add_argument("--key", help="idempotency key: the same key is the same refund")
    refund.set_defaults(func=run_action, build=_refund)
    hold = cmds.add_parser("hold", help="hold a vendor's payouts (or one order's: --order)")
    hold.add_argument("vendor_id")
    hold.add_argument("--order")
    hold.add_argument("--reason", required=True)
    hold.set_defaults(func=run_action, build=_hold)
    release = cmds.add_parser("release", help="release a payout hold")
    release.add_argument("hold_id")
    release.add_argument("--note")
    release.set_defaults(func=run_action, build=_release)
    holds = cmds.add_parser("holds", help="payout holds, newest first")
    holds.add_argument("--vendor")
    holds.add_argument("--status", choices=("open", "released"))
    holds.add_argument("--cursor")
    holds.set_defaults(func=run_action, build=_holds)


def register(sub: Any) -> None:
    admin = sub.add_parser("admin", help="admin actions through the control actor")
    cmds = admin.add_subparsers(dest="admin_command", required=True)
    for name, build, help_text in (
        ("grant", _grant, "give EMAIL the role ROLE (moderator, admin, ops)"),
        ("revoke", _revoke, "take the role ROLE from EMAIL"),
    ):
        cmd = cmds.add_parser(name, help=help_text)
        cmd.add_argument("email")
        cmd.add_argument("role")
        cmd.set_defaults(func=run_action, build=build)
    show = cmds.add_parser("show", help="a user as admins see them")
    show.add_argument("email")
    show.set_defaults(func=run_action, build=_show)
    suspend = cmds.add_parser("suspend", help="suspend EMAIL: sockets closed, sign-ins refused")
    suspend.add_argument("email")
    suspend.add_argument("--reason", required=True)
    suspend.add_argument("--until", help="ISO 8601 time it ends (default: until lifted)")
    suspend.set_defaults(func=run_action, build=_suspend)
    unsuspend = cmds.add_parser("unsuspend", help="lift EMAIL's suspension")
    unsuspend.add_argument("email")
    unsuspend.add_argument("--reason")
    unsuspend.set_defaults(func=run_action, build=_unsuspend)
    audit = cmds.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--actor")
    audit.add_argument("--target", help="e.g. user:<id>, post:<id>")
    audit.add_argument("--action", help="e.g. roles.set, user.suspend")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--cursor")
    audit.set_defaults(func=run_action, build=_audit)
    _money(cmds)
