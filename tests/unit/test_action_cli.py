"""The operator's action commands (cluster/admin_cli.py, cluster/ops_cli.py): each parses into
the control actor's action and its arguments, as the REST API sends them. No deployment: the
parser and the builders only."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.action_cli import run_action
from cluster.cli import parser

CASES: list[tuple[list[str], str, dict[str, Any]]] = [
    (["admin", "grant", "a@b.test", "ops"], "users.grant", {"email": "a@b.test", "role": "ops"}),
    (["admin", "revoke", "a@b.test", "ops"], "users.revoke", {"email": "a@b.test", "role": "ops"}),
    (["admin", "show", "a@b.test"], "users.find", {"email": "a@b.test"}),
    (
        ["admin", "suspend", "a@b.test", "--reason", "spam"],
        "users.suspend",
        {"email": "a@b.test", "body": {"reason": "spam"}},
    ),
    (
        ["admin", "suspend", "a@b.test", "--reason", "spam", "--until", "2027-01-01T00:00:00Z"],
        "users.suspend",
        {"email": "a@b.test", "body": {"reason": "spam", "until": "2027-01-01T00:00:00Z"}},
    ),
    (
        ["admin", "unsuspend", "a@b.test"],
        "users.unsuspend",
        {"email": "a@b.test", "reason": None},
    ),
    (
        ["admin", "audit", "--actor", "u1", "--limit", "5"],
        "audit.list",
        {"actor_id": "u1", "target": None, "action": None, "limit": 5, "cursor": None},
    ),
    (
        ["admin", "refund", "o1", "--reason", "broken"],
        "orders.refund",
        {"order_id": "o1", "body": {"reason": "broken"}, "key": None},
    ),
    (
        ["admin", "refund", "o1", "--reason", "x", "--amount", "150", "--currency", "eur",
         "--key", "k1"],
        "orders.refund",
        {"order_id": "o1", "body": {"reason": "x", "amount": 150, "currency": "eur"}, "key": "k1"},
    ),
    (
        ["admin", "hold", "v1", "--reason", "dispute"],
        "payouts.hold",
        {"body": {"vendor_id": "v1", "reason": "dispute"}},
    ),
    (
        ["admin", "hold", "v1", "--reason", "dispute", "--order", "o1"],
        "payouts.hold",
        {"body": {"vendor_id": "v1", "reason": "dispute", "order_id": "o1"}},
    ),
    (
        ["admin", "release", "h1", "--note", "ok"],
        "payouts.release",
        {"hold_id": "h1", "body": {"note": "ok"}},
    ),
    (
        ["admin", "holds", "--vendor", "v1", "--status", "open"],
        "payouts.list",
        {"vendor_id": "v1", "status": "open", "cursor": None},
    ),
    (["cluster"], "cluster.view", {}),
    (["cluster", "scale", "--shards", "3"], "cluster.scale", {"shards": 3}),
    (["scale", "--shards", "2"], "cluster.scale", {"shards": 2}),
    (["cells", "show", "c1"], "cluster.cell", {"cell": "c1"}),
    (["cells", "move", "c1", "shard-1"], "cluster.move", {"cell": "c1", "shard": "shard-1"}),
    (["cells", "pin", "c1", "shard-2"], "cluster.pin", {"cell": "c1", "shard": "shard-2"}),
    (["cells", "unpin", "c1"], "cluster.unpin", {"cell": "c1"}),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "action", "args"), CASES)
def test_each_command_builds_its_action(argv: list[str], action: str, args: dict[str, Any]) -> None:
    parsed = parser().parse_args(argv)
    assert parsed.func is run_action
    assert parsed.build(parsed) == (action, args)


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "suspend", "a@b.test"],  # --reason is required
        ["admin", "grant", "a@b.test"],
        ["admin", "holds", "--status", "closed"],
        ["cells", "move", "c1"],
        ["scale"],
        ["scale", "--shards", "two"],
    ],
)
def test_bad_arguments_are_refused_by_the_parser(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(argv)
    assert exit_.value.code == 2
