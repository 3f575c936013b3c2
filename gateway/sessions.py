"""One websocket session and the registry of a gateway's sessions.

A ``Session`` owns its socket's outbound side: a bounded queue drained by exactly one writer task
(rule 4), started the first time a frame has to wait. Nothing awaits a slow peer except that
writer; when the queue is full the session is closed with 4100 ("reconnect and recover") and the
client resumes by offset (rule 3).

The fast path skips the queue: when it is empty and the socket's transport holds less than
``DIRECT_WRITE_MAX`` unsent bytes, a frame goes to the transport without a task switch. Frames
pushed to one socket during one turn of the event loop (a burst of events read from Redis
together) are written with one ``write`` at the end of the turn (``WriteBatch``): under load a
socket costs one system call per burst, not one per event, and no frame waits for a later turn.
A pushed event's whole websocket frame is built once per wire format and the same bytes go to
every socket. Order is kept: a frame takes the fast path only when nothing is queued ahead of
it, batched frames are written before any frame is queued or the socket is closed, and the
writer writes each frame whole, synchronously, as aiohttp does.

Per followed stream it keeps where the stream stands here: while a subscribe replays history,
the live events of the stream are buffered (a list), then merged through a cursor (``Cursor``:
delivered only if they are the next offset). Once the session has reached the position the hub
delivers from, what it keeps is only the stream's epoch (a string the hub's position shares):
the hub hands every listener a contiguous run of each stream (gateway/hub.py), so a session in
step with it needs no offset of its own, only to notice that the epoch changed.

Memory per socket is what an idle connection costs (bench/socket_memory.py measures it): the
queue, the writer task and the batch list exist only once needed, attributes are slotted, and
what is the same for every socket of a stream or a cell is shared, never copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgpack
from aiohttp import web

from gateway.hub import Cursor
from models.auth import Principal
from models.streams import Event, compact_json, wire_value
from services.caller import Client, Location

if TYPE_CHECKING:
    from store.users import SignInState

log = logging.getLogger("hyperlocal.session")

# Close codes (docs/protocol.md). 4000-4099: do not reconnect. 4100-4199: reconnect and recover.
CLOSE_PROTOCOL_ERROR = 4002
CLOSE_SUSPENDED = 4003
CLOSE_AUTH_REVOKED = 4004
CLOSE_SLOW_CONSUMER = 4100
CLOSE_SERVER_RESTART = 4101

DIRECT_WRITE_MAX = 16 * 1024
"""Unsent bytes a transport may hold for a frame to still be written without the queue."""


def ws_frame(payload: str | bytes) -> bytes:
    """A whole, final, unmasked, uncompressed websocket frame as a server sends it (RFC 6455
    5.2): text for ``str`` (UTF-8), binary for ``bytes``. Sessions never negotiate compression."""
    if isinstance(payload, str):
        data, first = payload.encode(), 0x81
    else:
        data, first = payload, 0x82
    n = len(data)
    if n < 126:
        return bytes((first, n)) + data
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + data
    return struct.pack("!BBQ", first, 127, n) + data


class OutFrame:
    """A pushed frame encoded, and framed, at most once per format, shared by every socket."""

    __slots__ = ("_json_frame", "_msgpack", "_msgpack_frame", "json")

    def __init__(self, json_text: str) -> None:
        self.json = json_text
        self._msgpack: bytes | None = None
        self._json_frame: bytes | None = None
        self._msgpack_frame: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def msgpack(self) -> bytes:
        if self._msgpack is None:
            self._msgpack = msgpack.packb(self.as_dict(), use_bin_type=True, default=wire_value)
        return self._msgpack

    def payload(self, binary: bool) -> str | bytes:
        return self.msgpack if binary else self.json

    def wire(self, binary: bool) -> bytes:
        """The whole websocket frame in one format."""
        if binary:
            if self._msgpack_frame is None:
                self._msgpack_frame = ws_frame(self.msgpack)
            return self._msgpack_frame
        if self._json_frame is None:
            self._json_frame = ws_frame(self.json)
        return self._json_frame


class OutEvent(OutFrame):
    """A stream event (it has an offset: ordered, recoverable)."""

    __slots__ = ("event",)

    def __init__(self, event: Event, json_text: str) -> None:
        super().__init__(json_text)
        self.event = event

    def as_dict(self) -> dict[str, Any]:
        return self.event.frame()


class OutEphemeral(OutFrame):
    """A typing or presence event: no offset, no order, no recovery."""

    __slots__ = ("frame",)

    def __init__(self, frame: dict[str, Any], json_text: str) -> None:
        super().__init__(json_text)
        self.frame = frame

    def as_dict(self) -> dict[str, Any]:
        return self.frame


class WriteBatch:
    """Sockets with frames pushed during this turn of the event loop; written at its end.

    The first push of a turn schedules one ``flush`` (``call_soon``): it runs once the loop has
    done what is ready now (the rest of a burst of events), before it waits for I/O again.
    """

    def __init__(self) -> None:
        self._sessions: list[Session] = []
        self.writes = 0  # transport writes made (sockets flushed)
        self.frames = 0  # frames they carried

    def add(self, session: Session) -> None:
        if not self._sessions:
            asyncio.get_running_loop().call_soon(self.flush)
        self._sessions.append(session)

    def flush(self) -> None:
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            try:
                written = session.write_batched()
            except Exception:  # one broken transport must not keep the others' frames
                log.exception("writing the batched frames of session %s failed", session.id)
                continue
            if written:
                self.frames += written
                self.writes += 1


_Following = list[OutEvent] | Cursor | str
"""Where a followed stream stands in a session: its live events buffered while a subscribe
replays (a list); a cursor of its own, when it replied from a position ahead of what the hub
had delivered (``Cursor``); in step with the hub (its epoch, a str)."""


class Session:
    """A connected client: identity, location, followed streams and its outbound queue."""

    __slots__ = (
        "_backlog",
        "_batch",
        "_batched",
        "_batched_size",
        "_queue",
        "_queue_max",
        "_writer",
        "binary",
        "client",
        "closed_with",
        "closing",
        "followed",
        "id",
        "location",
        "location_streams",
        "principal",
        "transport",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        principal: Principal,
        session_id: str,
        binary: bool,
        queue_max: int,
        transport: asyncio.Transport | None = None,
        batch: WriteBatch | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self._batch = batch
        self._batched: list[bytes] | None = None  # fast-path frames of this turn, not written yet
        self._batched_size = 0
        self.principal = principal
        self.id = session_id
        self.binary = binary
        self._queue_max = queue_max
        self._queue: asyncio.Queue[str | bytes] | None = None  # made with the writer
        self.followed: dict[str, _Following] = {}
        self.location: Location | None = None
        self.client: Client | None = None  # address and device (the fraud rules)
        self.location_streams: Sequence[str] = ()  # shared by the sockets of a cell (ops.py)
        self.closing = False
        self.closed_with: int | None = None  # the code we closed with (the peer may not answer)
        self._backlog = False  # frames wait in the queue, or the writer is writing its last one
        self._writer: asyncio.Task[None] | None = None

    # -- outbound -----------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Frames waiting for the writer."""
        return 0 if self._queue is None else self._queue.qsize()

    def _start_writer(self, queue: asyncio.Queue[str | bytes]) -> None:
        """The writer (and its queue) exist only once a frame had to wait: an idle or
        keeping-up socket, served by direct writes alone, costs neither."""
        self._writer = asyncio.create_task(self._write_loop(queue), name=f"writer-{self.id}")

    async def _write_loop(self, queue: asyncio.Queue[str | bytes]) -> None:
        try:
            while True:
                frame = await queue.get()
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
                if queue.empty():
                    self._backlog = False  # written: later frames may go straight out again
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass  # the socket is gone; the read loop notices and cleans up

    def encode(self, frame: dict[str, Any]) -> str | bytes:
        if self.binary:
            return msgpack.packb(frame, use_bin_type=True, default=wire_value)
        return compact_json(frame)

    def send(self, frame: dict[str, Any]) -> None:
        self.push(self.encode(frame))

    def push(self, data: str | bytes, wire: bytes | None = None) -> None:
        """Send an encoded frame: written at once when nothing waits ahead of it and the socket
        keeps up (``wire``: its prebuilt websocket frame), else queued for the writer. A full
        queue closes the session (slow consumer)."""
        if self.closing:
            return
        transport = self.transport
        if (
            not self._backlog
            and transport is not None
            and transport.get_write_buffer_size() + self._batched_size <= DIRECT_WRITE_MAX
            and not transport.is_closing()
            and not self.ws.closed
        ):
            frame = wire if wire is not None else ws_frame(data)
            if self._batch is None:
                transport.write(frame)
                return
            if self._batched is None:
                self._batch.add(self)
                self._batched = [frame]
            else:
                self._batched.append(frame)
            self._batched_size += len(frame)
            return
        self.write_batched()  # what this turn batched goes ahead of the queued frame
        queue = self._queue
        if queue is None:
            queue = self._queue = asyncio.Queue(maxsize=self._queue_max)
        try:
            queue.put_nowait(data)
            self._backlog = True
            if self._writer is None:
                self._start_writer(queue)
        except asyncio.QueueFull:
            log.info("session %s is a slow consumer, closing", self.id)
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect and recover")

    def write_batched(self) -> int:
        """Write the frames batched this turn (one transport write); how many there were."""
        frames = self._batched
        if frames is None:
            return 0
        self._batched, self._batched_size = None, 0
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        return len(frames)

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.write_batched()  # frames pushed before the close go before the close frame
        self.closing = True
        self.closed_with = code
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        if self._writer:
            self._writer.cancel()
        try:
            with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 5)
        finally:  # also when aiohttp cancels the close of a stuck socket
            transport = self.transport
            if transport is not None and (
                transport.get_write_buffer_size() > 0 or not transport.is_closing()
            ):
                # A peer that does not read cannot take a close frame either, and a transport
                # with unsent data never finishes closing: cut it, so the read loop ends and
                # the socket's resources go now rather than never.
                transport.abort()

    async def stop_writer(self) -> None:
        if self._writer:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    # -- streams ------------------------------------------------------------------------------
    def begin_follow(self, stream: str) -> None:
        """Start buffering live events of ``stream`` until ``finish_follow``."""
        self.followed[stream] = []

    def finish_follow(self, stream: str, epoch: str, offset: int, hub_offset: int) -> None:
        """Replay done at ``(epoch, offset)``: deliver the buffered live events after it, then
        go live. ``hub_offset`` is the position the hub returned when the session joined: the
        buffer holds, in order, every event the hub has delivered since, so the session is in
        step with the hub once its own position is the hub's (the usual case: a subscribe
        without ``since`` answers from the hub's position)."""
        buffered = self.followed.get(stream)
        if not isinstance(buffered, list):
            return
        cursor = Cursor(epoch, offset)
        self.followed[stream] = cursor
        for out in buffered:
            self._take(stream, cursor, out)
        if buffered:
            hub_offset = buffered[-1].event.offset
        if cursor.offset == hub_offset and self.followed.get(stream) is cursor:
            self.followed[stream] = cursor.epoch

    def unfollow(self, stream: str) -> None:
        self.followed.pop(stream, None)

    def on_ephemeral(self, stream: str, out: OutEphemeral) -> None:
        """A typing or presence event: delivered if the stream is live here, else dropped."""
        state = self.followed.get(stream)
        if state is None or isinstance(state, list):
            return
        if self._queue is not None and self._queue.full():
            return  # ephemeral: never worth closing a slow socket for
        self.push(out.payload(self.binary), out.wire(self.binary))

    def on_event(self, stream: str, out: OutEvent) -> None:
        """A live event from the hub: the next of its stream for the hub (gateway/hub.py), so
        the next here too once in step; a session with a cursor of its own may have seen it."""
        state = self.followed.get(stream)
        if state is None:
            return
        if isinstance(state, str):  # in step with the hub: the next event, unless the epoch moved
            if out.event.epoch == state:
                self.push(out.payload(self.binary), out.wire(self.binary))
            else:
                self._lost(stream, "epoch")
        elif isinstance(state, list):
            state.append(out)
        elif self._take(stream, state, out) == "deliver":
            self.followed[stream] = state.epoch  # delivered what the hub did: in step now

    def _take(self, stream: str, cursor: Cursor, out: OutEvent) -> str:
        verdict = cursor.take(out.event)
        if verdict == "deliver":
            self.push(out.payload(self.binary), out.wire(self.binary))
        elif verdict in ("gap", "epoch"):
            self._lost(stream, verdict)
        return verdict

    def _lost(self, stream: str, verdict: str) -> None:
        # The hub fills gaps before delivering, so this means our position is unusable.
        log.warning(
            "session %s lost position on %s (%s), asking it to recover", self.id, stream, verdict
        )
        self.close(CLOSE_SERVER_RESTART, "stream position lost: reconnect and recover")


def _new_roles(session: Session, roles: frozenset[str]) -> None:
    """The session's roles are ``roles`` now; if they changed, the client hears it at once
    (``session.roles {roles}``, ephemeral: a reconnecting client reads them with its sign-in)."""
    old = session.principal
    if old.roles == roles:
        return
    session.principal = Principal(old.user_id, roles, old.session_id)
    session.send({"ev": "session.roles", "data": {"roles": sorted(roles)}})


class SessionRegistry:
    """The sessions connected to this gateway, by id, user and token family."""

    def __init__(self) -> None:
        self.by_id: dict[str, Session] = {}
        self.writes = WriteBatch()
        """Batches the fast-path frames of every session of this gateway per loop turn."""

    def add(self, session: Session) -> None:
        self.by_id[session.id] = session

    def remove(self, session: Session) -> None:
        self.by_id.pop(session.id, None)

    def of_user(self, user_id: str) -> list[Session]:
        return [s for s in self.by_id.values() if s.principal.user_id == user_id]

    def revoke(self, user_id: str, token_family: str | None) -> int:
        """Close the user's sessions of ``token_family`` (all of them if None)."""
        closed = 0
        for session in self.of_user(user_id):
            if token_family is None or session.principal.session_id == token_family:
                session.close(CLOSE_AUTH_REVOKED, "signed out")
                closed += 1
        return closed

    def suspend(self, user_id: str) -> int:
        """Close every socket of a suspended user (4003: do not reconnect)."""
        sessions = self.of_user(user_id)
        for session in sessions:
            session.close(CLOSE_SUSPENDED, "account suspended")
        return len(sessions)

    def set_roles(self, user_id: str, roles: frozenset[str]) -> None:
        """A role change, at once, for the user's open sockets: each one's ops are checked
        against the new roles from now on, and it is told (``session.roles``)."""
        for session in self.of_user(user_id):
            _new_roles(session, roles)

    def reconcile(self, checked: Collection[str], states: Mapping[str, SignInState]) -> int:
        """Apply what Postgres says of the sign-ins ``checked`` (``states`` by token family;
        a checked family missing from it is gone), to the sessions of those sign-ins:
        an ended sign-in closes with 4004, a suspended user's with 4003, roles are brought up
        to date. Redis carries these changes live; this repairs what a lost message missed."""
        closed = 0
        for session in list(self.by_id.values()):
            family = session.principal.session_id
            if family not in checked:  # connected since the check: checked at its upgrade
                continue
            state = states.get(family)
            if state is None or not state.live:
                session.close(CLOSE_AUTH_REVOKED, "signed out")
            elif state.suspended:
                session.close(CLOSE_SUSPENDED, "account suspended")
            else:
                _new_roles(session, frozenset(state.roles))
                continue
            closed += 1
        return closed

    def close_all(self, code: int, reason: str) -> None:
        for session in list(self.by_id.values()):
            session.close(code, reason)

    def __len__(self) -> int:
        return len(self.by_id)
