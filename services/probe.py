"""``ShardProbe``: is a shard's process alive? One ping over its direct channel, classified.

The failover watcher's eyes (services/failover.py). Per shard it keeps its own connection to
the shard's channel (actors/channel.py), apart from the gateways' (a probe never waits behind
a batch), and the endpoint it last connected to:

- a connection that closes by itself (the shard's process died: the kernel resets it) wakes
  the watcher at once (``on_broken``) rather than at the next ping;
- a lost connection is made again to the *same* endpoint first: refused there means the
  process that listened is gone (``REFUSED``: failed over at once);
- only then is Ray asked for the endpoint (a restarted shard listens elsewhere, with a new
  secret); a Ray that cannot say within the timeout (the shard restarting) is a ``MISSED``
  ping, as is a ping with no answer in time.

Over ``shard_transport=ray`` there is no channel: the probe pings through Ray, and every
failure is a miss (Ray restarts the shard behind the call: only ``failover_misses`` fail it
over).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from models import shard_wire as wire
from models.errors import AppError, BadRequest
from models.failover import Outcome
from services.transport import RayTransport

log = logging.getLogger("hyperlocal.failover")


class _Refused(Exception):
    """The shard's end refused, reset or closed the connection."""


class _Link:
    """One probe connection to one shard."""

    def __init__(self, shard: str, on_broken: Callable[[str], None]) -> None:
        self.shard = shard
        self.endpoint: dict[str, Any] | None = None
        self._on_broken = on_broken
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._answer: asyncio.Future[Any] | None = None
        self._reading: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self, endpoint: dict[str, Any], timeout_s: float) -> None:
        """Connect and say hello; ``_Refused`` if the other end refuses or is not the shard,
        ``TimeoutError`` if it does not answer."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(endpoint["host"], endpoint["port"]), timeout_s
            )
        except TimeoutError:
            raise
        except OSError as exc:  # refused, reset, unreachable
            raise _Refused(repr(exc)) from None
        try:
            writer.write(wire.frame([0, "hello", endpoint["token"]]))
            hello = await asyncio.wait_for(wire.read_frame(reader), timeout_s)
        except (asyncio.IncompleteReadError, ConnectionError, BadRequest) as exc:
            writer.close()
            raise _Refused(repr(exc)) from None
        except TimeoutError:
            writer.close()
            raise
        if not (isinstance(hello, list) and hello[1:2] == [True]):
            writer.close()
            raise _Refused("the hello was refused (another incarnation listens there)")
        self.endpoint, self._reader, self._writer = endpoint, reader, writer
        self._reading = asyncio.create_task(self._read(reader, writer), name="probe-read")

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                answer = await wire.read_frame(reader)
                if self._answer is not None and not self._answer.done():
                    self._answer.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError, BadRequest, ValueError):
            pass
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
                if self._answer is not None and not self._answer.done():
                    self._answer.set_exception(_Refused("the connection closed"))
                self._on_broken(self.shard)

    async def ping(self, timeout_s: float) -> None:
        assert self._writer is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._writer.write(wire.frame([1, "ping"]))
        await asyncio.wait_for(self._answer, timeout_s)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading


class ShardProbe:
    """Pings shards and says what it found (``Outcome``); owns its probe connections."""

    def __init__(
        self,
        ray: RayTransport,
        timeout_s: float,
        direct: bool,
        on_broken: Callable[[str], None],
    ) -> None:
        self._ray = ray
        self._timeout_s = timeout_s
        self._direct = direct
        self._on_broken = on_broken
        self._links: dict[str, _Link] = {}

    async def ping(self, shard: str) -> Outcome:
        """One ping of ``shard`` (at most about two timeouts long)."""
        if not self._direct:
            return await self._ping_ray(shard)
        link = self._links.get(shard)
        if link is None:
            link = self._links[shard] = _Link(shard, self._on_broken)
        try:
            if not link.open:
                await self._connect(link)
            await link.ping(self._timeout_s)
            return Outcome.OK
        except _Refused as exc:
            log.warning("shard %s refused its probe: %s", shard, exc)
            return Outcome.REFUSED
        except (TimeoutError, AppError) as exc:
            log.info("shard %s missed a ping: %r", shard, exc)
            return Outcome.MISSED

    async def _connect(self, link: _Link) -> None:
        if link.endpoint is not None:
            known, link.endpoint = link.endpoint, None
            await link.connect(known, self._timeout_s)  # refused: that process is gone
            return
        endpoint = await asyncio.wait_for(self._ray.endpoint(link.shard), self._timeout_s)
        await link.connect(endpoint, self._timeout_s)

    async def _ping_ray(self, shard: str) -> Outcome:
        try:
            await asyncio.wait_for(self._ray.ping(shard), self._timeout_s)
            return Outcome.OK
        except (TimeoutError, AppError) as exc:
            log.info("shard %s missed a ping: %r", shard, exc)
            return Outcome.MISSED

    async def forget(self, shard: str) -> None:
        """Stop watching ``shard`` (it left the fleet)."""
        link = self._links.pop(shard, None)
        if link is not None:
            await link.close()

    async def close(self) -> None:
        for shard in list(self._links):
            await self.forget(shard)
