"""A websocket session: requests by id with their replies matched, events queued in order."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from types import TracebackType
from typing import Any

import aiohttp

from hyperlocal_client.types import ApiError


class Socket:
    """One session over ``/ws``: ``request``/``mutate`` answer the reply's data or raise
    ``ApiError`` (status 0); events wait in ``events`` (``next_event`` reads them), and so does
    a reply nobody waits for (one to a frame sent by hand, or to a request given up on).

    ``call`` answers the whole reply frame, error or not. A subclass may speak another
    encoding by overriding ``send_frame`` and ``decode`` (the tests' client adds msgpack)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, base: str, token: str, protocol: str = "hl.json"
    ) -> Socket:
        ws = await http.ws_connect(
            base + "/ws", headers={"Authorization": f"Bearer {token}"}, protocols=(protocol,)
        )
        sock = cls(ws)
        sock.start()
        hello = await sock.next_event("hello")
        sock.hello = dict(hello["data"])
        return sock

    def start(self) -> None:
        """Start reading frames (``open`` does; a socket built by hand calls it once)."""
        self._reader = asyncio.create_task(self._read())

    def decode(self, msg: aiohttp.WSMessage) -> dict[str, Any] | None:
        """A received message's frame; None ends the session (close, error, other kinds)."""
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        frame: dict[str, Any] = json.loads(msg.data)
        return frame

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one frame."""
        await self.ws.send_str(json.dumps(frame))

    async def _read(self) -> None:
        async for msg in self.ws:
            frame = self.decode(msg)
            if frame is None:
                break
            future = self._replies.pop(frame["re"], None) if "re" in frame else None
            if future is not None and not future.done():
                future.set_result(frame)
            else:
                self.events.put_nowait(frame)
        self.close_code = self.ws.close_code
        self.closed.set()

    async def call(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        timeout_s: float = 15.0,
    ) -> dict[str, Any]:
        """Send ``op`` and answer its reply frame (``{"re", "ok", "data" | "error"}``)."""
        ident = next(self._ids)
        frame: dict[str, Any] = {"id": ident, "op": op, "data": data or {}}
        if key is not None:
            frame["key"] = key
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ident] = future
        await self.send_frame(frame)
        return await asyncio.wait_for(future, timeout_s)

    async def request(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        timeout_s: float = 15.0,
    ) -> dict[str, Any]:
        """The reply's data, or ``ApiError`` (status 0) for an error reply."""
        reply = await self.call(op, data, key, timeout_s=timeout_s)
        if not reply["ok"]:
            error = reply["error"]
            raise ApiError(0, error["code"], error["message"], error.get("details"))
        return dict(reply["data"])

    async def mutate(self, op: str, data: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """A mutating op with an idempotency key (a fresh one unless given)."""
        return await self.request(op, data, key or uuid.uuid4().hex)

    async def next_event(self, ev: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next event (of kind ``ev``, skipping others)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            frame = await asyncio.wait_for(self.events.get(), max(deadline - loop.time(), 0.001))
            if ev is None or frame.get("ev") == ev:
                return frame

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
