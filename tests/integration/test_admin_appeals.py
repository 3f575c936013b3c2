"""Appeals: a suspended user signs in with email and password (HTTP Basic) to appeal; an admin
accepts (the suspension is lifted) or rejects; a removal's appeal accepted restores the post
live; both sides are notified; every decision is audited."""

from __future__ import annotations

import base64
import json

import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, User
from tests.integration.test_feed import spot

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def _basic(user: User, password: str = PASSWORD) -> dict[str, str]:
    raw = base64.b64encode(f"{user.email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def _appeal(api: Api, headers: dict[str, str], body: dict) -> tuple[int, dict]:
    return await mk.rest(api, "POST", "/api/v1/appeals", body, None, headers)


async def test_suspended_user_appeals_with_password_and_admin_accepts(
    api: Api, settings: Settings
) -> None:
    mod = await staff(api, settings, "moderator")
    admin = await staff(api, settings, "admin")
    eve = await api.signup("eve")
    status, reply = await api.post(
        f"/api/v1/admin/users/{eve.id}/suspend", {"reason": "spam"}, token=mod.access_token
    )
    # her sockets are closed: she learns the action to appeal from her record, by password
    status, record = await mk.rest(api, "GET", "/api/v1/me/moderation", None, None, _basic(eve))
    assert status == 200, record
    assert [(a["kind"], a["reason"]) for a in record["items"]] == [("suspend", "spam")]
    action_id = record["items"][0]["id"]
    assert action_id == reply["action_id"]
    body = {"action_id": action_id, "text": "that was my brother"}
    status, reply = await api.post("/api/v1/appeals", body, token=eve.access_token)
    assert status == 403  # her token is refused while suspended ...
    status, reply = await _appeal(api, _basic(eve, "wrong password"), body)
    assert status == 401
    status, reply = await _appeal(api, _basic(eve), body)  # ... her password is not
    assert status == 201, reply
    appeal = reply["appeal"]
    assert appeal["status"] == "open" and appeal["action"]["kind"] == "suspend"
    status, reply = await _appeal(api, _basic(eve), body)
    assert status == 409  # one open appeal per action
    other = await api.signup("other")
    status, reply = await _appeal(api, _basic(other), body)
    assert status == 404  # not your action

    decide = f"/api/v1/admin/appeals/{appeal['id']}/decide"
    status, reply = await api.post(decide, {"accept": True}, token=mod.access_token)
    assert status == 403  # appeals are for admins
    status, listed = await api.get("/api/v1/admin/appeals?status=open", token=admin.access_token)
    assert appeal["id"] in [a["id"] for a in listed["items"]]
    status, reply = await api.post(
        decide, {"accept": True, "note": "fair"}, token=admin.access_token
    )
    assert status == 200 and reply["appeal"]["status"] == "accepted", reply
    status, _ = await api.get("/api/v1/me", token=eve.access_token)
    assert status == 200  # the suspension is reversed
    status, reply = await api.post(decide, {"accept": False}, token=admin.access_token)
    assert status == 409
    status, reply = await _appeal(api, _basic(eve), body)
    assert status == 409  # a reversed action is not appealed again

    conn = await mk.db(settings)
    try:
        rows = await conn.fetch(
            "SELECT stream, data FROM stream_events WHERE stream = ANY($1::text[])"
            " AND ev = 'notification'",
            [f"user:{eve.id}", f"user:{mod.id}"],
        )
    finally:
        await conn.close()
    told = {(r["stream"], json.loads(r["data"])["kind"]) for r in rows}
    assert (f"user:{eve.id}", "appeal.decided") in told
    assert (f"user:{mod.id}", "appeal.decided") in told
    status, audit = await api.get(
        f"/api/v1/admin/audit?target=appeal:{appeal['id']}", token=admin.access_token
    )
    entries = [(e["action"], e["actor_id"], e["result"].get("error")) for e in audit["items"]]
    assert entries == [  # the refused attempts too, newest first
        ("appeals.decide", admin.id, "conflict"),
        ("appeal.decide", admin.id, None),
        ("appeals.decide", mod.id, "forbidden"),
    ]


async def test_removal_appeal_accepted_restores_the_post_live(api: Api, settings: Settings) -> None:
    here = spot(settings, 31)
    mod = await staff(api, settings, "moderator")
    admin = await staff(api, settings, "admin")
    author = await api.signup("poet")
    ws = await api.connect(author)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    post = (await ws.mutate("post.create", {"text": "a poem"}))["post"]
    status, reply = await api.post(
        "/api/v1/admin/content/remove",
        {"kind": "post", "id": post["id"], "reason": "looked like spam"},
        token=mod.access_token,
    )
    assert status == 200
    notice = await ws.next_event("notification", timeout=5)
    action_id = notice["data"]["action_id"]
    status, record = await api.get("/api/v1/me/moderation", token=author.access_token)
    assert status == 200
    assert [(a["id"], a["content"]) for a in record["items"]] == [(action_id, "a poem")]
    status, reply = await api.post(
        "/api/v1/appeals",
        {"action_id": action_id, "text": "it is a poem"},
        token=author.access_token,
    )
    assert status == 201, reply
    appeal = reply["appeal"]
    status, reply = await api.post(
        f"/api/v1/admin/appeals/{appeal['id']}/decide",
        {"accept": False, "note": "still spam"},
        token=admin.access_token,
    )
    assert status == 200 and reply["appeal"]["status"] == "rejected"
    status, reply = await api.post(
        "/api/v1/appeals", {"action_id": action_id, "text": "please"}, token=author.access_token
    )
    assert status == 201
    status, reply = await api.post(
        f"/api/v1/admin/appeals/{reply['appeal']['id']}/decide",
        {"accept": True},
        token=admin.access_token,
    )
    assert status == 200, reply
    restored = await ws.next_event("post.restored", timeout=5)
    assert restored["data"]["post"]["id"] == post["id"]
    feed = await ws.ok("feed.get", {})
    assert post["id"] in [p["id"] for p in feed["items"]]
    await ws.close()
