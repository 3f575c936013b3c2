"""Roles, the rank rules, the role x endpoint matrix and the audit log, over real REST, the
control actor (Ray), Postgres and Redis."""

from __future__ import annotations

import asyncio

import pytest

from cluster.config import Settings
from models.errors import Forbidden
from models.rbac import Staff
from services.control import RayControl
from tests.integration.admin_kit import operator, staff
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration

MISSING = "no-such-id"

# Every admin endpoint: (method, path, body, roles allowed). Allowed roles get past the
# permission check (here: a 404 or 400 for the made-up target); every other role gets 403.
MOD, ADMIN = {"moderator", "admin"}, {"admin"}
ENDPOINTS = [
    ("GET", "/api/v1/admin/reports", None, MOD),
    ("POST", f"/api/v1/admin/reports/{MISSING}/resolve", {"action": "dismiss"}, MOD),
    ("POST", "/api/v1/admin/content/remove", {"kind": "post", "id": MISSING, "reason": "x"}, MOD),
    ("GET", f"/api/v1/admin/users/{MISSING}", None, MOD),
    ("POST", f"/api/v1/admin/users/{MISSING}/suspend", {"reason": "x"}, MOD),
    ("POST", f"/api/v1/admin/users/{MISSING}/unsuspend", {}, MOD),
    ("POST", f"/api/v1/admin/users/{MISSING}/roles", {"roles": ["moderator"]}, ADMIN),
    ("GET", "/api/v1/admin/audit", None, ADMIN),
    ("GET", "/api/v1/admin/risk/orders", None, ADMIN),
    ("POST", f"/api/v1/admin/risk/orders/{MISSING}/release", {}, ADMIN),
    ("POST", f"/api/v1/admin/risk/orders/{MISSING}/reject", {"note": "x"}, ADMIN),
    ("GET", "/api/v1/admin/appeals", None, ADMIN),
    ("POST", f"/api/v1/admin/appeals/{MISSING}/decide", {"accept": False}, ADMIN),
    ("GET", "/api/v1/admin/disputes", None, ADMIN),
    ("POST", f"/api/v1/admin/disputes/{MISSING}/resolve", {"outcome": "reject"}, ADMIN),
    ("POST", f"/api/v1/admin/orders/{MISSING}/refund", {"reason": "x"}, ADMIN),
    ("GET", "/api/v1/admin/payouts/holds", None, ADMIN),
    ("POST", "/api/v1/admin/payouts/holds", {"vendor_id": MISSING, "reason": "x"}, ADMIN),
    ("POST", f"/api/v1/admin/payouts/holds/{MISSING}/release", {}, ADMIN),
]


async def _call(api: Api, method: str, path: str, body: object, token: str) -> tuple[int, dict]:
    if method == "GET":
        return await api.get(path, token=token)
    return await api.post(path, body, token=token)


async def test_role_by_endpoint_matrix(api: Api, settings: Settings) -> None:
    people = {
        role: await staff(api, settings, role) for role in ("user", "moderator", "admin", "ops")
    }
    for role, person in people.items():
        for method, path, body, allowed in ENDPOINTS:
            status, reply = await _call(api, method, path, body, person.access_token)
            if role in allowed:
                assert status in (200, 400, 404), (role, path, status, reply)
                assert reply.get("error", {}).get("code") != "forbidden", (role, path, reply)
            else:
                assert status == 403, (role, path, status, reply)
                assert reply["error"]["code"] == "forbidden"
    for method, path, body, _ in ENDPOINTS:  # no credentials at all
        status, reply = await _call(api, method, path, body, "")
        assert status == 401, (path, reply)


async def test_role_change_takes_effect_at_once_with_rank_rules(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    other_admin = await staff(api, settings, "admin", "admin2")
    alice = await api.signup("alice")
    ws = await api.connect(alice)
    # her token says "user"; Postgres decides: moderator from the next request on
    status, reply = await api.get("/api/v1/admin/reports", token=alice.access_token)
    assert status == 403
    status, reply = await api.post(
        f"/api/v1/admin/users/{alice.id}/roles", {"roles": ["moderator"]}, token=admin.access_token
    )
    assert status == 200, reply
    assert reply["user"]["roles"] == ["user", "moderator"]
    status, reply = await api.get("/api/v1/admin/reports", token=alice.access_token)
    assert status == 200, reply
    # the moderator cannot grant roles, nor act on an admin; nobody suspends themselves
    bob = await api.signup("bob")
    status, reply = await api.post(
        f"/api/v1/admin/users/{bob.id}/roles", {"roles": ["moderator"]}, token=alice.access_token
    )
    assert status == 403
    status, reply = await api.post(
        f"/api/v1/admin/users/{admin.id}/suspend", {"reason": "coup"}, token=alice.access_token
    )
    assert status == 403 and reply["error"]["code"] == "forbidden"
    for who in (admin, alice):
        status, reply = await api.post(
            f"/api/v1/admin/users/{who.id}/suspend", {"reason": "me"}, token=who.access_token
        )
        assert status == 403, reply
    # an admin does not act on another admin (that is the operator's, at the CLI)
    status, reply = await api.post(
        f"/api/v1/admin/users/{other_admin.id}/roles", {"roles": []}, token=admin.access_token
    )
    assert status == 403
    # bad roles are typed errors
    for roles in (["king"], ["vendor"]):
        status, reply = await api.post(
            f"/api/v1/admin/users/{bob.id}/roles", {"roles": roles}, token=admin.access_token
        )
        assert status == 400, (roles, reply)
    # revoked: forbidden again at once
    status, reply = await api.post(
        f"/api/v1/admin/users/{alice.id}/roles", {"roles": []}, token=admin.access_token
    )
    assert status == 200 and reply["user"]["roles"] == ["user"]
    status, _ = await api.get("/api/v1/admin/reports", token=alice.access_token)
    assert status == 403
    await ws.close()

    # the audit log has both changes, by this admin, filterable, newest first
    status, page = await api.get(
        f"/api/v1/admin/audit?actor_id={admin.id}&target=user:{alice.id}", token=admin.access_token
    )
    assert status == 200, page
    actions = [(e["action"], e["result"]["after"]) for e in page["items"]]
    assert actions == [("roles.set", ["user"]), ("roles.set", ["user", "moderator"])]
    assert all(e["actor_id"] == admin.id and e["at"] for e in page["items"])
    status, reply = await api.get("/api/v1/admin/audit?cursor=%%%", token=admin.access_token)
    assert status == 400
    # reads and refusals are audited too: alice's refused grant, the admin's reads
    status, page = await api.get(
        f"/api/v1/admin/audit?actor_id={alice.id}&action=users.roles", token=admin.access_token
    )
    assert [(e["target"], e["result"]["error"]) for e in page["items"]] == [
        (f"user:{bob.id}", "forbidden")
    ]
    status, page = await api.get(
        f"/api/v1/admin/audit?actor_id={admin.id}&action=audit.list", token=admin.access_token
    )
    assert [e["result"] for e in page["items"]][-1] == {"ok": True, "items": 2}


async def test_audit_cursor_pages_and_operator_entries(api: Api, settings: Settings) -> None:
    admin = await staff(api, settings, "admin")
    target = await api.signup("paged")
    for role in ("moderator", "ops", "moderator"):
        await operator(settings, "users.grant", {"email": target.email, "role": role})
    seen: list[str] = []
    cursor = ""
    while True:
        path = f"/api/v1/admin/audit?target=user:{target.id}&limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        status, page = await api.get(path, token=admin.access_token)
        assert status == 200, page
        seen += [e["id"] for e in page["items"]]
        assert all(e["actor_id"] is None for e in page["items"])  # the operator
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 3


async def test_audit_log_is_append_only(api: Api, settings: Settings) -> None:
    import asyncpg

    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        for sql in (
            "UPDATE audit_log SET reason = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()
    await asyncio.sleep(0)


async def _roles_event(ws: Ws) -> list[str]:
    return list((await ws.next_event("session.roles", timeout=5))["data"]["roles"])


async def test_role_change_is_felt_live_by_open_sockets_on_two_gateways(
    api: Api, api2: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin", "live-admin")
    carol = await staff(api, settings, "moderator", "carol")
    here, there = await api.connect(carol), await api2.connect(carol)
    for ws in (here, there):  # a moderator's op over the socket
        reply = await ws.request("admin.reports", {"status": "open"})
        assert reply["ok"], reply
        assert "items" in reply["data"]
    # revoked on gateway 1: both sockets are told at once and lose the op, without reconnecting
    status, reply = await api.post(
        f"/api/v1/admin/users/{carol.id}/roles", {"roles": []}, token=admin.access_token
    )
    assert status == 200, reply
    assert await _roles_event(here) == ["user"] and await _roles_event(there) == ["user"]
    for ws in (here, there):
        reply = await ws.request("admin.reports", {})
        assert not reply["ok"] and reply["error"]["code"] == "forbidden", reply
    # granted again: felt the same way
    status, reply = await api2.post(
        f"/api/v1/admin/users/{carol.id}/roles", {"roles": ["moderator"]}, token=admin.access_token
    )
    assert status == 200, reply
    assert await _roles_event(here) == ["moderator", "user"]
    assert await _roles_event(there) == ["moderator", "user"]
    assert (await there.request("admin.reports", {}))["ok"]
    reply = await here.request("admin.reports", {"status": "nope"})
    assert reply["error"]["code"] == "bad_request", reply
    # whatever a caller claims, the control actor goes by Postgres's roles
    dave = await api.signup("dave")
    control = RayControl(settings.control_actor_name, settings.ray_namespace, 30)
    with pytest.raises(Forbidden):
        await control.call("reports.list", Staff(dave.id, frozenset({"moderator"})), {})
    for ws in (here, there):
        await ws.close()
