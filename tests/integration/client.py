"""A small real client of the gateway for tests: REST calls and websocket sessions."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack


@dataclass
class User:
    id: str
    email: str
    access_token: str
    refresh_token: str


class Api:
    """REST helper bound to one gateway base URL."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base.rstrip("/")
        self.http = http

    async def post(
        self, path: str, body: Any = None, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with self.http.post(self.base + path, headers=headers, **kwargs) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.base + path, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def signup(self, name: str = "user") -> User:
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.test"
        status, body = await self.post(
            "/api/v1/auth/signup",
            {"email": email, "password": "correct horse battery", "display_name": name},
        )
        assert status == 201, body
        return User(body["user"]["id"], email, body["access_token"], body["refresh_token"])

    async def connect(
        self, user: User, *, protocol: str = "hl.json", headers: dict[str, str] | None = None
    ) -> Ws:
        hdrs = {"Authorization": f"Bearer {user.access_token}", **(headers or {})}
        ws = await self.http.ws_connect(
            self.base + "/ws", headers=hdrs, protocols=(protocol,), heartbeat=None
        )
        client = Ws(ws, protocol == "hl.msgpack")
        client.start()
        hello = await client.next_event("hello")
        assert hello["data"]["user_id"] == user.id
        return client


@dataclass
class Ws:
    """A websocket session: requests by id, replies matched, events queued in order."""

    ws: aiohttp.ClientWebSocketResponse
    binary: bool = False
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    replies: dict[Any, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                frame = msgpack.unpackb(msg.data, raw=False)
            else:
                break
            if "re" in frame:
                future = self.replies.pop(frame["re"], None)
                if future is not None and not future.done():
                    future.set_result(frame)
                else:
                    await self.events.put(frame)  # unmatched replies are visible to tests
            else:
                await self.events.put(frame)
        self.close_code = self.ws.close_code
        self.closed.set()

    async def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def request(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        ident = next(self.ids)
        frame: dict[str, Any] = {"id": ident, "op": op, "data": data or {}}
        if key is not None:
            frame["key"] = key
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[ident] = future
        if self.binary:
            await self.ws.send_bytes(msgpack.packb(frame, use_bin_type=True))
        else:
            await self.ws.send_str(json.dumps(frame))
        return await asyncio.wait_for(future, timeout)

    async def ok(
        self, op: str, data: dict[str, Any] | None = None, key: str | None = None
    ) -> dict[str, Any]:
        reply = await self.request(op, data, key)
        assert reply["ok"], reply
        return dict(reply["data"])

    async def mutate(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        return await self.ok(op, data, key=uuid.uuid4().hex)

    async def next_event(self, ev: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """The next event (of kind ``ev``, skipping others)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await asyncio.wait_for(self.events.get(), max(left, 0.001))
            if ev is None or frame.get("ev") == ev:
                return frame

    async def no_event(self, ev: str, wait: float = 1.0) -> None:
        """Assert no event of kind ``ev`` arrives within ``wait`` seconds."""
        try:
            frame = await self.next_event(ev, timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event {frame}")

    async def close(self) -> None:
        await self.ws.close()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
