"""The gateway's fanout hub: one Redis pub/sub connection, refcounted per stream.

The hub owns, per stream that at least one local session follows, the Redis subscription and the
last offset it delivered. It guarantees each listener sees a contiguous, ordered run of events:
an event beyond the next offset means messages were lost (Redis restarted, a publish failed), so
the hub reads the missing ones from the Postgres log first. After a Redis reconnect it
resubscribes and catches every stream up from the log the same way. Each event is decoded once
and encoded at most once per wire format, whatever the number of sockets.

A fill runs in its own task per stream, never in the reader loop: while one stream waits for
Postgres, its live events are held (at most ``HELD_MAX``; past that the fill reads the log again)
and every other stream keeps flowing. A fill that cannot read retries with backoff until it
can or nobody follows the stream any more.

The reader loop must not die: it logs, backs off and reconnects.

With ``shard_push`` the events shards commit do not come through Redis but on the gateway's
channels to the shards (services/channel.py ``PushFeeds``): ``pushed`` takes them, the same
way, and ``resync`` catches every stream up from the log after a shard's channel was down.
Redis still brings what gateways and services publish, and the control channel.

Most streams have one follower here (a user's inbox), so what the hub keeps per stream is what
each socket costs: a slotted record, the one listener without a set, no buffer until held.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from redis.exceptions import RedisError

from models.streams import Event, Position, StreamCursor, parse_json
from store import events as event_log
from store.fanout import CONTROL_CHANNEL, RespSubscriber, channel, stream_of

log = logging.getLogger("hyperlocal.hub")


class Listener(Protocol):
    def on_event(self, stream: str, out: Any) -> None: ...

    def on_ephemeral(self, stream: str, out: Any) -> None: ...


OutFactory = Callable[[Event, str], Any]
EphemeralFactory = Callable[[dict[str, Any], str], Any]
ControlHandler = Callable[[dict[str, Any]], Awaitable[None] | None]

_READ_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

HELD_MAX = 10_000
"""Live events one stream may hold while its fill reads Postgres; beyond, they are dropped and
the fill reads the log once more (everything published is in the log)."""


class Cursor:
    """``StreamCursor``'s rule (models/streams.py) in a slotted object: the hub keeps one per
    stream, and a session one per stream it follows ahead of the hub (gateway/sessions.py)."""

    __slots__ = ("epoch", "offset")

    def __init__(self, epoch: str, offset: int) -> None:
        self.epoch = epoch
        self.offset = offset

    def classify(self, event: Event) -> str:
        """'deliver', 'duplicate', 'gap' or 'epoch' (``StreamCursor.classify``)."""
        if event.epoch == self.epoch and event.offset == self.offset + 1:
            return "deliver"
        return StreamCursor(self.epoch, self.offset).classify(event)

    def advance(self, event: Event) -> None:
        self.offset = event.offset

    def take(self, event: Event) -> str:
        """``classify``, and advance past the event when it is the one to deliver."""
        verdict = self.classify(event)
        if verdict == "deliver":
            self.offset = event.offset
        return verdict


class _Stream:
    """One followed stream: its listeners, position, and the fill in progress (if any)."""

    __slots__ = ("_many", "_one", "cursor", "filling", "held", "overflowed", "ready")

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.ready: asyncio.Future[None] | None = ready  # None once the first join has read
        self._one: Listener | None = None  # the listener while there is only one...
        self._many: set[Listener] | None = None  # ...and all of them once there are more
        self.cursor: Cursor | None = None
        self.filling: asyncio.Task[None] | None = None
        self.held: list[tuple[Event, str | None]] | None = None  # while filling
        self.overflowed = False

    def add(self, listener: Listener) -> None:
        if self._many is not None:
            self._many.add(listener)
        elif self._one is None or self._one is listener:
            self._one = listener
        else:
            self._many = {self._one, listener}
            self._one = None

    def discard(self, listener: Listener) -> None:
        if self._many is not None:
            self._many.discard(listener)
        elif self._one is listener:
            self._one = None

    def listeners(self) -> list[Listener]:
        """A copy: a listener may leave while the others are called."""
        if self._many is not None:
            return list(self._many)
        return [] if self._one is None else [self._one]

    def followed(self) -> bool:
        return bool(self._many) if self._many is not None else self._one is not None


class Hub:
    """See the module docstring."""

    def __init__(
        self,
        redis_url: str,
        db: asyncpg.Pool,
        make_out: OutFactory,
        make_ephemeral: EphemeralFactory,
        on_control: ControlHandler,
    ) -> None:
        self._redis_url = redis_url
        self._db = db
        self._make_out = make_out
        self._make_ephemeral = make_ephemeral
        self._on_control = on_control
        self._streams: dict[str, _Stream] = {}
        self._sub: RespSubscriber | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.delivered = 0
        self.gap_fills = 0
        self.reconnects = 0
        self.pushed_events = 0
        self.resyncs = 0

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="hub-reader")
        await asyncio.wait_for(self._connected.wait(), 10)

    async def stop(self) -> None:
        tasks = [s.filling for s in self._streams.values() if s.filling is not None]
        if self._reader:
            tasks.append(self._reader)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sub is not None:
            await self._sub.aclose()

    @property
    def streams(self) -> int:
        return len(self._streams)

    # -- membership ----------------------------------------------------------------------------
    async def join(self, stream: str, listener: Listener) -> Position:
        """Follow ``stream``; every event after the returned position reaches ``listener``.

        The first local follower subscribes and reads the stream's position (once, even if
        many join at the same time); later ones join without any I/O.
        """
        state = self._streams.get(stream)
        if state is None:
            ready = asyncio.get_running_loop().create_future()
            state = self._streams[stream] = _Stream(ready)
            try:
                self._subscribe(stream)
                # Read after subscribing: anything published before is already in the log.
                pos = await event_log.position(self._db, stream)
            except BaseException as exc:
                if self._streams.get(stream) is state:
                    del self._streams[stream]
                ready.set_exception(exc)
                ready.exception()  # retrieved: the joiners that wait re-raise it
                raise
            state.cursor = Cursor(pos.epoch, pos.offset)
            state.ready = None
            ready.set_result(None)
        elif state.ready is not None:
            await asyncio.shield(state.ready)
        assert state.cursor is not None
        state.add(listener)
        position = Position(state.cursor.epoch, state.cursor.offset)
        if state.held is not None and state.filling is None:
            # live events that came while the position was read: those after it are the
            # listener's first (it buffers them until its replay is done)
            held, state.held = state.held, None
            for event, text in held:
                self._accept(stream, event, text)
        if state.overflowed and state.filling is None:  # too many to hold: read the log
            state.overflowed = False
            self._fill(stream, state)
        return position

    async def leave(self, stream: str, listener: Listener) -> None:
        state = self._streams.get(stream)
        if state is None:
            return
        state.discard(listener)
        if not state.followed() and state.ready is None:
            del self._streams[stream]
            if state.filling is not None:
                state.filling.cancel()
            self._unsubscribe(stream)

    def _subscribe(self, stream: str) -> None:
        # written at once; a lost connection resubscribes everything followed on reconnect
        if self._sub is not None:
            self._sub.subscribe(channel(stream))

    def _unsubscribe(self, stream: str) -> None:
        if self._sub is not None:
            self._sub.unsubscribe(channel(stream))

    # -- reading -------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                sub = await self._connect()
                backoff = 0.1
                while True:
                    for name, data in await sub.read():  # all a socket read brought
                        await self._dispatch(name, data)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                self._connected.clear()
                log.warning("redis fanout connection lost (%r); retrying in %.1fs", exc, backoff)
            except Exception:
                self._connected.clear()
                log.exception("hub reader failed; retrying in %.1fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> RespSubscriber:
        if self._sub is None:
            self._sub = RespSubscriber(self._redis_url, "hl-hub")
        else:
            self.reconnects += 1
        await self._sub.connect()
        # the list is taken after the connection is open, and written at once: a stream joined
        # while it opened is in it (a join's own subscribe found no connection to write to)
        self._sub.subscribe(CONTROL_CHANNEL, *(channel(s) for s in self._streams))
        self._connected.set()
        # Messages may have been lost while disconnected: catch every stream up from the log.
        for stream, state in self._streams.items():
            self._fill(stream, state)
        return self._sub

    async def _dispatch(self, name: str, data: bytes) -> None:
        text = data.decode()
        if name == CONTROL_CHANNEL:
            await self._control(text)
            return
        stream = stream_of(name)
        if stream is not None:
            self._message(stream, text)

    def _message(self, stream: str, text: str) -> int:
        """One message of ``stream`` (Redis's or a shard's push): consecutive frames, one per
        line (store/fanout.py ``by_stream``); how many it held, 0 if nobody here follows it."""
        state = self._streams.get(stream)
        if state is None:
            return 0
        lines = text.split("\n")
        for line in lines:
            frame = parse_json(line)
            if "offset" not in frame:  # ephemeral (typing, presence): no order, no recovery
                out = self._make_ephemeral(frame, line)
                for listener in state.listeners():
                    listener.on_ephemeral(stream, out)
                continue
            self._accept(stream, Event.from_frame(frame), line)
        return len(lines)

    def pushed(self, shard: str, items: list[Any]) -> None:
        """Committed events a shard pushed: ``[[stream, lines], ...]``, each stream's frames in
        offset order, one per line (actors/channel.py)."""
        try:
            for stream, text in items:
                self.pushed_events += self._message(stream, text)
        except (ValueError, KeyError, TypeError) as exc:  # the rest is read from the log
            log.warning("ignored a malformed push of shard %s: %r", shard, exc)

    def resync(self, shard: str) -> None:
        """``shard``'s pushes flow again after its channel was down: anything it committed
        meanwhile is only in the log, so every followed stream reads what it missed."""
        self.resyncs += 1
        for stream, state in self._streams.items():
            self._fill(stream, state)

    async def _control(self, text: str) -> None:
        try:
            outcome = self._on_control(json.loads(text))
            if outcome is not None:
                await outcome
        except (ValueError, KeyError, TypeError):
            log.warning("ignored malformed control message")

    def _accept(self, stream: str, event: Event, text: str | None) -> None:
        state = self._streams.get(stream)
        if state is None:
            return
        if state.cursor is None or state.filling is not None:  # joining, or filling
            self._hold(state, event, text)
            return
        verdict = state.cursor.classify(event)
        if verdict == "duplicate":
            return
        if verdict == "gap":
            self._hold(state, event, text)
            self._fill(stream, state)
            return
        if verdict == "epoch":
            log.warning("stream %s changed epoch %s -> %s", stream, state.cursor.epoch, event.epoch)
            state.cursor = Cursor(event.epoch, event.offset - 1)
        self._deliver(stream, state, event, text)

    @staticmethod
    def _hold(state: _Stream, event: Event, text: str | None) -> None:
        if state.held is None:
            state.held = [(event, text)]
        elif len(state.held) < HELD_MAX:
            state.held.append((event, text))
        else:
            state.held = None
            state.overflowed = True

    def _fill(self, stream: str, state: _Stream) -> None:
        """Start reading ``stream``'s missed events from the log, unless already reading."""
        if state.filling is None and state.cursor is not None:
            state.filling = asyncio.create_task(self._filler(stream, state), name="hub-fill")

    async def _filler(self, stream: str, state: _Stream) -> None:
        """Deliver what the log holds after the stream's cursor, then what was held meanwhile."""
        backoff = 0.1
        try:
            while True:
                assert state.cursor is not None
                try:
                    missed = await event_log.read_range(
                        self._db, stream, state.cursor.epoch, state.cursor.offset, None
                    )
                except _READ_FAILURES as exc:
                    log.warning(
                        "gap fill of %s failed (%r); retrying in %.1fs", stream, exc, backoff
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if missed:
                    self.gap_fills += 1
                for event in missed:
                    self._deliver(stream, state, event, None)
                if not state.overflowed:
                    break
                state.overflowed = False  # live events were dropped while reading: read again
        finally:
            state.filling = None
        held, state.held = state.held or [], None
        for event, text in held:
            self._accept(stream, event, text)  # the ones already read are duplicates now

    def _deliver(self, stream: str, state: _Stream, event: Event, text: str | None) -> None:
        assert state.cursor is not None
        if state.cursor.classify(event) != "deliver":
            return
        state.cursor.advance(event)
        if text is None:
            text = event.frame_json
        out = self._make_out(event, text)
        for listener in state.listeners():
            listener.on_event(stream, out)
        self.delivered += 1
