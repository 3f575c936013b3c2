"""A small real client of the gateway for tests: REST calls and websocket sessions."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgpack

from hyperlocal_client.ws import Socket


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


class Ws(Socket):
    """The package's websocket session (hyperlocal_client/ws.py) with what tests add: msgpack
    frames (``binary``), ``request`` answering the whole reply frame, ``ok`` and
    ``mutate`` asserting success, and ``no_event``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, binary: bool = False) -> None:
        super().__init__(ws)
        self.binary = binary

    def decode(self, msg: aiohttp.WSMessage) -> dict[str, Any] | None:
        if msg.type == aiohttp.WSMsgType.BINARY:
            frame: dict[str, Any] = msgpack.unpackb(msg.data, raw=False)
            return frame
        return super().decode(msg)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send_bytes(msgpack.packb(frame, use_bin_type=True))
        else:
            await super().send_frame(frame)

    async def request(  # type: ignore[override]  # the reply frame, error or not
        self,
        op: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        return await self.call(op, data, key, timeout_s=timeout)

    async def ok(
        self, op: str, data: dict[str, Any] | None = None, key: str | None = None
    ) -> dict[str, Any]:
        reply = await self.request(op, data, key)
        assert reply["ok"], reply
        return dict(reply["data"])

    async def mutate(self, op: str, data: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        return await self.ok(op, data, key=key or uuid.uuid4().hex)

    async def next_event(  # ``timeout``, as the tests call it
        self, ev: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        return await super().next_event(ev, timeout_s=timeout)

    async def no_event(self, ev: str, wait: float = 1.0) -> None:
        """Assert no event of kind ``ev`` arrives within ``wait`` seconds."""
        try:
            frame = await self.next_event(ev, timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event {frame}")

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:  # a reader that failed on a bad frame: the test's concern
            await asyncio.gather(self._reader, return_exceptions=True)
