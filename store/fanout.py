"""Redis pub/sub naming and publishing of committed events.

Every stream has one channel, ``hl:s:<stream>``; a message is the JSON wire frames of one or
more consecutive events of that stream, one per line, in offset order (compact JSON never holds
a raw newline), encoded once by the publisher and forwarded as-is by gateways: a committed batch
publishes one message per stream it touched, however many events it appended there. Publishing
happens after commit and may fail (Redis down): the event is already durable and subscribers
fill the gap from the log, so a publish failure is logged, never raised to the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from models.streams import Event

log = logging.getLogger("hyperlocal.fanout")

CONTROL_CHANNEL = "hl:control"
"""Cluster-wide control messages for gateways (e.g. session.revoked)."""


def channel(stream: str) -> str:
    return f"hl:s:{stream}"


def stream_of(channel_name: str) -> str | None:
    return channel_name[5:] if channel_name.startswith("hl:s:") else None


def by_stream(events: list[Event]) -> dict[str, str]:
    """Each stream's frames of ``events`` as one message: one frame per line, in order."""
    frames: dict[str, list[str]] = {}
    for event in events:
        frames.setdefault(event.stream, []).append(event.frame_json)
    return {stream: "\n".join(lines) for stream, lines in frames.items()}


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def resp_command(*parts: bytes) -> bytes:
    """One Redis command in RESP, the protocol's array of bulk strings."""
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One simple reply line (``+OK``, ``:n``); a Redis error reply raises ``RedisError``."""
    line = await reader.readuntil(b"\r\n")
    if line[:1] == b"-":
        raise RedisError(line[1:-2].decode(errors="replace"))
    return line


async def open_resp(url: str, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain connection to the Redis at ``url`` (``redis://``, TLS for ``rediss://``, a Unix
    socket for ``unix://``), authenticated, on its database, named ``name`` in CLIENT LIST."""
    opts: dict[str, Any] = dict(parse_url(url))
    if "path" in opts:
        reader, writer = await asyncio.open_unix_connection(opts["path"])
    else:
        tls = ssl.create_default_context() if url.startswith("rediss://") else None
        reader, writer = await asyncio.open_connection(
            opts.get("host", "localhost"), opts.get("port", 6379), ssl=tls
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a peer gone without a word is noticed by the kernel
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    hello = []
    if opts.get("password"):
        user = [opts["username"].encode()] if opts.get("username") else []
        hello.append(resp_command(b"AUTH", *user, opts["password"].encode()))
    if opts.get("db"):
        hello.append(resp_command(b"SELECT", str(opts["db"]).encode()))
    hello.append(resp_command(b"CLIENT", b"SETNAME", name.encode()))
    writer.write(b"".join(hello))
    try:
        for _ in hello:
            await read_reply(reader)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _close(writer: asyncio.StreamWriter | None) -> None:
    """Close a lean connection, whatever state it is in (it is being dropped)."""
    if writer is not None:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class RespPublisher:
    """A connection to Redis that only publishes, for the shards' hot path: a batch's PUBLISH
    commands packed by hand, written at once, their replies read back in order (redis-py's
    pipeline: 130 µs of client CPU a flush of two events, this: 71; ``python -m
    bench.redis_fanout``, docs/benchmarks.md, sixth session). Owns its one connection, opened
    on first use (``open_resp``), dropped on any error or after ``timeout_s``: the next publish
    opens a new one. Like ``publish``, it logs and never raises: the events are durable
    already and subscribers fill gaps from the log. Publishes are serialised, so a stream's
    messages reach Redis in the order given."""

    def __init__(self, url: str, name: str = "hl-fanout", timeout_s: float = 2.0) -> None:
        self.url = url
        self.name = name
        """The connection's name in Redis (``CLIENT LIST``)."""
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.failures = 0

    async def publish(self, events: list[Event]) -> None:
        if not events:
            return
        frames = by_stream(events)
        commands = b"".join(
            resp_command(b"PUBLISH", channel(stream).encode(), text.encode())
            for stream, text in frames.items()
        )
        count = len(frames)
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._send(commands, count)
            except (OSError, TimeoutError, RedisError, EOFError) as exc:
                self.failures += 1
                await self._drop()
                log.warning(
                    "publish of %d events failed (subscribers will recover): %r", len(events), exc
                )

    async def _send(self, commands: bytes, count: int) -> None:
        if self._writer is None:
            await self._open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(commands)
        for _ in range(count):
            await read_reply(self._reader)

    async def _open(self) -> None:
        self._reader, self._writer = await open_resp(self.url, self.name)

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        await _close(writer)

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()


class RespSubscriber:
    """A gateway's pub/sub connection, read without redis-py: SUBSCRIBE and UNSUBSCRIBE written
    as they come, and every message a socket read brought parsed at once by hiredis (``read``)
    instead of one ``get_message`` call per message (98 against 44 µs of client CPU for a
    message that arrives alone; ``python -m bench.redis_fanout``). Owns its connection;
    ``read`` raises ``ConnectionError`` once it is gone (the owner reconnects, subscribes
    again and fills its streams from the log)."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self, channels: Sequence[str] = (), timeout_s: float = 5.0) -> None:
        """A new connection subscribed to ``channels`` (the old one, if any, closed)."""
        await self.aclose()
        async with asyncio.timeout(timeout_s):
            self._reader, self._writer = await open_resp(self.url, self.name)
        self._parser = hiredis.Reader()
        if channels:
            self._send(b"SUBSCRIBE", channels)

    def subscribe(self, *channels: str) -> None:
        """Subscribe (written now; Redis confirms with a message ``read`` skips). Not connected:
        nothing, the next ``connect`` subscribes to what its caller follows."""
        self._send(b"SUBSCRIBE", channels)

    def unsubscribe(self, *channels: str) -> None:
        self._send(b"UNSUBSCRIBE", channels)

    def _send(self, command: bytes, channels: Sequence[str]) -> None:
        if channels and self.connected:
            assert self._writer is not None
            self._writer.write(resp_command(command, *(c.encode() for c in channels)))

    async def read(self) -> list[tuple[str, bytes]]:
        """The next messages, as (channel, data): every one the next socket read completes (at
        least one; subscription confirmations are skipped)."""
        if self._reader is None:
            raise ConnectionError("not connected")
        out: list[tuple[str, bytes]] = []
        while not out:
            data = await self._reader.read(1 << 16)
            if not data:
                raise ConnectionError("redis closed the pub/sub connection")
            self._parser.feed(data)
            while (reply := self._parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise RedisError(str(reply))
                if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                    out.append((reply[1].decode(), reply[2]))
        return out

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        await _close(writer)


async def publish(redis: aioredis.Redis, events: list[Event]) -> None:
    """Publish committed events in one round trip, one message per stream (its events in the
    order given); log (not raise) if Redis is unavailable."""
    if not events:
        return
    frames = by_stream(events)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for stream, text in frames.items():
                pipe.publish(channel(stream), text)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("publish of %d events failed (subscribers will recover): %r", len(events), exc)
