"""Chat under a steady stream of messages while things break (issue 3's fault run).

Kill the shard that owns the room, then restart Redis, then SIGKILL one gateway process. Senders
retry every message with its idempotency key until it is acknowledged; members on the killed
gateway reconnect to the other one and resume by offset. Afterwards every acknowledged message
is in Postgres exactly once and every member has received each exactly once, in room order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import ray

from cluster.config import Settings
from cluster.runtime import Runtime
from models.chat import parse_room
from models.placement import cell_key
from store import placement
from store.db import create_pool
from tests.integration.client import Api, User, Ws
from tests.integration.gateways import GatewayProcess

pytestmark = pytest.mark.integration


@dataclass
class Member:
    """One member's view of the room stream across reconnects."""

    user: User
    apis: list[Api]  # preferred gateway first, fallbacks after
    stream: str
    ws: Ws | None = None
    epoch: str | None = None
    offset: int = 0
    received: list[str] = field(default_factory=list)  # message ids, in delivery order
    offsets: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def take(self, frame: dict[str, Any]) -> None:
        if frame.get("stream") != self.stream or "offset" not in frame:
            return
        self.offsets.append(frame["offset"])
        self.epoch, self.offset = frame["epoch"], frame["offset"]
        if frame["ev"] == "chat.message":
            self.received.append(frame["data"]["message"]["id"])

    async def connect(self) -> None:
        for api in self.apis:
            with contextlib.suppress(aiohttp.ClientError, OSError, AssertionError):
                self.ws = await api.connect(self.user)
                since = {"epoch": self.epoch, "offset": self.offset} if self.epoch else None
                reply = await self.ws.ok(
                    "subscribe", {"stream": self.stream, **({"since": since} if since else {})}
                )
                assert reply.get("recovered", True), reply
                self.epoch = self.epoch or reply["epoch"]
                self.offset = self.offset or reply["offset"]
                for frame in reply.get("events", []):
                    self.take(frame)
                return
        raise AssertionError("no gateway accepted the member")

    async def listen(self) -> None:
        while True:
            assert self.ws is not None
            get = asyncio.create_task(self.ws.events.get())
            closed = asyncio.create_task(self.ws.closed.wait())
            done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                closed.cancel()
                self.take(get.result())
                continue
            get.cancel()
            while not self.ws.events.empty():
                self.take(self.ws.events.get_nowait())
            await self.connect()  # the gateway went away: resume elsewhere by offset


async def _send_until_acked(member: Member, room_id: str, text: str, acked: list[str]) -> None:
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ws = member.ws
        if ws is not None and not ws.closed.is_set():
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                reply = await ws.request(
                    "chat.send", {"room_id": room_id, "text": text}, key, timeout=3
                )
                if reply["ok"]:
                    acked.append(reply["data"]["message"]["id"])
                    return
                assert reply["error"]["code"] == "unavailable", reply
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} was never acknowledged")


async def test_no_acknowledged_message_is_lost_or_duplicated_under_faults(
    api: Api, runtime: Runtime, settings: Settings, http: aiohttp.ClientSession
) -> None:
    doomed = GatewayProcess(settings, runtime.ray_address())
    await doomed.start(http)
    api_b = Api(doomed.base, http)
    users = [await api.signup(f"m{i}") for i in range(4)]
    owner = await api.connect(users[0])
    await owner.ok("locate", {"lat": 52.52, "lng": 13.405})
    room = (
        await owner.mutate("room.create", {"title": "faults", "members": [u.id for u in users]})
    )["room"]
    await owner.close()
    stream = f"room:{room['id']}"
    members = [
        Member(users[0], [api], stream),
        Member(users[1], [api], stream),
        Member(users[2], [api_b, api], stream),
        Member(users[3], [api_b, api], stream),
    ]
    for member in members:
        await member.connect()
        member.task = asyncio.create_task(member.listen())

    acked: list[str] = []
    senders = (members[0], members[2])  # one on each gateway
    sends: list[asyncio.Task[None]] = []

    async def steady(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for sender in senders:
                text = f"m{len(sends)}"
                sends.append(
                    asyncio.create_task(_send_until_acked(sender, room["id"], text, acked))
                )
            await asyncio.sleep(0.1)

    await steady(1.0)
    ref = parse_room(room["id"])
    assert ref is not None
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        table = await placement.load(pool)
        assert table is not None
        ray.kill(
            ray.get_actor(table.owner(cell_key(ref.cell)), namespace=settings.ray_namespace),
            no_restart=False,
        )
        await steady(2.0)
        assert runtime.redis is not None
        await asyncio.to_thread(runtime.redis.restart)
        await steady(2.0)
        await doomed.kill()
        await steady(2.0)
        await asyncio.wait_for(asyncio.gather(*sends), 90)

        rows = await pool.fetch(
            "SELECT id, count(*) OVER (PARTITION BY id) AS n FROM messages WHERE room_id = $1",
            room["id"],
        )
    finally:
        await pool.close()
    stored = [r["id"] for r in rows]
    assert sorted(stored) == sorted(acked), "Postgres holds exactly the acknowledged messages"
    assert all(r["n"] == 1 for r in rows)

    # Let live delivery settle, then every member must hold every message once, in order.
    for _ in range(100):
        if all(len(m.received) >= len(acked) for m in members):
            break
        await asyncio.sleep(0.1)
    for member in members:
        assert member.task is not None
        member.task.cancel()
        assert member.offsets == sorted(set(member.offsets)), "room order, no duplicates"
        assert sorted(member.received) == sorted(acked), member.user.id
        if member.ws is not None:
            await member.ws.close()
    await doomed.stop()


async def test_presence_forgets_the_users_of_a_dead_gateway(
    api: Api, runtime: Runtime, settings: Settings, http: aiohttp.ClientSession
) -> None:
    doomed = GatewayProcess(settings, runtime.ray_address(), {"HL_PRESENCE_TTL_S": "3"})
    await doomed.start(http)
    ann, ben = await api.signup("ann"), await api.signup("ben")
    a = await api.connect(ann)
    b = await Api(doomed.base, http).connect(ben)
    room = (await a.ok("chat.open", {"user_id": ben.id}))["room"]
    stream = f"room:{room['id']}"
    await a.ok("subscribe", {"stream": stream})
    await b.ok("subscribe", {"stream": stream})
    assert (await a.ok("presence.get", {"stream": stream}))["users"] == sorted([ann.id, ben.id])
    await doomed.kill()  # no goodbye: its Redis entries stay until they expire
    for _ in range(100):
        if (await a.ok("presence.get", {"stream": stream}))["users"] == [ann.id]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("presence still lists the dead gateway's user")
    await a.close()
