"""A websocket session: requests by id with their replies matched, events queued in order.

``open_ws`` is the raw connection (``/ws``, the Bearer in a header, never in the URL);
``Socket`` the session over it. A load generator keeps its hot path as lean as a hand-written
client's by overriding ``receive`` (the reader's one call per message) and sending frames it
encoded itself on ``ws`` (bench/loadgen.py does both): the rest of the session — setup
requests, the ``hello``, the close — stays the package's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from types import TracebackType
from typing import Any, Self

import aiohttp

from hyperlocal_client.types import ApiError

ENDS = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR)  # fmt: skip
"""Message kinds that end a session (what a ``receive`` override returns False for)."""


async def open_ws(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    protocol: str = "hl.json",
    **options: Any,
) -> aiohttp.ClientWebSocketResponse:
    """The raw websocket of ``base``'s ``/ws`` for the access ``token``, subprotocol
    ``protocol`` (``hl.json`` or ``hl.msgpack``). ``options`` go to aiohttp's ``ws_connect``
    (``heartbeat=None, max_msg_size=0`` for a load generator's thousands of sockets, extra
    ``headers``...)."""
    headers = {"Authorization": f"Bearer {token}", **options.pop("headers", {})}
    return await http.ws_connect(
        base.rstrip("/") + "/ws", headers=headers, protocols=(protocol,), **options
    )


class Socket:
    """One session over ``/ws``: ``request``/``mutate`` answer the reply's data or raise
    ``ApiError`` (status 0); events wait in ``events`` (``next_event`` reads them), and so does
    a reply nobody waits for (one to a frame sent by hand, or to a request given up on). When
    the socket closes, ``closed`` is set, ``close_code`` says how, and every request still
    waiting raises ``ConnectionError``.

    ``call`` answers the whole reply frame, error or not. A subclass may speak another
    encoding by overriding ``send_frame`` and ``decode`` (the tests' client adds msgpack), or
    route frames its own way by overriding ``receive`` (handing what it does not want to
    ``dispatch``). ``ids`` numbers the requests: a frame built by hand takes its id there, so
    its reply can never be taken for another's."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        base: str,
        token: str,
        protocol: str = "hl.json",
        *,
        hello_timeout_s: float = 30.0,
        **options: Any,
    ) -> Self:
        """A session of the user of ``token``, once its ``hello`` has arrived (``options``:
        as ``open_ws``)."""
        sock = cls(await open_ws(http, base, token, protocol, **options))
        sock.start()
        await sock.wait_hello(hello_timeout_s)
        return sock

    def start(self) -> None:
        """Start reading frames (``open`` does; a socket built by hand calls it once)."""
        self._reader = asyncio.create_task(self._read())

    async def wait_hello(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """The server's first frame, ``hello`` (kept in ``hello``)."""
        frame = await self.next_event("hello", timeout_s)
        self.hello = dict(frame["data"])
        return self.hello

    # -- receiving ---------------------------------------------------------------------------
    def decode(self, msg: aiohttp.WSMessage) -> dict[str, Any] | None:
        """A received message's frame; None ends the session (close, error, other kinds)."""
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        frame: dict[str, Any] = json.loads(msg.data)
        return frame

    def receive(self, msg: aiohttp.WSMessage) -> bool:
        """Handle one received message; False ends the session. The reader calls nothing
        else per message, so an override is the whole cost of a frame."""
        frame = self.decode(msg)
        if frame is None:
            return False
        self.dispatch(frame)
        return True

    def dispatch(self, frame: dict[str, Any]) -> None:
        """A decoded frame: the reply of a waiting ``call``, else queued in ``events``."""
        if "re" in frame and self.resolve(frame):
            return
        self.events.put_nowait(frame)

    def resolve(self, frame: dict[str, Any]) -> bool:
        """Hand a reply frame to the ``call`` waiting for it; False if none is."""
        future = self._replies.pop(frame["re"], None)
        if future is None or future.done():
            return False
        future.set_result(frame)
        return True

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if not self.receive(msg):
                    break
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            waiting, self._replies = self._replies, {}
            for future in waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"socket closed ({self.close_code})"))
            self.on_closed()

    def on_closed(self) -> None:
        """Called once when the reader stops (the socket closed, or ``receive`` said so)."""

    # -- sending -----------------------------------------------------------------------------
    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one frame."""
        await self.ws.send_str(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        """Send an already encoded frame as it is (text for ``str``, binary for ``bytes``)."""
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def call(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        timeout_s: float = 15.0,
    ) -> dict[str, Any]:
        """Send ``op`` and answer its reply frame (``{"re", "ok", "data" | "error"}``);
        ``TimeoutError`` after ``timeout_s``, ``ConnectionError`` if the socket closes first."""
        if self.closed.is_set():
            raise ConnectionError(f"socket closed ({self.close_code})")
        ident = next(self.ids)
        frame: dict[str, Any] = {"id": ident, "op": op, "data": data or {}}
        if key is not None:
            frame["key"] = key
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ident] = future
        try:
            await self.send_frame(frame)
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._replies.pop(ident, None)  # given up on: a late reply goes to ``events``

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

    async def mutate(
        self,
        op: str,
        data: dict[str, Any],
        key: str | None = None,
        *,
        retries: int = 0,
        timeout_s: float = 15.0,
    ) -> dict[str, Any]:
        """A mutating op with an idempotency key (a fresh one unless given). An
        ``unavailable`` answer (a shard moving or restarting: "retry with the same key") is
        retried up to ``retries`` times with that key, after 0.2 s, 0.4 s, ... (at most 2 s)."""
        key = key or uuid.uuid4().hex
        for attempt in range(retries + 1):
            try:
                return await self.request(op, data, key, timeout_s=timeout_s)
            except ApiError as exc:
                if exc.code != "unavailable" or attempt == retries:
                    raise
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
