"""The gateway and its services over ``LocalTransport``: cell hosts in the test's own process,
no Ray call on the path (real Postgres, Redis and sockets). The same contract as over Ray.

These use cells no other test touches (Reykjavik, Nairobi): the session's Ray shards also
believe they own them, and each process caches its own cells.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from gateway.context import SERVICES
from services.transport import LocalTransport
from tests.integration.client import Api

pytestmark = pytest.mark.integration

REYKJAVIK = {"lat": 64.1466, "lng": -21.9426}
NAIROBI = {"lat": -1.2921, "lng": 36.8219}


@pytest.fixture(scope="module")
async def local_server(settings: Settings) -> AsyncIterator[TestServer]:
    transport = LocalTransport(settings)
    srv = TestServer(build_app(settings, transport), host="127.0.0.1", port=0)
    await srv.start_server()
    yield srv
    await srv.close()
    await transport.close()


@pytest.fixture
def local(local_server: TestServer, http: ClientSession) -> Api:
    return Api(str(local_server.make_url("")), http)


async def test_a_post_reaches_a_neighbour_live_and_a_retry_returns_the_first_result(
    local: Api, local_server: TestServer
) -> None:
    author, neighbour = await local.signup("local-author"), await local.signup("local-near")
    a, b = await local.connect(author), await local.connect(neighbour)
    await a.ok("locate", REYKJAVIK)
    await b.ok("locate", REYKJAVIK)
    key = uuid.uuid4().hex
    post = (await a.ok("post.create", {"text": "hot dogs at the harbour"}, key=key))["post"]
    seen = await b.next_event("post.created")
    assert seen["data"]["post"]["id"] == post["id"] and seen["stream"] == f"feed:{post['cell']}"
    again = await a.ok("post.create", {"text": "hot dogs at the harbour"}, key=key)
    assert again["post"]["id"] == post["id"]  # idempotent by key, through the local hosts
    page = await b.ok("feed.get", {"sort": "newest"})
    assert [p["id"] for p in page["items"]][:1] == [post["id"]]
    router = local_server.app[SERVICES].router
    assert router.calls > 0  # it went through the router, to the in-process hosts
    await a.close()
    await b.close()


async def test_member_rooms_are_checked_by_their_owner_and_messages_keep_their_shape(
    local: Api,
) -> None:
    alice, bob, eve = [await local.signup(n) for n in ("local-alice", "local-bob", "local-eve")]
    a, b, e = await local.connect(alice), await local.connect(bob), await local.connect(eve)
    await a.ok("locate", NAIROBI)
    room = (await a.mutate("room.create", {"title": "Matatu", "members": [bob.id]}))["room"]
    await b.ok("subscribe", {"stream": f"room:{room['id']}"})
    sent = (await a.mutate("chat.send", {"room_id": room["id"], "text": "jambo"}))["message"]
    live = await b.next_event("chat.message")
    assert live["data"]["message"] == sent and live["offset"] == sent["offset"]
    assert isinstance(sent["created_at"], str) and sent["created_at"].endswith("+00:00")
    history = await b.ok("chat.history", {"room_id": room["id"]})
    assert history["messages"] == [sent]
    refused = await e.request("chat.send", {"room_id": room["id"], "text": "let me in"}, "k1")
    assert refused["error"]["code"] == "forbidden"  # the owner's member list, not the gateway
    for ws in (a, b, e):
        await ws.close()


async def test_an_id_that_names_no_cell_is_refused_before_any_shard(
    local: Api, local_server: TestServer
) -> None:
    user = await local.signup("local-bad-id")
    ws = await local.connect(user)
    router = local_server.app[SERVICES].router
    before = router.commands
    reply = await ws.request("post.like", {"post_id": "not-a-post"}, key=uuid.uuid4().hex)
    assert reply["ok"] is False and reply["error"]["code"] == "not_found"
    reply = await ws.request("chat.send", {"room_id": "nowhere", "text": "hi"}, key="k2")
    assert reply["error"]["code"] == "not_found"
    assert router.commands == before
    await ws.close()


async def test_admin_actions_through_the_in_process_control_host(
    local: Api, local_server: TestServer, settings: Settings
) -> None:
    """Without Ray the gateway hosts the control actor's logic itself (LocalControl): the same
    permission checks, rank rules, live suspension and audit."""
    from models.rbac import OPERATOR
    from services.control import LocalControl

    control = local_server.app[SERVICES].control
    assert isinstance(control, LocalControl)
    admin, user = await local.signup("local-admin"), await local.signup("local-user")
    await control.call("users.grant", OPERATOR, {"email": admin.email, "role": "admin"})
    ws = await local.connect(user)
    status, reply = await local.post(
        f"/api/v1/admin/users/{user.id}/suspend", {"reason": "local"}, token=user.access_token
    )
    assert status == 403  # the user's own rank
    status, reply = await local.post(
        f"/api/v1/admin/users/{user.id}/suspend", {"reason": "local"}, token=admin.access_token
    )
    assert status == 200, reply
    await ws.closed.wait()
    assert ws.close_code == 4003
    status, page = await local.get(
        f"/api/v1/admin/audit?target=user:{user.id}", token=admin.access_token
    )
    assert [(e["action"], e["actor_id"]) for e in page["items"]][:2] == [
        ("user.suspend", admin.id),
        ("users.suspend", user.id),
    ]
