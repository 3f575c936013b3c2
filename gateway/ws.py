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
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from gateway.commands import Envelope
from gateway.context import HUB, METRICS, SERVICES, SESSIONS, SETTINGS
from gateway.http import check_request_text, error_response, validation_message
from gateway.input_guard import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    check_text,
    check_value,
    cut_deep_json,
    json_text_is_plain,
    loads_json,
    loads_msgpack,
)
from gateway.ops import Call, Op, follow, set_presence_cell, unfollow
from gateway.ratelimit import check_rate, client_address
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
from models.risk import device_key
from models.streams import user_stream
from services.caller import Client

log = logging.getLogger("hyperlocal.ws")

PROTOCOLS = ("hl.json", "hl.msgpack")
_IN_FLIGHT = 32
_ID_MAX_CHARS = 64


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def origin_allowed(origin: str, public_url: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a browser page of ``origin`` may open a websocket: the deployment's public
    origin, one of ``allowed``, or (only when no public origin is configured: development) a
    loopback page. The request's Host is never compared: a DNS-rebinding page controls it."""
    origin = origin.rstrip("/").lower()
    if origin in allowed:
        return True
    if public_url is not None:
        return origin == public_url.rstrip("/").lower()
    parts = urlsplit(origin)
    host = parts.netloc.rpartition(":")[0] if parts.port else parts.netloc
    return parts.scheme in ("http", "https") and host in _LOOPBACK_HOSTS


def check_origin(request: web.Request) -> None:
    """Browsers send Origin: it must be allowed (``origin_allowed``)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    settings = request.app[SETTINGS]
    try:
        ok = origin_allowed(origin, settings.public_url, settings.allowed_origins)
    except ValueError:  # a port that is not a number
        ok = False
    if not ok:
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
    # The middlewares pass this path straight through (gateway/http.py: WS_PATH): its checks
    # are made here, in their order there.
    try:
        check_request_text(request)
        await check_rate(request)
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
    if not ws.can_prepare(request).ok:
        return error_response(
            BadRequest("not a websocket upgrade: send Upgrade: websocket and Sec-WebSocket-Key")
        )
    await ws.prepare(request)
    ws.headers.clear()  # on the wire already; an idle socket need not keep them (~1 KB)
    session = Session(
        ws,
        principal,
        new_id(),
        ws.ws_protocol == "hl.msgpack",
        settings.outbound_queue_max,
        request.transport,
        request.app[SESSIONS].writes,
    )
    session.client = Client(
        client_address(request, settings.trusted_proxy_hops),
        device_key(request.headers.get("X-Device-Id")),
    )
    # This coroutine is the socket's for as long as it is open (each level of calls below it
    # would stay alive as long): it reads the frames itself.
    reader = _Reader(request.app, session)
    reader.start()
    try:
        await _follow_inbox(request.app, session)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await reader.serve_frame(msg.data, _utf8_size(msg.data, reader.max_bytes))
            elif msg.type == WSMsgType.BINARY:
                await reader.serve_frame(msg.data, len(msg.data))
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

    async def serve_frame(self, raw: str | bytes, size: int) -> None:
        """``on_frame``, and the session survives whatever it raises: one frame never ends a
        socket (the bug is logged with its session and answered ``unavailable``)."""
        try:
            await self.on_frame(raw, size)
        except Exception:
            log.exception("frame of session %s failed", self.session.id)
            self.reply_error(None, Unavailable("internal error"))

    async def on_frame(self, raw: str | bytes, size: int) -> None:
        """Decode, limit and validate one frame; every refusal is a typed error reply that
        carries the frame's id whenever it can be read."""
        value: dict[str, Any] = {}
        problem: AppError | None
        try:
            value, problem = _decode(raw)
        except AppError as err:
            problem = err
        re = _id_of(value)
        if size > self.max_bytes:
            self.reply_error(re, TooLarge(f"frame is {size} bytes; the limit is {self.max_bytes}"))
            return
        if not self.bucket.allow(time.monotonic()):
            self.reply_error(re, RateLimited("too many requests, slow down"))
            return
        try:
            if problem is not None:
                raise problem
            _check(raw, value)
            env = Envelope.model_validate(value)
        except AppError as err:
            self.reply_error(re, err)
            return
        except ValidationError as exc:
            self.reply_error(re, BadRequest(validation_message(exc)))
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


def _decode(raw: str | bytes) -> tuple[dict[str, Any], AppError | None]:
    """The frame as plain data (``bad_request`` if it is neither JSON nor msgpack of an
    object), and what is wrong with its depth, if anything: the id is read from it first. A
    JSON text nested too deep is parsed with its deepest values cut (the parser's own stack
    is not a limit to meet)."""
    problem: AppError | None = None
    if isinstance(raw, str) and raw.count("{") + raw.count("[") > MAX_DEPTH:
        cut = cut_deep_json(raw)
        if cut is not None:
            raw, problem = cut, BadRequest(f"frame: nested deeper than {MAX_DEPTH} levels")
    try:
        value = loads_json(raw) if isinstance(raw, str) else loads_msgpack(raw)
    except ValueError:
        raise BadRequest("frame is not valid JSON (or msgpack on hl.msgpack)") from None
    if not isinstance(value, dict):
        raise BadRequest("a request must be an object: {id, op, key?, data?}")
    return value, problem


def _check(raw: str | bytes, value: dict[str, Any]) -> None:
    """The frame's content through the input guard (gateway/input_guard.py); a plain JSON text
    (the common case) is proven harmless without a walk."""
    if not (isinstance(raw, str) and json_text_is_plain(raw)):
        check_value(value, "frame")


def _id_of(value: dict[str, Any]) -> Any:
    """The frame's id when it is a valid one (an int64 or a string of at most 64 storable
    characters, never a boolean), else None: every error reply to the frame carries it."""
    ident = value.get("id")
    if type(ident) is int:
        return ident if INT64_MIN <= ident <= INT64_MAX else None
    if type(ident) is str and len(ident) <= _ID_MAX_CHARS:
        try:
            check_text(ident, "id")
        except AppError:
            return None
        return ident
    return None
