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
    ``ApiError`` (status 0); events wait in ``events`` (``next_event`` reads them)."""

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
        sock._reader = asyncio.create_task(sock._read())
        hello = await sock.next_event("hello")
        sock.hello = dict(hello["data"])
        return sock

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            future = self._replies.pop(frame["re"], None) if "re" in frame else None
            if future is not None:
                if not future.done():
                    future.set_result(frame)
            else:
                self.events.put_nowait(frame)
        self.close_code = self.ws.close_code
        self.closed.set()

    async def request(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        timeout_s: float = 15.0,
    ) -> dict[str, Any]:
        ident = next(self._ids)
        frame: dict[str, Any] = {"id": ident, "op": op, "data": data or {}}
        if key is not None:
            frame["key"] = key
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ident] = future
        await self.ws.send_str(json.dumps(frame))
        reply = await asyncio.wait_for(future, timeout_s)
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
