"""The websocket endpoint: authenticate, greet, then read frames into typed requests.

The read loop decodes and validates each frame, applies the per-socket rate limit and hands the
request to its op from ``registry.OPS``. Session-state ops (``Op.inline``: locate, subscribe...)
run in order inside the loop; the rest run concurrently, at most ``_IN_FLIGHT`` per socket
(the loop waits beyond, which is the socket's backpressure). Every failure becomes a typed
error reply; the socket stays usable unless the client broke the protocol's framing.

An idle socket costs what its session and reader hold for as long as it is open, so they hold
little: the set of running requests and the wait for a free slot exist only once a request
runs concurrently, and nothing a request needed outlives it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import msgpack
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from gateway.commands import Envelope
from gateway.context import HUB, METRICS, SERVICES, SESSIONS, SETTINGS
from gateway.http import error_response, validation_message
from gateway.ops import Call, Op, follow, set_presence_cell, unfollow
from gateway.registry import OPS
from gateway.sessions import Session
from models.auth import Principal
from models.errors import (
    AppError,
    BadRequest,
    Forbidden,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from models.ids import new_id
from models.ratelimit import TokenBucket
from models.streams import user_stream

log = logging.getLogger("hyperlocal.ws")

PROTOCOLS = ("hl.json", "hl.msgpack")
_IN_FLIGHT = 32


def check_origin(request: web.Request) -> None:
    """Browsers send Origin: it must be allowed, or the gateway's own host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    allowed = request.app[SETTINGS].allowed_origins
    if origin.rstrip("/") in allowed:
        return
    if urlsplit(origin).netloc == request.host:
        return
    raise Forbidden("origin not allowed")


async def authenticate(request: web.Request) -> Principal:
    auth = request.app[SERVICES].accounts
    # The parsed query stays with the request as long as the socket: only parse one there is.
    ticket = request.query.get("ticket") if request.query_string else None
    if ticket:
        return await auth.consume_ticket(ticket)
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("missing credentials: Authorization: Bearer or ?ticket=")
    return await auth.authenticate_bearer(header)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    try:
        check_origin(request)
        principal = _shared_roles(await authenticate(request))
    except AppError as err:
        return error_response(err)
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(
        protocols=PROTOCOLS,
        heartbeat=settings.heartbeat_s,
        max_msg_size=settings.max_frame_bytes * 16,
        compress=False,
    )
    await ws.prepare(request)
    session = Session(
        ws,
        principal,
        new_id(),
        ws.ws_protocol == "hl.msgpack",
        settings.outbound_queue_max,
        request.transport,
        request.app[SESSIONS].writes,
    )
    # This coroutine is the socket's for as long as it is open (each level of calls below it
    # would stay alive as long): it reads the frames itself.
    reader = _Reader(request.app, session)
    reader.start()
    try:
        await _follow_inbox(request.app, session)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await reader.on_frame(msg.data, _utf8_size(msg.data, reader.max_bytes))
            elif msg.type == WSMsgType.BINARY:
                await reader.on_frame(msg.data, len(msg.data))
            elif msg.type == WSMsgType.ERROR:
                log.info("session %s socket error: %r", session.id, ws.exception())
                break
            del msg  # not kept while the socket waits for its next frame
    finally:
        await reader.finish()
    return ws


_ROLES: dict[frozenset[str], frozenset[str]] = {}


def _shared_roles(principal: Principal) -> Principal:
    """The principal with the one frozenset of its roles every session with them shares (a
    token's roles decode into a new set each time; most users have the same few, or none)."""
    roles = _ROLES.get(principal.roles)
    if roles is None:
        if len(_ROLES) < 64:  # a bound, whatever tokens come in
            _ROLES[principal.roles] = principal.roles
        return principal
    if roles is principal.roles:
        return principal
    return Principal(principal.user_id, roles, principal.session_id)


async def _follow_inbox(app: web.Application, session: Session) -> None:
    """Follow the user's own stream (in a frame of its own: nothing of it stays)."""
    inbox = Call(app[SERVICES], app[HUB], session, None)
    await follow(inbox, user_stream(session.principal.user_id), None)
    for step in inbox.after_reply:
        step()


class _Reader:
    """The read side of one session."""

    __slots__ = ("_room", "app", "bucket", "hub", "in_flight", "max_bytes", "services", "session")

    def __init__(self, app: web.Application, session: Session) -> None:
        self.app = app
        self.session = session
        self.services = app[SERVICES]
        self.hub = app[HUB]
        settings = app[SETTINGS]
        self.max_bytes = settings.max_frame_bytes
        self.bucket = TokenBucket(settings.ws_rate_per_s, settings.ws_rate_burst)
        self.in_flight: set[asyncio.Task[None]] | None = None  # requests running concurrently
        self._room: asyncio.Future[None] | None = None  # the loop waits here for a free slot

    def start(self) -> None:
        """Register the session and greet the client."""
        session = self.session
        self.app[SESSIONS].add(session)
        self.app[METRICS].connections.inc()
        user_id = session.principal.user_id
        session.send({"ev": "hello", "data": {"user_id": user_id, "session_id": session.id}})

    async def finish(self) -> None:
        """The socket is gone: cancel its requests, leave its streams and presence."""
        session = self.session
        tasks = self.in_flight or ()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        leaving = Call(self.services, self.hub, session, None)
        for stream in list(session.followed):
            await unfollow(leaving, stream)
        await set_presence_cell(leaving, None)
        self.app[SESSIONS].remove(session)
        await session.stop_writer()
        self.app[METRICS].closed.labels(str(session.closed_with or session.ws.close_code)).inc()

    def reply_error(self, re: Any, err: AppError) -> None:
        self.session.send({"re": re, "ok": False, "error": err.to_dict()})

    async def on_frame(self, raw: str | bytes, size: int) -> None:
        if size > self.max_bytes:
            self.reply_error(
                None, TooLarge(f"frame is {size} bytes; the limit is {self.max_bytes}")
            )
            return
        if not self.bucket.allow(time.monotonic()):
            self.reply_error(_peek_id(raw), RateLimited("too many requests, slow down"))
            return
        try:
            env = Envelope.model_validate(_decode(raw))
        except AppError as err:
            self.reply_error(None, err)
            return
        except ValidationError as exc:
            self.reply_error(_peek_id(raw), BadRequest(validation_message(exc)))
            return
        op = OPS.get(env.op)
        if op is not None and op.inline:
            await self.handle(env, op)
            return
        tasks = self.in_flight
        if tasks is None:
            tasks = self.in_flight = set()
        while len(tasks) >= _IN_FLIGHT:  # the loop waits: the socket's backpressure
            self._room = asyncio.get_running_loop().create_future()
            await self._room
        task = asyncio.create_task(self.handle(env, op))
        tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        assert self.in_flight is not None
        self.in_flight.discard(task)
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    async def handle(self, env: Envelope, op: Op | None) -> None:
        """Serve one request whose op was looked up once, by ``on_frame``."""
        metrics = self.app[METRICS]
        started = time.perf_counter()
        call = Call(self.services, self.hub, self.session, env.key)
        code = "ok"
        try:
            if op is None:
                raise BadRequest(f"unknown op {env.op!r}")
            if op.mutating and env.key is None:
                raise BadRequest(f"{env.op} mutates: it needs an idempotency key")
            try:
                req = op.model.model_validate(env.data)
            except ValidationError as exc:
                raise BadRequest(validation_message(exc)) from None
            data = await op.handler(call, req)
            self.session.send({"re": env.id, "ok": True, "data": data})
            for step in call.after_reply:
                step()
        except AppError as err:
            code = err.code
            self.reply_error(env.id, err)
        except Exception:
            code = "unavailable"
            log.exception("op %s failed for session %s", env.op, self.session.id)
            self.reply_error(env.id, Unavailable("internal error, retry with the same key"))
        op_label = env.op if op is not None else "unknown"
        metrics.request_done(op_label, code, time.perf_counter() - started)


def _utf8_size(text: str, limit: int) -> int:
    """The frame's size in bytes where it matters: a text that cannot exceed ``limit`` even at
    4 bytes a character is not encoded just to be measured (the common case, every frame)."""
    return len(text) if len(text) * 4 <= limit else len(text.encode())


def _decode(raw: str | bytes) -> Any:
    try:
        value = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise BadRequest("frame is not valid JSON (or msgpack on hl.msgpack)") from None
    if not isinstance(value, dict):
        raise BadRequest("a request must be an object: {id, op, key?, data?}")
    return value


def _peek_id(raw: str | bytes) -> Any:
    try:
        value = _decode(raw)
    except AppError:
        return None
    ident = value.get("id")
    return ident if isinstance(ident, int | str) else None
