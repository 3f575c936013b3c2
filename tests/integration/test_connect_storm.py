"""A connect storm loses no presence: a thousand sockets connecting and locating at once, then
closing at once, leave presence exact, with nothing logged as failed (the gateway's Redis pool
makes callers wait for a connection instead of raising, services/container.py)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import h3
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from cluster.runtime import Runtime
from gateway.context import SERVICES
from models.auth import Principal, new_secret_token, token_digest
from models.ids import new_id
from store import users
from tests.integration.client import Api, User, Ws
from tests.integration.gateways import GatewayProcess

pytestmark = pytest.mark.integration

SOCKETS = 1000
BUENOS_AIRES = {"lat": -34.6037, "lng": -58.3816}


async def _users(server: TestServer, n: int) -> list[User]:
    """``n`` signed-in users straight in Postgres (signing up a thousand through argon2 would
    only test the hasher)."""
    services = server.app[SERVICES]
    run = uuid.uuid4().hex[:8]
    out = []
    for i in range(n):
        email = f"storm-{run}-{i}@example.test"
        row, _ = await users.create_user(services.db, new_id(), email, email, "!", f"storm {i}")
        family = new_id()
        digest = token_digest(new_secret_token())
        await users.start_family(services.db, family, row.id, digest, 3600)
        token = services.accounts.codec.issue(
            Principal(row.id, frozenset(row.roles), family), int(time.time())
        )
        out.append(User(row.id, email, token, ""))
    return out


async def _present(api: Api, watcher: User, stream: str) -> set[str]:
    ws = await api.connect(watcher)
    try:
        return set((await ws.ok("presence.get", {"stream": stream}))["users"])
    finally:
        await ws.close()


async def test_a_thousand_sockets_at_once_leave_presence_exact(
    server: TestServer, settings: Settings, runtime: Runtime
) -> None:
    """Against a gateway process of its own (the clients here would otherwise share its event
    loop), with a small Redis pool so that a thousand presence entries must wait their turn."""
    cell = str(h3.latlng_to_cell(BUENOS_AIRES["lat"], BUENOS_AIRES["lng"], settings.h3_resolution))
    stream = f"feed:{cell}"
    crowd = await _users(server, SOCKETS + 1)
    watcher, crowd = crowd[0], crowd[1:]
    connector = aiohttp.TCPConnector(limit=0)  # the shared test client caps at 100 sockets
    async with aiohttp.ClientSession(connector=connector) as http:
        gateway = GatewayProcess(
            settings,
            runtime.ray_address(),
            # a small pool, so a thousand entries wait their turn; a long heartbeat, so that a
            # slow pong from this busy client process does not end a session mid-test
            env={
                "HL_REDIS_MAX_CONNECTIONS": "16",
                "HL_REDIS_POOL_TIMEOUT_S": "120",
                "HL_HEARTBEAT_S": "120",
            },
        )
        await gateway.start(http)
        try:
            api = Api(gateway.base, http)

            async def arrive(user: User) -> Ws:
                ws = await api.connect(user)
                reply = await ws.request("locate", BUENOS_AIRES, timeout=120)  # a storm queues
                assert reply["ok"], reply
                return ws

            sockets = await asyncio.gather(*(arrive(u) for u in crowd))
            assert await _present(api, watcher, stream) == {u.id for u in crowd}
            await asyncio.gather(*(ws.close() for ws in sockets))
            deadline = time.monotonic() + 30
            left = await _present(api, watcher, stream)
            while left and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                left = await _present(api, watcher, stream)
            assert left == set(), f"{len(left)} users still present after they all left"
        finally:
            await gateway.stop()
    failed = [
        line
        for line in gateway.log.read_text().splitlines()
        if ("presence" in line and ("WARNING" in line or "ERROR" in line))
        or "MaxConnectionsError" in line
        or "No connection available" in line
    ]
    assert not failed, failed[:5]
