"""hyperlocal_client's own rules, against a small aiohttp server of the test's (no deployment):
REST retries of 429/5xx with one idempotency key, typed errors; a websocket session's replies
matched by id, error replies as ApiError, ``unavailable`` retried with the same key, a late
reply queued with the events, requests failing with ConnectionError when the socket closes,
and a ``receive`` override seeing every message (the load generator's fast path)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hyperlocal_client import Api, ApiError, Socket
from hyperlocal_client.ws import ENDS


class Stage:
    """What the test server does and saw."""

    def __init__(self) -> None:
        self.failures: list[tuple[int, dict[str, str]]] = []  # answered before a 200, in order
        self.keys: list[str | None] = []
        self.frames: list[dict[str, Any]] = []


STAGE = web.AppKey("stage", Stage)


async def rest(request: web.Request) -> web.Response:
    stage = request.app[STAGE]
    stage.keys.append(request.headers.get("Idempotency-Key"))
    if stage.failures:
        status, headers = stage.failures.pop(0)
        body = {"error": {"code": "unavailable", "message": "later"}}
        return web.json_response(body, status=status, headers=headers)
    return web.json_response({"got": await request.json()}, status=201)


async def sock(request: web.Request) -> web.WebSocketResponse:
    stage = request.app[STAGE]
    ws = web.WebSocketResponse(protocols=("hl.json",))
    await ws.prepare(request)
    await ws.send_json({"ev": "hello", "data": {"user_id": "u1"}})
    unavailable = 1
    async for msg in ws:
        frame = json.loads(msg.data)
        stage.frames.append(frame)
        op, ident = frame["op"], frame["id"]
        if op == "echo":
            await ws.send_json({"re": ident, "ok": True, "data": frame["data"]})
        elif op == "fail":
            error = {"code": "not_found", "message": "no such thing"}
            await ws.send_json({"re": ident, "ok": False, "error": error})
        elif op == "flaky" and unavailable:
            unavailable -= 1
            error = {"code": "unavailable", "message": "retry with the same key"}
            await ws.send_json({"re": ident, "ok": False, "error": error})
        elif op == "flaky":
            await ws.send_json({"re": ident, "ok": True, "data": {"key": frame["key"]}})
        elif op == "slow":
            await asyncio.sleep(0.3)
            await ws.send_json({"re": ident, "ok": True, "data": {}})
        elif op == "bye":
            await ws.close(code=4004)
    return ws


@pytest.fixture
async def stage() -> AsyncIterator[tuple[Stage, str, aiohttp.ClientSession]]:
    app = web.Application()
    app[STAGE] = seen = Stage()
    app.router.add_post("/api/v1/thing", rest)
    app.router.add_get("/ws", sock)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield seen, str(server.make_url("")), http
    await server.close()


async def test_rest_retries_429_and_5xx_with_one_key(stage: Any) -> None:
    seen, base, http = stage
    seen.failures = [(503, {}), (429, {"Retry-After": "0"})]
    answer = await Api(base, http, retries=2).post("/api/v1/thing", {"a": 1})
    assert answer == {"got": {"a": 1}}
    assert len(seen.keys) == 3 and len(set(seen.keys)) == 1 and seen.keys[0]


async def test_rest_errors_are_typed_and_not_retried_by_default(stage: Any) -> None:
    seen, base, http = stage
    seen.failures = [(429, {"Retry-After": "7"})]
    with pytest.raises(ApiError) as caught:
        await Api(base, http).post("/api/v1/thing", {})
    exc = caught.value
    assert (exc.status, exc.code, exc.retry_after_s) == (429, "unavailable", 7.0)
    assert len(seen.keys) == 1


async def test_a_session_matches_replies_and_types_errors(stage: Any) -> None:
    seen, base, http = stage
    async with await Socket.open(http, base, "t") as ws:
        assert ws.hello == {"user_id": "u1"}
        one, two = await asyncio.gather(ws.request("echo", {"n": 1}), ws.request("echo", {"n": 2}))
        assert (one, two) == ({"n": 1}, {"n": 2})
        with pytest.raises(ApiError) as caught:
            await ws.request("fail")
        assert (caught.value.status, caught.value.code) == (0, "not_found")
        assert (await ws.mutate("flaky", {}, retries=1))["key"] == seen.frames[-1]["key"]
        assert seen.frames[-2]["key"] == seen.frames[-1]["key"]  # retried with its key
        with pytest.raises(TimeoutError):
            await ws.request("slow", timeout_s=0.05)
        late = await ws.next_event(None, timeout_s=2)  # the reply given up on
        assert late["re"] == seen.frames[-1]["id"] and late["ok"]


async def test_a_waiting_request_fails_when_the_socket_closes(stage: Any) -> None:
    _, base, http = stage
    ws = await Socket.open(http, base, "t")
    waiting = asyncio.create_task(ws.request("never"))  # the server never answers it
    await asyncio.sleep(0.05)
    await ws.send_raw(json.dumps({"id": 999, "op": "bye", "data": {}}))
    with pytest.raises(ConnectionError):
        await waiting
    assert ws.closed.is_set() and ws.close_code == 4004
    with pytest.raises(ConnectionError):
        await ws.request("echo")
    await ws.close()


class Counting(Socket):
    """A ``receive`` override: sees every message, hands the rest to the package."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__(ws)
        self.seen = 0
        self.ended = 0

    def receive(self, msg: aiohttp.WSMessage) -> bool:
        self.seen += 1
        return super().receive(msg) if msg.type not in ENDS else False

    def on_closed(self) -> None:
        self.ended += 1


async def test_a_receive_override_sees_every_message(stage: Any) -> None:
    _, base, http = stage
    ws = await Counting.open(http, base, "t", heartbeat=None)
    frame = {"id": next(ws.ids), "op": "echo", "data": {"raw": True}}
    await ws.send_raw(json.dumps(frame))  # a frame encoded by hand: its reply is queued
    reply = await ws.next_event(None, timeout_s=2)
    assert reply == {"re": frame["id"], "ok": True, "data": {"raw": True}}
    assert await ws.request("echo", {"n": 3}) == {"n": 3}
    assert ws.seen == 3  # hello, the raw reply, the reply
    await ws.close()
    assert ws.ended == 1
