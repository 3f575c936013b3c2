"""Moderation with live effect over real sockets: suspension closes every socket of the user on
two gateways with 4003, REST and refresh refuse, unsuspend restores; a removal is seen live by
a neighbour and leaves the feed; reports hide content and fill the queue; the CLI acts on the
running deployment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from cluster.runtime import Runtime
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api
from tests.integration.gateways import GatewayProcess
from tests.integration.market_kit import db
from tests.integration.test_feed import neighbour_of, spot

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


async def test_suspension_closes_sockets_on_two_gateways_and_unsuspend_restores(
    api: Api, runtime: Runtime, settings: Settings, http: aiohttp.ClientSession
) -> None:
    other = GatewayProcess(settings, runtime.ray_address())
    await other.start(http)
    try:
        mod = await staff(api, settings, "moderator")
        mallory = await api.signup("mallory")
        here = await api.connect(mallory)
        there = await Api(other.base, http).connect(mallory)
        inbox = await api.connect(await api.signup("bystander"))  # not closed: someone else

        started = time.monotonic()
        status, reply = await api.post(
            f"/api/v1/admin/users/{mallory.id}/suspend",
            {"reason": "scam listings", "until": "2099-01-01T00:00:00Z"},
            token=mod.access_token,
        )
        assert status == 200, reply
        assert reply["user"]["suspended"] and reply["user"]["suspended_until"].startswith("2099")
        await asyncio.wait_for(asyncio.gather(here.closed.wait(), there.closed.wait()), 5)
        assert time.monotonic() - started < 1.5
        assert here.close_code == there.close_code == 4003
        assert not inbox.closed.is_set()

        status, reply = await api.get("/api/v1/me", token=mallory.access_token)
        assert status == 403, reply
        assert reply["error"]["code"] == "forbidden"
        assert reply["error"]["details"]["reason"] == "suspended"
        assert reply["error"]["details"]["until"].startswith("2099")
        status, reply = await api.post(
            "/api/v1/auth/refresh", {"refresh_token": mallory.refresh_token}
        )
        assert status == 403 and reply["error"]["details"]["reason"] == "suspended"
        status, reply = await api.post(
            "/api/v1/auth/login", {"email": mallory.email, "password": PASSWORD}
        )
        assert status == 403 and reply["error"]["details"]["reason"] == "suspended"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                api.base + "/ws", headers={"Authorization": f"Bearer {mallory.access_token}"}
            )
        assert refused.value.status == 403
    finally:
        await other.stop()

    status, reply = await api.post(
        f"/api/v1/admin/users/{mallory.id}/unsuspend", {"reason": "appeal"}, token=mod.access_token
    )
    assert status == 200 and not reply["user"]["suspended"]
    status, reply = await api.post(
        f"/api/v1/admin/users/{mallory.id}/unsuspend", {}, token=mod.access_token
    )
    assert status == 409, reply  # not suspended any more
    status, _ = await api.get("/api/v1/me", token=mallory.access_token)
    assert status == 200
    back = await api.connect(mallory)
    await back.close()
    conn = await db(settings)
    try:
        rows = await conn.fetch(
            "SELECT data FROM stream_events WHERE stream = $1 AND ev = 'notification'"
            ' ORDER BY "offset"',
            f"user:{mallory.id}",
        )
    finally:
        await conn.close()
    notices = [json.loads(r["data"]) for r in rows]
    assert [n["kind"] for n in notices] == ["moderation.suspended", "moderation.unsuspended"]
    assert notices[0]["reason"] == "scam listings"
    await inbox.close()


async def test_removal_is_seen_live_by_a_neighbour_and_leaves_the_feed(
    api: Api, settings: Settings
) -> None:
    here = spot(settings, 21)
    near = neighbour_of(*here, settings)
    mod = await staff(api, settings, "moderator")
    author, neighbour = await api.signup("spammer"), await api.signup("neighbour")
    a, n = await api.connect(author), await api.connect(neighbour)
    await a.ok("locate", {"lat": here[0], "lng": here[1]})
    await n.ok("locate", {"lat": near[0], "lng": near[1]})
    post = (await a.mutate("post.create", {"text": "cheap watches"}))["post"]
    assert (await n.next_event("post.created"))["data"]["post"]["id"] == post["id"]

    status, reply = await api.post(
        "/api/v1/admin/content/remove",
        {"kind": "post", "id": post["id"], "reason": "spam"},
        token=mod.access_token,
    )
    assert status == 200 and reply["removed"] is True, reply
    removed = await n.next_event("post.removed", timeout=5)
    assert removed["data"] == {"post_id": post["id"]}
    assert removed["stream"] == f"feed:{post['cell']}"
    feed = await n.ok("feed.get", {})
    assert post["id"] not in [p["id"] for p in feed["items"]]
    notice = await a.next_event("notification", timeout=5)
    assert notice["data"]["kind"] == "moderation.removed"
    assert notice["data"]["reason"] == "spam" and notice["data"]["action_id"]
    # again: conflict; made-up ids: not_found; a user is not "removed"
    status, reply = await api.post(
        "/api/v1/admin/content/remove",
        {"kind": "post", "id": post["id"], "reason": "spam"},
        token=mod.access_token,
    )
    assert status == 409, reply
    for body in (
        {"kind": "post", "id": "nope", "reason": "x"},
        {"kind": "user", "id": author.id, "reason": "x"},
        {"kind": "planet", "id": "x", "reason": "x"},
    ):
        status, reply = await api.post("/api/v1/admin/content/remove", body, token=mod.access_token)
        assert status in (400, 404), (body, reply)
    await a.close()
    await n.close()


async def test_chat_message_removed_live_and_out_of_history(api: Api, settings: Settings) -> None:
    mod = await staff(api, settings, "moderator")
    ann, ben = await api.signup("ann"), await api.signup("ben")
    a, b = await api.connect(ann), await api.connect(ben)
    room = (await a.ok("chat.open", {"user_id": ben.id}))["room"]
    await b.ok("subscribe", {"stream": f"room:{room['id']}"})
    msg = (await a.mutate("chat.send", {"room_id": room["id"], "text": "buy crypto"}))["message"]
    outsider = await api.signup("outsider")
    body = {"target": {"kind": "message", "id": msg["id"]}, "reason": "scam"}
    status, reply = await api.post("/api/v1/reports", body, token=outsider.access_token)
    assert status == 404, reply  # not a member: the message is not there for them
    status, reply = await api.post("/api/v1/reports", body, token=ben.access_token)
    assert status == 201, reply
    status, reply = await api.post(
        "/api/v1/admin/content/remove",
        {"kind": "message", "id": msg["id"], "reason": "scam"},
        token=mod.access_token,
    )
    assert status == 200, reply
    streams = set()
    for _ in range(2):  # on the room, and (a direct room) on the inbox
        event = await b.next_event("chat.message_removed", timeout=5)
        assert event["data"] == {"room_id": room["id"], "message_id": msg["id"]}
        streams.add(event["stream"])
    assert streams == {f"room:{room['id']}", f"user:{ben.id}"}
    history = await b.ok("chat.history", {"room_id": room["id"]})
    assert msg["id"] not in [m["id"] for m in history["messages"]]
    await a.close()
    await b.close()


async def test_reports_dedupe_hide_at_threshold_queue_and_dismiss(
    api: Api, settings: Settings
) -> None:
    here = spot(settings, 22)
    mod = await staff(api, settings, "moderator")
    author = await api.signup("author")
    a = await api.connect(author)
    await a.ok("locate", {"lat": here[0], "lng": here[1]})
    post = (await a.mutate("post.create", {"text": "questionable"}))["post"]
    body = {"target": {"kind": "post", "id": post["id"]}, "reason": "scam"}
    reporters = [await api.signup(f"r{i}") for i in range(settings.report_hide_threshold)]
    first = await api.connect(reporters[0])
    reply = await first.ok("report.create", body, key="report-1")  # over the websocket
    assert reply["report"]["status"] == "open" and reply["report"]["severity"] == 3
    retry = await first.ok("report.create", body, key="report-1")  # the first result
    assert retry["report"]["id"] == reply["report"]["id"]
    again = await first.request("report.create", body, key="another-key")
    assert again["ok"] is False and again["error"]["code"] == "conflict"
    status, reply = await api.post("/api/v1/reports", body, token=author.access_token)
    assert status == 400  # not your own
    for bad in (
        {"target": {"kind": "post", "id": "nope"}, "reason": "spam"},
        {"target": {"kind": "post", "id": post["id"]}, "reason": "boring"},
    ):
        status, reply = await api.post("/api/v1/reports", bad, token=reporters[0].access_token)
        assert status in (400, 404), reply
    for r in reporters[1:]:
        status, reply = await api.post("/api/v1/reports", body, token=r.access_token)
        assert status == 201, reply
    # the threshold hid it pending review; the author was told
    notice = await a.next_event("notification", timeout=5)
    assert notice["data"]["kind"] == "moderation.removed"
    feed = await a.ok("feed.get", {})
    assert post["id"] not in [p["id"] for p in feed["items"]]

    status, queue = await api.get("/api/v1/admin/reports?status=open", token=mod.access_token)
    assert status == 200, queue
    mine = [r for r in queue["items"] if r["target"]["id"] == post["id"]]
    assert len(mine) == settings.report_hide_threshold
    assert mine[0]["target_reports"] == settings.report_hide_threshold
    severities = [r["severity"] for r in queue["items"]]
    assert severities == sorted(severities, reverse=True)

    status, reply = await api.post(
        f"/api/v1/admin/reports/{mine[0]['id']}/resolve",
        {"action": "dismiss"},
        token=mod.access_token,
    )
    assert status == 200 and reply["report"]["status"] == "resolved", reply
    told = await first.next_event("notification", timeout=5)
    while told["data"]["kind"] != "report.resolved":
        told = await first.next_event("notification", timeout=5)
    assert told["data"]["outcome"] == "dismiss"
    restored = await a.next_event("post.restored", timeout=5)
    assert restored["data"]["post"]["id"] == post["id"]
    feed = await a.ok("feed.get", {})
    assert post["id"] in [p["id"] for p in feed["items"]]
    status, reply = await api.post(
        f"/api/v1/admin/reports/{mine[1]['id']}/resolve",
        {"action": "dismiss"},
        token=mod.access_token,
    )
    assert status == 409  # resolved with the first: one decision per target
    await a.close()
    await first.close()


def _cli_env(settings: Settings) -> dict[str, str]:
    """The CLI's environment in a fresh shell on a machine of the deployment: its data dir, and
    none of the RAY_* variables the test process (which started Ray) has."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_")}
    env["HL_DATA_DIR"] = os.path.abspath(settings.data_dir)
    env["HL_RAY_NAMESPACE"] = settings.ray_namespace
    return env


async def test_cli_grant_and_revoke_on_the_running_deployment(
    api: Api, runtime: Runtime, settings: Settings
) -> None:
    """`hyperlocal admin` finds the deployment as `make run` leaves it (its data dir), with no
    RAY_ADDRESS, and acts through the control actor."""
    user = await api.signup("cli")
    env = _cli_env(settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cluster.cli", "--log-level", "WARNING", "admin", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = await asyncio.to_thread(run, "grant", user.email, "moderator")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["user"]["roles"] == ["user", "moderator"]
    status, _ = await api.get("/api/v1/admin/reports", token=user.access_token)
    assert status == 200
    done = await asyncio.to_thread(run, "revoke", user.email, "moderator")
    assert done.returncode == 0, done.stderr[-2000:]
    status, _ = await api.get("/api/v1/admin/reports", token=user.access_token)
    assert status == 403
    done = await asyncio.to_thread(run, "suspend", user.email, "--reason", "from the cli")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["user"]["suspended"] is True
    status, reply = await api.get("/api/v1/me", token=user.access_token)
    assert status == 403 and reply["error"]["details"]["reason"] == "suspended"
    done = await asyncio.to_thread(run, "unsuspend", user.email)
    assert done.returncode == 0, done.stderr[-2000:]
    status, _ = await api.get("/api/v1/me", token=user.access_token)
    assert status == 200
    done = await asyncio.to_thread(run, "audit", "--target", f"user:{user.id}")
    assert done.returncode == 0, done.stderr[-2000:]
    actions = [e["action"] for e in json.loads(done.stdout)["items"]]
    assert actions == ["user.unsuspend", "user.suspend", "roles.set", "roles.set"]
    done = await asyncio.to_thread(run, "grant", "nobody@example.test", "admin")
    assert done.returncode == 1 and "not_found" in done.stderr
    # payout holds and refunds are the operator's too
    _, vendor = await mk.vendor(api, mk.spot(settings, 91), "cli-vendor")
    done = await asyncio.to_thread(run, "hold", vendor["id"], "--reason", "kyc")
    assert done.returncode == 0, done.stderr[-2000:]
    hold = json.loads(done.stdout)["hold"]
    assert hold["status"] == "open" and hold["actor_id"] is None
    done = await asyncio.to_thread(run, "holds", "--vendor", vendor["id"], "--status", "open")
    assert [h["id"] for h in json.loads(done.stdout)["items"]] == [hold["id"]]
    done = await asyncio.to_thread(run, "release", hold["id"], "--note", "ok")
    assert done.returncode == 0 and json.loads(done.stdout)["hold"]["status"] == "released"
    done = await asyncio.to_thread(run, "refund", "nope", "--reason", "x")
    assert done.returncode == 1 and "not_found" in done.stderr


async def test_a_lost_suspension_message_is_repaired_by_the_recheck(
    api: Api, server: TestServer, settings: Settings
) -> None:
    """Redis carries suspensions live; if the message is lost (Redis away), the gateway's
    re-check after its reconnect applies Postgres's word: 4003, 4004, roles."""
    from gateway.app import recheck_sign_ins
    from gateway.context import SERVICES, SESSIONS

    held, left, promoted = [await api.signup(n) for n in ("held", "left", "promoted")]
    sockets = [await api.connect(u) for u in (held, left, promoted)]
    conn = await db(settings)
    try:  # the changes, written without any broadcast
        await conn.execute("UPDATE users SET disabled_at = now() WHERE id = $1", held.id)
        await conn.execute(
            "UPDATE token_families SET revoked_at = now() WHERE user_id = $1", left.id
        )
        await conn.execute("UPDATE users SET roles = '{user,ops}' WHERE id = $1", promoted.id)
    finally:
        await conn.close()
    sessions = server.app[SESSIONS]
    assert await recheck_sign_ins(sessions, server.app[SERVICES].db) >= 2
    await asyncio.wait_for(asyncio.gather(sockets[0].closed.wait(), sockets[1].closed.wait()), 5)
    assert (sockets[0].close_code, sockets[1].close_code) == (4003, 4004)
    assert {s.principal.roles for s in sessions.of_user(promoted.id)} == {
        frozenset({"user", "ops"})
    }
    await sockets[2].close()
