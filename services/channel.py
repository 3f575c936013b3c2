"""``DirectTransport``: command batches over each shard's own TCP channel, not a Ray call each.

A Ray actor call costs both processes a fixed amount of CPU (the task's submission, Ray's
scheduling into the actor's loop, its reply): at chat rates that was most of the shards' time
per batch. The shard keeps a plain channel (actors/channel.py) whose address and secret this
transport asks Ray for once per shard incarnation; Ray still owns placement, lifecycle and
restarts. One connection per shard, many requests in flight on it, answers matched by id.

Failure behaves as over Ray: a connection that breaks, a shard that does not answer within
``shard_call_timeout_s``, or one that cannot be reached fails the requests in flight as
``unavailable`` (the client retries with the same idempotency key); the next request asks Ray
for the endpoint again (a restarted shard listens elsewhere, with a new secret).

**Pushed events** (``shard_push``, ``PushFeeds``): the same connection also brings the events
the shard commits (actors/channel.py). ``PushFeeds`` keeps a connection open to every shard of
the placement, and after each (re)connection tells its owner (the hub), which reads from the
log whatever it may have missed while the connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from models import shard_wire as wire
from models.commands import ShardCommand, ShardRead
from models.errors import BadRequest, Unavailable, error_from_dict
from services.transport import RayTransport, ShardGone

log = logging.getLogger("hyperlocal.router")

Answer = tuple[bool, Any]

PUSH = -1
"""The id of a frame the shard pushes (actors/channel.py ``PUSH``)."""

OnEvents = Callable[[str, list[Any]], None]
"""Called with a shard's name and its pushed ``[[stream, lines], ...]``."""
OnConnected = Callable[[str], None]
"""Called once a shard's pushes are flowing (after every reconnection)."""

ATTEMPTS = 3
"""A request whose connection broke is sent again on a new one, this many times in all (as Ray
retries an actor task once its actor is back: ``max_task_retries``). Safe: reads are reads, and
every command is idempotent by its key."""


class ChannelLost(ShardGone):
    """The connection broke (or could not be made) before the answer came: send again."""


class _Channel:
    """One connection to one shard's channel; reconnects on the next request after a break."""

    def __init__(
        self, shard: str, ray: RayTransport, timeout_s: float, attempts: int = ATTEMPTS
    ) -> None:
        self.shard = shard
        self._attempts = attempts
        self._ray = ray
        self._timeout_s = timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Answer]] = {}
        self._ids = itertools.count(1)
        self._connecting = asyncio.Lock()
        self._reading: asyncio.Task[None] | None = None
        self.on_events: OnEvents | None = None
        """Pushed events go here; None: this connection does not ask for them."""
        self.on_connected: OnConnected | None = None
        self.features: frozenset[str] = frozenset()
        """What the shard at the other end said it understands in its hello (actors/channel.py
        ``FEATURES``); an older shard says nothing and gets nothing newer."""

    async def call(self, method: str, *args: Any, waited_s: float | None = None) -> Any:
        """The shard's answer; a connection that breaks first is replaced and the request sent
        again (``ATTEMPTS`` in all), so a shard restart looks to the caller as it does over Ray:
        a slower answer, not an error. ``waited_s`` goes last, to a shard that understands it."""
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._call_once(method, args, waited_s)
            except ChannelLost:
                if attempt == self._attempts:
                    raise
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def _call_once(self, method: str, args: tuple[Any, ...], waited_s: float | None) -> Any:
        writer = self._writer
        if writer is None or writer.is_closing():
            writer = await self._connect()
        if waited_s is not None and "waited" in self.features:
            args = (*args, waited_s)
        ident = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending[ident] = future
        timer = loop.call_later(self._timeout_s, _expire, future)
        try:
            writer.write(wire.frame([ident, method, *args]))
            ok, payload = await future
        finally:
            timer.cancel()
            self._pending.pop(ident, None)
        if ok:
            return payload
        raise error_from_dict(payload)

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            endpoint = await self._ray.endpoint(self.shard)
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(endpoint["host"], endpoint["port"]), self._timeout_s
                )
                writer.write(wire.frame([0, "hello", endpoint["token"]]))
                hello = await asyncio.wait_for(wire.read_frame(reader), self._timeout_s)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, BadRequest) as exc:
                log.warning("shard %s channel: cannot connect: %r", self.shard, exc)
                raise ChannelLost("a shard is restarting, retry with the same key") from None
            if not (isinstance(hello, list) and hello[1:2] == [True]):
                writer.close()
                raise ChannelLost("a shard refused this gateway's channel, retry")
            self.features = frozenset(hello[3]) if len(hello) > 3 else frozenset()
            pushed = self.on_events is not None and "push" in self.features
            if pushed:  # answered before any push: read it here, before the reader starts
                writer.write(wire.frame([0, "push"]))
                try:
                    answer = await asyncio.wait_for(wire.read_frame(reader), self._timeout_s)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, BadRequest):
                    writer.close()
                    raise ChannelLost("a shard is restarting, retry with the same key") from None
                if not (isinstance(answer, list) and answer[1:2] == [True]):
                    writer.close()
                    raise ChannelLost("a shard refused this gateway's pushes, retry")
            self._writer = writer
            self._reading = asyncio.create_task(self._read(reader, writer), name="shard-channel")
            if pushed and self.on_connected is not None:
                self.on_connected(self.shard)
            return writer

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def drop(self) -> None:
        """Close the connection (requests in flight fail as lost and are sent again)."""
        if self._writer is not None:
            self._writer.close()

    async def ensure(self) -> None:
        """Connected (a no-op when it is); ``ChannelLost`` if the shard cannot be reached."""
        if not self.connected:
            await self._connect()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                ident, ok, payload = await wire.read_frame(reader)
                if ident == PUSH:
                    if self.on_events is not None:  # after the answers read with it have
                        # woken their callers (the router's next call leaves first)
                        loop.call_soon(self.on_events, self.shard, payload)
                    continue
                future = self._pending.get(ident)
                if future is not None and not future.done():
                    future.set_result((ok, payload))
        except (asyncio.IncompleteReadError, ConnectionError, BadRequest, ValueError) as exc:
            log.warning("shard %s channel closed: %r", self.shard, exc)
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ChannelLost("a shard connection closed, retry"))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading


def _expire(future: asyncio.Future[Answer]) -> None:
    if not future.done():
        future.set_exception(Unavailable("a shard did not answer in time, retry with the key"))


class DirectTransport:
    """Shards over their direct channels; endpoints from Ray (``RayTransport.endpoint``).

    ``attempts`` 1 (failover on): a broken connection is ``unavailable`` at once, and the
    router, not the channel, sends again while it watches the table (services/router.py)."""

    def __init__(self, ray: RayTransport, timeout_s: float, attempts: int = ATTEMPTS) -> None:
        self._ray = ray
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._channels: dict[str, _Channel] = {}
        self._on_events: OnEvents | None = None  # set by ``receive_pushes``
        self._on_connected: OnConnected | None = None

    def _channel(self, shard: str) -> _Channel:
        channel = self._channels.get(shard)
        if channel is None:
            channel = self._channels[shard] = _Channel(
                shard, self._ray, self._timeout_s, self._attempts
            )
            channel.on_events, channel.on_connected = self._on_events, self._on_connected
        return channel

    def receive_pushes(self, on_events: OnEvents, on_connected: OnConnected) -> None:
        """Ask every shard connected from now on for its committed events (connections open
        already are closed: their next use reconnects, asking)."""
        self._on_events, self._on_connected = on_events, on_connected
        for channel in self._channels.values():
            channel.on_events, channel.on_connected = on_events, on_connected
            channel.drop()

    async def ensure(self, shard: str) -> None:
        """A live connection to ``shard`` (``ChannelLost`` if it cannot be reached)."""
        await self._channel(shard).ensure()

    def connected(self, shard: str) -> bool:
        channel = self._channels.get(shard)
        return channel is not None and channel.connected

    async def execute(
        self, shard: str, version: int, commands: list[ShardCommand], waited_s: float = 0.0
    ) -> list[dict[str, Any]]:
        encoded = [wire.encode(c) for c in commands]
        channel = self._channel(shard)
        return list(await channel.call("execute", version, encoded, waited_s=waited_s))

    async def feed_page(
        self, shard: str, version: int, cells: list[str], cursor: str | None, limit: int
    ) -> dict[str, Any]:
        return dict(await self._channel(shard).call("feed_page", version, cells, cursor, limit))

    async def read(self, shard: str, version: int, read: ShardRead) -> dict[str, Any]:
        return dict(await self._channel(shard).call("read", version, wire.encode(read)))

    async def ping(self, shard: str) -> str:
        return str(await self._channel(shard).call("ping"))

    async def stats(self, shard: str, cell: str | None = None) -> dict[str, Any]:
        """Over Ray (an ops call, not the hot path)."""
        return await self._ray.stats(shard, cell)

    async def drain(self, shard: str) -> dict[str, Any]:
        return await self._ray.drain(shard)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


class PushFeeds:
    """Owns this gateway's feeds of pushed events: a connection to every shard that
    ``shards()`` names (the placement's), opened at ``start`` and reopened whenever one is
    found closed (checked every ``poll_s``; a command sent there reopens it sooner), each
    time telling ``on_connected`` so its owner reads what it may have missed from the log.
    Guarantees: an event a shard commits reaches ``on_events`` or, if its connection was
    down, is in the log read after that connection is back."""

    def __init__(
        self,
        transport: DirectTransport,
        shards: Callable[[], Sequence[str]],
        on_events: OnEvents,
        on_connected: OnConnected,
        poll_s: float = 1.0,
    ) -> None:
        self._transport = transport
        self._shards = shards
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.failures = 0
        self._connected_once: set[str] = set()

        def connected(shard: str) -> None:
            if shard in self._connected_once:
                self.reconnects += 1
            self._connected_once.add(shard)
            on_connected(shard)

        transport.receive_pushes(on_events, connected)

    async def start(self, timeout_s: float = 10.0) -> None:
        """Connect to every shard (waiting at most ``timeout_s``: one that is down is retried
        by the loop), then keep them connected."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connect_all(), timeout_s)
        self._task = asyncio.create_task(self._keep(), name="push-feeds")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _connect_all(self) -> None:
        await asyncio.gather(*(self._connect(s) for s in self._shards()))

    async def _connect(self, shard: str) -> None:
        if self._transport.connected(shard):
            return
        try:
            await self._transport.ensure(shard)
        except (ChannelLost, Unavailable, OSError) as exc:
            self.failures += 1
            log.warning("push feed of shard %s: cannot connect (%r), will retry", shard, exc)
        except Exception:  # Ray's lookup of a shard not started yet, for one
            self.failures += 1
            log.exception("push feed of shard %s: cannot connect, will retry", shard)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self._connect_all()
