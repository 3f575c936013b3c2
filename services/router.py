"""How the services reach the shards: one router over one transport (services/transport.py).

``ShardRouter`` owns this gateway's copy of the placement table and one batcher per shard:
commands from all sockets bound for a shard travel together, at most ``batch_in_flight`` calls
per shard at a time (under load batches grow rather than calls). A shard
answering ``moved`` makes the router reload the table and retry (a few times). Transport errors
(actor dead, timeout) become ``unavailable``; the client retries with the same idempotency key.
Only a shard that is gone (``ShardGone``: unknown, dead, its connection broken) makes the router
look at the table again, in case its cells moved; the calls that failed together share that one
load (a slow shard's timeout reloads nothing: it is still the owner).
With failover on (``failover_poll_s``), a call whose connection to a shard broke is sent again
while the router reloads the table every ``failover_poll_s``: once the control actor has failed
the shard over, the call leaves the dead shard's restart behind and goes to the new owner.

Commands are typed (models/commands.py); a command's ``route`` names its owner. The transport
is the only thing that knows about Ray: ``RayTransport`` for the real path, ``LocalTransport``
(cell hosts in this process) for fast tests of the gateway and the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from models.commands import ShardCommand, ShardRead
from models.errors import AppError, Unavailable, error_from_dict
from models.placement import Placement, cell_key
from services.channel import ChannelLost
from services.transport import ShardGone, ShardTransport

log = logging.getLogger("hyperlocal.router")

MAX_MOVED_RETRIES = 3


class _Batcher:
    """One shard's command batches: at most ``max_in_flight`` calls at a time.

    The first command waits ``flush_s`` for company, then goes. While ``max_in_flight`` calls
    are out, commands gather and leave together as soon as one returns: under light load a
    command waits at most ``flush_s``; under heavy load the batches grow instead of the number
    of calls (each Ray call costs both processes a fixed amount of CPU), up to ``max_batch``.
    """

    def __init__(
        self,
        send: Callable[[list[ShardCommand], float], Awaitable[list[dict[str, Any]]]],
        flush_s: float,
        max_batch: int,
        max_in_flight: int,
    ) -> None:
        self._send = send
        self._flush_s = flush_s
        self._max = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[ShardCommand, asyncio.Future[dict[str, Any]]]] = []
        self._oldest = 0.0  # when the oldest pending command was submitted (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self.in_flight = 0

    def submit(self, command: ShardCommand) -> asyncio.Future[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if not self._pending:
            self._oldest = loop.time()
        self._pending.append((command, future))
        if len(self._pending) >= self._max:
            self._flush()
        elif self._timer is None and self.in_flight < self._max_in_flight:
            self._timer = loop.call_later(self._flush_s, self._flush)
        return future

    def _flush(self) -> None:
        """Send what is pending, unless all call slots are taken (a returning call sends it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._pending and self.in_flight < self._max_in_flight:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            # What stays pending (beyond ``max_batch``) keeps the same start: at worst its
            # shard commits it a little sooner than its own window would have.
            waited = loop.time() - self._oldest
            self.in_flight += 1
            asyncio.get_running_loop().create_task(self._deliver(batch, waited))

    async def _deliver(
        self, batch: list[tuple[ShardCommand, asyncio.Future[Any]]], waited_s: float
    ) -> None:
        try:
            await self._answer(batch, waited_s)
        finally:
            self.in_flight -= 1
            self._flush()  # what gathered while every slot was out goes now

    async def _answer(
        self, batch: list[tuple[ShardCommand, asyncio.Future[Any]]], waited_s: float
    ) -> None:
        try:
            replies = await self._send([command for command, _ in batch], waited_s)
            if len(replies) != len(batch):
                raise Unavailable(f"a shard answered {len(replies)} of {len(batch)} commands")
        except AppError as err:
            self._fail(batch, err)
            return
        except Exception:  # no caller may wait forever: every future gets an answer
            log.exception("shard call for a batch of %d failed", len(batch))
            self._fail(batch, Unavailable("a shard call failed, retry with the same key"))
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    @staticmethod
    def _fail(batch: list[tuple[ShardCommand, asyncio.Future[Any]]], err: AppError) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(err)


class ShardRouter:
    """Routes commands and reads to the owner of their placement key."""

    def __init__(
        self,
        transport: ShardTransport,
        load_placement: Callable[[], Awaitable[Placement]],
        flush_s: float,
        max_batch: int,
        max_in_flight: int = 1,
        failover_poll_s: float = 0.0,
    ) -> None:
        self._transport = transport
        self._poll_s = failover_poll_s
        self._loaded_at = 0.0
        self._load_placement = load_placement
        self._flush_s = flush_s
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self.placement: Placement | None = None
        self._batchers: dict[tuple[str, int], _Batcher] = {}
        self._loading: asyncio.Future[Placement] | None = None
        self._loading_since = 0.0  # when the load in flight began (loop time)
        self._read_at = 0.0  # when the load of the table we hold began
        self.moved_retries = 0
        self.calls = 0  # command batches sent to shards
        self.commands = 0  # commands in them (commands / calls: the batching achieved)

    @property
    def transport(self) -> ShardTransport:
        return self._transport

    async def refresh(
        self, seen: int = 0, max_age_s: float = 0.0, since: float | None = None
    ) -> Placement:
        """The table from Postgres; with ``seen`` (the version a shard answered ``moved``
        with), only if ours is older; with ``max_age_s``, only if ours was loaded longer ago;
        with ``since`` (loop time), only if ours was read before then (a load begun since is
        as good: a failure observed at ``since`` needs no second one).
        One load at a time: the many calls a move turns back together wait for the same one."""
        if seen and self.placement is not None and self.placement.version >= seen:
            return self.placement
        fresh = asyncio.get_running_loop().time() - self._loaded_at < max_age_s
        if max_age_s and self.placement is not None and fresh:
            return self.placement
        while True:
            if since is not None and self.placement is not None and self._read_at >= since:
                return self.placement
            if self._loading is None:  # begun now: stamped before anyone judges it below
                self._loading_since = asyncio.get_running_loop().time()
                self._loading = asyncio.ensure_future(self._load(self._loading_since))
            loading = self._loading
            if since is None or self._loading_since >= since:
                return await asyncio.shield(loading)  # a caller cancelled leaves it to the rest
            with contextlib.suppress(Exception):  # begun before ``since``: wait, then judge
                await asyncio.shield(loading)

    async def _load(self, started: float) -> Placement:
        loop = asyncio.get_running_loop()
        try:
            self.placement = await self._load_placement()
            self._loaded_at, self._read_at = loop.time(), started
            return self.placement
        finally:
            self._loading = None

    async def _table(self) -> Placement:
        return self.placement or await self.refresh()

    def _batcher(self, shard: str, version: int) -> _Batcher:
        key = (shard, version)
        batcher = self._batchers.get(key)
        if batcher is None:
            for old in [k for k in self._batchers if k[0] == shard and k[1] != version]:
                del self._batchers[old]

            async def send(commands: list[ShardCommand], waited_s: float) -> list[dict[str, Any]]:
                self.calls += 1
                self.commands += len(commands)
                return await self._transport.execute(shard, version, commands, waited_s)

            batcher = self._batchers[key] = _Batcher(
                send, self._flush_s, self._max_batch, self._max_in_flight
            )
        return batcher

    async def ping(self, shard: str) -> str:
        return await self._transport.ping(shard)

    async def stats(self, shard: str, cell: str | None = None) -> dict[str, Any]:
        """The shard's own counters and rates (the cluster view)."""
        return await self._transport.stats(shard, cell)

    async def drain(self, shard: str) -> dict[str, Any]:
        return await self._transport.drain(shard)

    async def call(self, command: ShardCommand) -> dict[str, Any]:
        """Run a mutation at the owner of ``command.route``; its data or its typed error."""
        route = command.route  # an id that names no cell fails here, before any shard

        async def send(table: Placement) -> dict[str, Any]:
            return await self._batcher(table.owner(route), table.version).submit(command)

        return await self._routed(send)

    async def read(self, read: ShardRead) -> dict[str, Any]:
        """Ask the owner of ``read.route``; its data or its typed error."""
        route = read.route

        async def send(table: Placement) -> dict[str, Any]:
            return await self._transport.read(table.owner(route), table.version, read)

        return await self._routed(send)

    async def _routed(
        self, send: Callable[[Placement], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Send with the current table; on ``moved`` reload it and send again (a few times)."""
        for _ in range(MAX_MOVED_RETRIES + 1):
            table = await self._table()
            reply = await self._send(send, table)
            if reply is None or "moved" in reply:
                self.moved_retries += 1
                if reply is not None:
                    await self.refresh(int(reply["moved"] or 0))
                continue
            if reply.get("ok"):
                return dict(reply["data"])
            raise error_from_dict(reply["error"])
        raise Unavailable("placement is changing, retry")

    async def _send(
        self, send: Callable[[Placement], Awaitable[dict[str, Any]]], table: Placement
    ) -> dict[str, Any] | None:
        """``send(table)``'s reply; None when its shard is gone and the table has moved past
        ``table`` (the command has another owner now: send again). A shard that is gone while
        the table stays is sent to again with failover on (``_unless_moved``), else its
        ``unavailable`` raised; any other failure (a timeout: that shard answers slowly) is
        raised at once, with no reload."""
        since = asyncio.get_running_loop().time()
        try:
            return await send(table)
        except ShardGone as exc:
            gone = exc
        # A shard removed by a scale-in, or failed over, is gone: if the table changed since,
        # the command has another owner now. A load begun after this call was sent serves it
        # (the calls of a batch that broke together share one load, not one each).
        if (await self.refresh(since=since)).version != table.version:
            return None
        if not (self._poll_s and isinstance(gone, ChannelLost)):
            raise gone  # no failover, or it is not the connection that broke
        return await self._unless_moved(send(table), table.version)

    async def _unless_moved(
        self, sending: Awaitable[dict[str, Any]], version: int
    ) -> dict[str, Any] | None:
        """``sending``'s reply (a shard that broke, sent to again: its restart, or its
        failover); None, and ``sending`` abandoned, as soon as the table in Postgres is past
        ``version`` (the control actor failed the shard over: the command has a new owner).
        Abandoning is safe: a command is idempotent by its key, and a shard checked at an older
        version is fenced."""
        task = asyncio.ensure_future(sending)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._poll_s)
                if done:
                    return task.result()
                table = await self.refresh(max_age_s=self._poll_s / 2)
                if table.version != version:
                    return None
        finally:
            if not task.done():
                task.cancel()

    async def feed_page(
        self, cells: list[str], cursor: str | None, limit: int
    ) -> list[list[dict[str, Any]]]:
        """One newest-first page per owning shard of ``cells``."""
        for _ in range(MAX_MOVED_RETRIES + 1):
            table = await self._table()
            by_shard: dict[str, list[str]] = defaultdict(list)
            for cell in cells:
                by_shard[table.owner(cell_key(cell))].append(cell)
            replies = await asyncio.gather(
                *(
                    self._transport.feed_page(shard, table.version, owned, cursor, limit)
                    for shard, owned in by_shard.items()
                )
            )
            if any("moved" in r for r in replies):
                self.moved_retries += 1
                await self.refresh(max(int(r.get("moved") or 0) for r in replies))
                continue
            for reply in replies:
                if not reply.get("ok"):
                    raise error_from_dict(reply["error"])
            return [list(r["data"]["items"]) for r in replies]
        raise Unavailable("placement is changing, retry")
