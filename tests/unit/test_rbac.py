"""The permission table, the rank rules and role grants (models/rbac.py), and the matrix of
docs/admin.md kept in step with the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models import rbac
from models.errors import BadRequest, Forbidden
from models.rbac import OPERATOR, PERMISSIONS, ROLES, Staff

DOC = Path(__file__).resolve().parents[2] / "docs" / "admin.md"


@pytest.mark.parametrize("permission", sorted(PERMISSIONS))
@pytest.mark.parametrize("role", ROLES)
def test_every_role_by_every_permission(role: str, permission: str) -> None:
    holds = role in PERMISSIONS[permission]
    assert rbac.allowed({role}, permission) is holds
    if holds:
        rbac.require({role}, permission)
    else:
        with pytest.raises(Forbidden):
            rbac.require({role}, permission)
        with pytest.raises(Forbidden):
            Staff("someone", frozenset({role})).require(permission)


def test_the_operator_holds_every_permission() -> None:
    for permission in PERMISSIONS:
        OPERATOR.require(permission)


def test_moderators_cannot_grant_roles_and_users_hold_nothing() -> None:
    assert not rbac.allowed({"moderator"}, "users.roles")
    assert not any(rbac.allowed({"user", "vendor"}, p) for p in PERMISSIONS)
    ops = {p for p in PERMISSIONS if rbac.allowed({"ops"}, p)}
    assert ops == {"cluster.view", "cluster.move", "cluster.scale"}
    assert not any(rbac.allowed({"admin", "moderator"}, p) for p in ops)


def test_rank_rules() -> None:
    mod, admin = {"user", "moderator"}, {"user", "admin"}
    rbac.require_over("m", mod, "u", {"user"})
    rbac.require_over("m", mod, "v", {"user", "vendor"})
    rbac.require_over("a", admin, "m", mod)
    for actor, roles, target, target_roles in (
        ("m", mod, "m", mod),  # yourself
        ("a", admin, "a", admin),
        ("m", mod, "a", admin),  # outranks you
        ("m", mod, "m2", mod),  # same rank
        ("a", admin, "a2", admin),
    ):
        with pytest.raises(Forbidden):
            rbac.require_over(actor, roles, target, target_roles)
    rbac.require_over(None, set(), "a", admin)  # the operator


def test_new_roles() -> None:
    admin = {"user", "admin"}
    assert rbac.new_roles("a", admin, ["user"], ["moderator"]) == ("user", "moderator")
    assert rbac.new_roles("a", admin, ["user", "vendor", "moderator"], []) == ("user", "vendor")
    assert rbac.new_roles("a", admin, ["user"], ["admin", "ops"]) == ("user", "admin", "ops")
    with pytest.raises(BadRequest):
        rbac.new_roles("a", admin, ["user"], ["root"])
    with pytest.raises(BadRequest):
        rbac.new_roles("a", admin, ["user"], ["vendor"])
    with pytest.raises(Forbidden):  # above the caller's rank
        rbac.new_roles("m", {"user", "moderator"}, ["user"], ["admin"])
    assert rbac.new_roles(None, set(), ["user"], ["admin"]) == ("user", "admin")


def test_docs_matrix_matches_the_table() -> None:
    """docs/admin.md's permission matrix is this table, row for row."""
    text = DOC.read_text().split("### Permission matrix", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\| `([a-z.]+)` \|(.*)\|\s*$", text, flags=re.M)
    documented = {}
    for permission, cells in rows:
        marks = [c.strip() for c in cells.split("|")]
        documented[permission] = frozenset(r for r, m in zip(ROLES, marks, strict=True) if m)
    assert documented == PERMISSIONS
