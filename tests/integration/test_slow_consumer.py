"""A client that never reads is closed with 4100 while everyone else keeps receiving (rule 4)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from gateway.context import SESSIONS
from tests.integration.client import Api

pytestmark = pytest.mark.integration

SPOT = (41.3874, 2.1686)  # Barcelona: a neighbourhood of its own


@pytest.fixture
async def small_queue_server(settings: Settings) -> AsyncIterator[TestServer]:
    srv = TestServer(
        build_app(settings.model_copy(update={"outbound_queue_max": 32, "heartbeat_s": 120.0}))
    )
    await srv.start_server()
    yield srv
    await srv.close()


def _frame(payload: bytes) -> bytes:
    """A masked client text frame."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x81])
    if size < 126:
        head += bytes([0x80 | size])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _never_reading_client(port: int, token: str) -> socket.socket:
    """Open /ws with a tiny receive buffer, locate, and from then on never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: hl.json\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    locate = {"id": 1, "op": "locate", "data": {"lat": SPOT[0], "lng": SPOT[1]}}
    sock.sendall(_frame(json.dumps(locate).encode()))
    return sock


async def test_a_slow_consumer_is_closed_and_others_keep_up(
    small_queue_server: TestServer, http: ClientSession, settings: Settings
) -> None:
    api = Api(str(small_queue_server.make_url("")), http)
    slow_user, fast_user, poster_user = [await api.signup(n) for n in ("slow", "fast", "poster")]
    slow = await asyncio.to_thread(
        _never_reading_client, small_queue_server.port, slow_user.access_token
    )
    fast, poster = await api.connect(fast_user), await api.connect(poster_user)
    await fast.ok("locate", {"lat": SPOT[0], "lng": SPOT[1]})  # the poster follows nothing
    sessions = small_queue_server.app[SESSIONS]
    await asyncio.sleep(0.3)  # the slow client's locate is served
    slow_session = next(s for s in sessions.by_id.values() if s.principal.user_id == slow_user.id)

    text = "x" * (settings.max_text_chars - 10)
    sent = 0
    while slow_session.id in sessions.by_id and sent < 2000:  # until kernel buffers overflow
        batch = [
            poster.mutate(
                "post.create", {"text": f"{sent + i} {text}", "lat": SPOT[0], "lng": SPOT[1]}
            )
            for i in range(4)
        ]
        await asyncio.gather(*batch)
        sent += len(batch)
    seen = set()
    while len(seen) < sent:  # the reader kept receiving everything
        event = await fast.next_event("post.created", timeout=20)
        seen.add(event["data"]["post"]["text"].split(" ", 1)[0])
    assert seen == {str(i) for i in range(sent)}

    for _ in range(100):
        if slow_session.id not in sessions.by_id:
            break
        await asyncio.sleep(0.1)
    assert slow_session.id not in sessions.by_id, "the never-reading socket is still open"
    assert slow_session.closed_with == 4100  # reconnect and recover
    slow.close()
    for ws in (fast, poster):
        await ws.close()


async def test_a_peer_that_stops_answering_pings_is_dropped(
    settings: Settings, http: ClientSession
) -> None:
    srv = TestServer(build_app(settings.model_copy(update={"heartbeat_s": 0.5})))
    await srv.start_server()
    try:
        api = Api(str(srv.make_url("")), http)
        user = await api.signup("silent")
        silent = await asyncio.to_thread(_never_reading_client, srv.port, user.access_token)
        sessions = srv.app[SESSIONS]
        for _ in range(100):
            if not sessions.of_user(user.id):
                break
            await asyncio.sleep(0.1)
        assert not sessions.of_user(user.id), "a peer that never answers pings is still held"
        silent.close()
    finally:
        await srv.close()
