"""Bad input, bad credentials and a killed shard: typed errors, nothing lost."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import aiohttp
import h3
import pytest
import ray
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import METRICS, SERVICES
from services.control import RayControl
from tests.integration.client import Api

pytestmark = pytest.mark.integration


def spot(settings: Settings, i: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(51.5072, -0.1276, settings.h3_resolution)  # London
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 6 + 3 * i))[0])


async def test_bad_frames_get_typed_errors_and_the_session_stays_usable(
    api: Api, settings: Settings
) -> None:
    user = await api.signup()
    ws = await api.connect(user)

    async def error_of(raw: str | bytes) -> dict:
        await ws.send_raw(raw)
        frame = await ws.next_event(None, timeout=5)
        assert frame.get("ok") is False, frame
        return frame

    assert (await error_of("{not json"))["error"]["code"] == "bad_request"
    assert (await error_of("[1, 2]"))["error"]["code"] == "bad_request"
    assert (await error_of(json.dumps({"op": "ping"})))["error"]["code"] == "bad_request"
    unknown = await error_of(json.dumps({"id": 41, "op": "teleport"}))
    assert unknown["re"] == 41 and unknown["error"]["code"] == "bad_request"
    oversized = await error_of("x" * (settings.max_frame_bytes + 10))
    assert oversized["error"]["code"] == "too_large"

    cases = [
        ("post.create", {"text": "no key"}, None, "bad_request"),
        (
            "post.create",
            {"text": "x" * (settings.max_text_chars + 1), "lat": 1, "lng": 1},
            "k1",
            "too_large",
        ),
        ("post.create", {"text": "   ", "lat": 1, "lng": 1}, "k2", "bad_request"),
        ("post.create", {"text": "hi", "lat": 123, "lng": 0}, "k3", "bad_request"),
        ("post.create", {"text": "hi", "lat": "north", "lng": 0}, "k4", "bad_request"),
        ("post.create", {"text": "hi", "lat": 10}, "k5", "bad_request"),
        ("post.create", {"text": "hi"}, "k6", "bad_request"),  # no location yet
        (
            "post.create",
            {"text": "hi", "lat": 1, "lng": 1, "media": ["javascript:x"]},
            "k7",
            "bad_request",
        ),
        ("locate", {"lat": 95, "lng": 0}, None, "bad_request"),
        ("locate", {}, None, "bad_request"),
        ("feed.get", {"limit": 1000, "lat": 1, "lng": 1}, None, "bad_request"),
        ("subscribe", {"stream": "nope"}, None, "bad_request"),
        ("comment.create", {"post_id": 5, "text": "x"}, "k8", "bad_request"),
    ]
    for op, data, key, code in cases:
        reply = await ws.request(op, data, key)
        assert reply["ok"] is False and reply["error"]["code"] == code, (op, data, reply)
        assert set(reply["error"]) >= {"code", "message"}

    assert (await ws.ok("ping"))["pong"] is True
    here = spot(settings, 0)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    feed = await ws.ok("feed.get", {})
    assert feed["items"] == []  # nothing of the refused posts was written
    await ws.close()


async def test_a_frame_beyond_the_hard_limit_closes_with_1009(api: Api, settings: Settings) -> None:
    ws = await api.connect(await api.signup())
    await ws.send_raw("x" * (settings.max_frame_bytes * 16 + 1))
    await asyncio.wait_for(ws.closed.wait(), 5)
    assert ws.close_code == 1009


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


async def test_bad_tokens_are_refused_on_websocket(api: Api, http: aiohttp.ClientSession) -> None:
    user = await api.signup()
    header, payload, signature = user.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_claims = {**claims, "sub": "someone-else"}
    tokens = {
        "tampered": f"{header}.{_b64(forged_claims)}.{signature}",
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "garbage": "not.a.token",
        "wrong-signature": f"{header}.{payload}.{signature[::-1]}",
    }
    for name, token in tokens.items():
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(api.base + "/ws", headers={"Authorization": f"Bearer {token}"})
        assert info.value.status == 401, name
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(api.base + "/ws")
    assert info.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(api.base + "/ws?ticket=made-up")
    assert info.value.status == 401


async def test_foreign_origin_is_refused(api: Api, http: aiohttp.ClientSession) -> None:
    user = await api.signup()
    headers = {"Authorization": f"Bearer {user.access_token}", "Origin": "https://evil.example"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(api.base + "/ws", headers=headers)
    assert info.value.status == 403


async def test_ticket_login_for_browsers(api: Api, http: aiohttp.ClientSession) -> None:
    user = await api.signup()
    status, body = await api.post("/api/v1/auth/ws-ticket", {}, token=user.access_token)
    assert status == 200
    ws = await http.ws_connect(api.base + f"/ws?ticket={body['ticket']}")
    hello = json.loads((await ws.receive()).data)
    assert hello == {
        "ev": "hello",
        "data": {"user_id": user.id, "session_id": hello["data"]["session_id"]},
    }
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(api.base + f"/ws?ticket={body['ticket']}")  # single use


async def test_logout_closes_the_sessions_sockets(api: Api) -> None:
    user = await api.signup()
    ws = await api.connect(user)
    status, _ = await api.post("/api/v1/auth/logout", None, token=user.access_token)
    assert status == 204
    await asyncio.wait_for(ws.closed.wait(), 5)
    assert ws.close_code == 4004


async def test_killed_shard_restarts_and_serves_from_postgres(api: Api, settings: Settings) -> None:
    here = spot(settings, 1)
    user = await api.signup()
    ws = await api.connect(user)
    located = await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    before = [
        (await ws.mutate("post.create", {"text": f"before {i}"}))["post"]["id"] for i in range(3)
    ]
    from models.placement import Placement, cell_key
    from store import placement as placement_store
    from store.db import create_pool

    pool = await create_pool(settings.database_url or "")
    table: Placement | None = await placement_store.load(pool)
    await pool.close()
    assert table is not None
    owner = table.owner(cell_key(located["cell"]))
    ray.kill(ray.get_actor(owner, namespace=settings.ray_namespace), no_restart=False)

    key = uuid.uuid4().hex
    for _ in range(60):  # the client's retry loop: same key until it is acked
        reply = await ws.request("post.create", {"text": "after the crash"}, key=key)
        if reply["ok"]:
            break
        assert reply["error"]["code"] == "unavailable", reply
        await asyncio.sleep(0.5)
    assert reply["ok"], reply
    feed = await ws.ok("feed.get", {})
    ids = [p["id"] for p in feed["items"]]
    assert set(before) | {reply["data"]["post"]["id"]} <= set(ids)
    assert ids.count(reply["data"]["post"]["id"]) == 1
    await ws.close()


async def test_rest_bad_bodies_are_typed(api: Api, settings: Settings) -> None:
    for raw in (b"{nope", b"[]", b'"string"', b"null"):
        status, body = await api.post("/api/v1/auth/signup", raw=raw)
        assert status == 400 and body["error"]["code"] == "bad_request", (raw, body)
    status, body = await api.post("/api/v1/auth/signup", {"email": "a@b.test"})
    assert status == 400 and "password" in body["error"]["message"]
    big = b'{"email": "' + b"a" * (settings.max_body_bytes + 10) + b'"}'
    status, body = await api.post("/api/v1/auth/signup", raw=big)
    assert status == 413 and body["error"]["code"] == "too_large"
    status, body = await api.get("/api/v1/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_health_ready_metrics_openapi(api: Api, server: TestServer) -> None:
    assert (await api.get("/healthz"))[0] == 200
    status, body = await api.get("/readyz")
    assert status == 200 and body["checks"] == {"postgres": True, "redis": True, "ray": True}
    status, text = await api.get("/metrics")
    assert status == 200 and "hl_ws_requests_total" in text and "hl_ws_sessions" in text
    assert "hl_router_shard_calls" in text and "hl_router_shard_commands" in text
    server.app[SERVICES].loops.failed("market-sweeper")  # what a failed round counts
    status, text = await api.get("/metrics")
    assert 'hl_loop_failures_total{loop="market-sweeper"} 1.0' in text.splitlines()
    status, spec = await api.get("/api/v1/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    routes = {r.resource.canonical for r in server.app.router.routes() if r.resource}
    assert routes <= set(spec["paths"]), routes - set(spec["paths"])


async def test_metrics_show_the_control_actors_loop_failures(api: Api, server: TestServer) -> None:
    """``/metrics`` asks the control actor for its loops' failed rounds (``background``) and
    exports them in ``hl_loop_failures`` beside the gateway's and the notifier's."""
    control = server.app[SERVICES].control
    assert isinstance(control, RayControl)
    status, _ = await api.get("/metrics")
    assert status == 200 and control.up  # the scrape reached the actor
    control.loop_failures = {"money": 3.0}  # as a failed payout round would answer
    text = server.app[METRICS].render().decode()
    assert 'hl_loop_failures_total{loop="money"} 3.0' in text.splitlines()
