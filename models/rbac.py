"""Who may do what: the roles, the one permission table, and the rank rules. Pure, no I/O.

Every admin endpoint (REST, the control actor, the CLI) names one permission of ``PERMISSIONS``
and calls ``require``; docs/admin.md shows the same table as a matrix (a unit test keeps the
two in step). Rank rules for actions on a user (suspend, set roles):

- a caller acts only on users of strictly lower rank (so a moderator cannot suspend another
  moderator, an admin cannot act on another admin: that is for the CLI, on a machine of the
  deployment, whose actor is the operator);
- nobody acts on themselves;
- roles are granted only up to the caller's own rank (only ``admin`` holds ``users.roles``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from models.errors import BadRequest, Forbidden

USER, VENDOR, MODERATOR, ADMIN, OPS = "user", "vendor", "moderator", "admin", "ops"
ROLES = (USER, VENDOR, MODERATOR, ADMIN, OPS)
STAFF_ROLES = frozenset({MODERATOR, ADMIN, OPS})
"""Roles granted by an admin (``user`` is everyone's; ``vendor`` comes with a vendor profile)."""

RANK: dict[str, int] = {USER: 0, VENDOR: 0, OPS: 1, MODERATOR: 1, ADMIN: 2}

_MOD = frozenset({MODERATOR, ADMIN})
_ADMIN = frozenset({ADMIN})
_OPS = frozenset({OPS})

PERMISSIONS: dict[str, frozenset[str]] = {
    "reports.list": _MOD,
    "reports.resolve": _MOD,
    "content.remove": _MOD,
    "users.get": _MOD,
    "users.suspend": _MOD,
    "users.unsuspend": _MOD,
    "users.roles": _ADMIN,
    "appeals.list": _ADMIN,
    "appeals.decide": _ADMIN,
    "disputes.list": _ADMIN,
    "disputes.resolve": _ADMIN,
    "audit.list": _ADMIN,
    "risk.list": _ADMIN,
    "risk.review": _ADMIN,
    "orders.refund": _ADMIN,
    "payouts.hold": _ADMIN,
    "payouts.release": _ADMIN,
    "payouts.list": _ADMIN,
    "analytics.read": _ADMIN,  # another vendor's analytics (docs/analytics.md)
    # the ledger and payouts (issue 17, docs/payments.md)
    "revenue.read": _ADMIN,
    "payouts.run": _ADMIN,
    "payouts.paid": _ADMIN,
    "payouts.account": _ADMIN,  # a vendor's payout bank details in full (to pay them)
    # the cluster (issue 13, docs/operations.md): shards, placement, scaling
    "cluster.view": _OPS,
    "cluster.move": _OPS,
    "cluster.scale": _OPS,
}
"""Permission -> the roles that hold it. The only place access to admin actions is decided."""


def rank(roles: Iterable[str]) -> int:
    return max((RANK.get(r, 0) for r in roles), default=0)


def allowed(roles: Iterable[str], permission: str) -> bool:
    holders = PERMISSIONS[permission]  # KeyError: a permission nobody declared is a bug
    return any(r in holders for r in roles)


def require(roles: Iterable[str], permission: str) -> None:
    """``forbidden`` unless one of ``roles`` holds ``permission``."""
    roles = tuple(roles)
    if not allowed(roles, permission):
        need = " or ".join(sorted(PERMISSIONS[permission]))
        raise Forbidden(f"{permission} needs the role {need}", permission=permission)


def require_over(
    actor_id: str | None, actor_roles: Iterable[str], target_id: str, target_roles: Iterable[str]
) -> None:
    """The rank rules for acting on a user. ``actor_id`` None is the operator (CLI): any user."""
    if actor_id is None:
        return
    if actor_id == target_id:
        raise Forbidden("you cannot do this to yourself")
    if rank(target_roles) >= rank(actor_roles):
        raise Forbidden("that user's rank is not below yours")


def new_roles(
    actor_id: str | None,
    actor_roles: Iterable[str],
    current: Iterable[str],
    wanted: Iterable[str],
) -> tuple[str, ...]:
    """The roles a user gets when ``wanted`` is asked for: ``user`` always, ``vendor`` kept as
    it is (it follows the vendor profile), staff roles as asked, none above the caller's rank."""
    wanted_set = set(wanted)
    unknown = wanted_set - set(ROLES)
    if unknown:
        raise BadRequest(f"roles: unknown role {sorted(unknown)[0]!r}; one of {list(ROLES)}")
    current_set = set(current)
    if VENDOR in wanted_set and VENDOR not in current_set:
        raise BadRequest("roles: vendor comes with a vendor profile, it is not granted")
    staff = wanted_set & STAFF_ROLES
    if actor_id is not None:
        ceiling = rank(actor_roles)
        changed = staff ^ (current_set & STAFF_ROLES)
        above = sorted(r for r in changed if RANK[r] > ceiling)
        if above:
            raise Forbidden(f"you cannot grant or revoke {above[0]}")
    result = {USER} | staff | (current_set & {VENDOR})
    return tuple(r for r in ROLES if r in result)


@dataclass(frozen=True, slots=True)
class Staff:
    """Who takes an admin action: a signed-in user with their roles as Postgres has them now,
    or the operator (``user_id`` None: the CLI on a machine of the deployment)."""

    user_id: str | None
    roles: frozenset[str]

    def require(self, permission: str) -> None:
        if self.user_id is not None:
            require(self.roles, permission)


OPERATOR = Staff(None, frozenset({ADMIN, OPS}))
"""The CLI's actor: every permission, no rank limit, audited with ``actor_id`` null."""
