"""CellHost: the plain-Python body of a CellShard actor.

A CellHost owns the cells (and user keys) that the placement table assigns to its shard name:
- it is the only writer of their rows (rule 2), through one GroupCommitter;
- it keeps each active cell's newest posts in memory (a cache of Postgres), activating a cell
  from Postgres on first use and passivating it after ``cell_idle_s`` without use;
- it refuses work for keys it does not own with ``{"moved": version}``.

Persisted: everything, via Postgres, before a reply. Idempotent: every mutation, by its
(user, key) idempotency record, so Ray's retry of a call after a restart is safe.
No Ray and no aiohttp here; ``actors/shard.py`` wraps it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from actors.group_commit import (
    Fenced,
    GroupCommitter,
    Refused,
    RunCarefully,
    StaleOwner,
    Tx,
    Work,
)
from actors.singleflight import SingleFlight
from actors.stream_heads import StreamHeads
from cluster.config import Settings
from models.commands import ShardCommand, ShardRead
from models.errors import AppError, BadRequest
from models.feed import CellFeed, FeedCursor, Post
from models.fingerprint import fingerprint
from models.load import LoadMeter
from models.placement import Placement, cell_key
from models.streams import Event, compact_json, single_writer
from store import batch_write, feed_store, idempotency, placement
from store import events as event_log
from store.batch_write import PendingEvent, RecordRow
from store.db import Conn, RawConn, create_pool
from store.fanout import RespPublisher

log = logging.getLogger("hyperlocal.shard")


@dataclass
class Emitted:
    """Events a command appends, per stream, in order; offsets are assigned at append.

    ``appended`` holds events a handler appended itself with ``CellHost.offsets`` (when its own
    rows must carry the event's offset, as chat messages do); published with the rest.
    """

    items: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    appended: list[Event] = field(default_factory=list)

    def add(self, stream: str, ev: str, data: dict[str, Any]) -> None:
        self.items.append((stream, ev, data))


Handler = Callable[["CellHost", Tx, Any, Emitted], Awaitable[dict[str, Any]]]
"""A mutation, given its typed command (models/commands.py): validates, writes rows through
``tx``, declares events in ``Emitted``."""

Reader = Callable[["CellHost", Any], Awaitable[dict[str, Any]]]
"""A read answered by the owner of a key (in-memory state, or state only the owner may see),
given its typed request (a ``ShardRead``)."""


Push = Callable[[list[Event]], None]
"""Hands committed events to the gateways at once (actors/channel.py ``ChannelServer.push``)."""


class ShardWriter:
    """The group committer's ``BatchWriter`` for one host: a batch's deferred rows and moved
    stream heads in one statement (store/batch_write.py), then its events to the gateways:
    pushed on their channels (``push``), or published to Redis."""

    def __init__(
        self, name: str, heads: StreamHeads, publisher: RespPublisher | None, push: Push | None
    ) -> None:
        self.name = name
        self.heads = heads
        self.publisher = publisher
        self.push = push

    async def write(self, conn: Conn, rows: list[batch_write.Row], version: int) -> None:
        """The rows, and the moved heads (none on the careful path), in one statement behind
        this shard's fence at ``version``; a head that moved under us refuses the fast path, a
        fence at another version is ``Fenced`` (nothing written)."""
        try:
            fence = (self.name, version)
            written = await batch_write.write(conn, self.heads.changes(), rows, fence)
        except asyncpg.PostgresError as exc:
            if placement.fenced(exc):
                raise Fenced(str(exc)) from exc
            raise
        if not written:
            log.warning("a stream head moved, or a checked row was not as believed, under"
                        " shard %s: batch runs carefully", self.name)  # fmt: skip
            raise RunCarefully

    def settle(self, committed: bool) -> None:
        self.heads.settle(committed)

    async def recorded(self, conn: RawConn, asks: list[Any]) -> list[Any]:
        """The fast path's refused commands' first results (``(user, key, op, fingerprint)``
        each), one query for all; a key used otherwise answers its ``Conflict``. On the batch's
        connection: its transaction sees no record of its own yet (they are written last), and
        a batch that began none still sends its one statement alone."""
        return await idempotency.lookup_many(conn, asks)

    async def publish(self, committed: list[Event | PendingEvent]) -> None:
        events = [e.committed() if isinstance(e, PendingEvent) else e for e in committed]
        if self.push is not None:
            # after the answers this batch releases (their tasks wake first): a gateway reads
            # them, and sends its next call, before it delivers the events
            asyncio.get_running_loop().call_soon(self.push, events)
        elif self.publisher is not None:
            await self.publisher.publish(events)


@dataclass(frozen=True)
class Tick:
    """Periodic work a feature has its host commit: every ``period_s(settings)`` seconds (0:
    never) ``make(host)`` returns the work to run in the next batch, or None (nothing to do).
    The work runs like a command's (fast path, careful re-run) but has no idempotency key:
    it must be safe to run again, and keep its own state until its ``tx.then`` says it
    committed."""

    name: str
    period_s: Callable[[Settings], float]
    make: Callable[[CellHost], Work | None]


@dataclass
class ActiveCell:
    feed: CellFeed
    last_used: float


class CellHost:
    """See the module docstring. One per shard process."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        handlers: dict[type[ShardCommand], Handler],
        readers: dict[type[ShardRead], Reader] | None = None,
        ticks: tuple[Tick, ...] = (),
    ) -> None:
        self.name = name
        self.push: Push | None = None
        """Where committed events go instead of Redis (the shard's channel, set before the
        host starts), if anywhere."""
        self.settings = settings
        self.handlers = handlers
        self.readers = readers or {}
        self.ticks = ticks
        self.ext: dict[str, Any] = {}
        """Per-feature state a feature's handlers keep on this host (a cache of Postgres rows
        of keys this host owns). Cleared when the placement table changes."""
        self.cells: dict[str, ActiveCell] = {}
        self._activating: SingleFlight[str, ActiveCell] = SingleFlight()
        self._reloading: SingleFlight[str, None] = SingleFlight()
        self.pool: asyncpg.Pool | None = None
        self.redis: aioredis.Redis | None = None
        self.publisher: RespPublisher | None = None
        """The batches' fanout (its own lean connection: the hot path's one Redis call)."""
        self.committer: GroupCommitter | None = None
        self.heads = StreamHeads()
        """Offsets of the feed and room streams this host writes alone (fast path)."""
        self.placement: Placement | None = None
        self.load = LoadMeter(settings.load_tau_s)
        """Commands per second per key lately (the cluster view's hot cells, the rebalancer)."""
        self._started: asyncio.Future[None] | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._tickers: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def ready(self) -> None:
        """Connect on first use (also after Ray restarts the actor); concurrent callers wait."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self._start()
                self._started.set_result(None)
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started = None
                raise
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        assert self.settings.database_url and self.settings.redis_url
        self.pool = await create_pool(self.settings.database_url, min_size=2, max_size=8)
        self.redis = aioredis.from_url(self.settings.redis_url, decode_responses=False)
        if self.push is None:
            self.publisher = RespPublisher(self.settings.redis_url, f"hl-fanout-{self.name}")
        self.placement = await placement.load(self.pool)
        self.committer = GroupCommitter(
            self.pool,
            self.settings.group_commit_ms / 1000,
            self.settings.group_commit_max,
            ShardWriter(self.name, self.heads, self.publisher, self.push),
        )
        self.committer.start()
        self._janitor = asyncio.create_task(self._passivate_loop(), name="passivate")
        for tick in self.ticks:
            period = tick.period_s(self.settings)
            if period > 0:
                self._tickers.append(
                    asyncio.create_task(self._tick_loop(tick, period), name=tick.name)
                )
        log.info(
            "shard %s ready (placement v%s)", self.name, self.placement and self.placement.version
        )

    async def close(self) -> None:
        for task in (self._janitor, *self._tickers):
            if task:
                task.cancel()
        if self.committer:
            await self.committer.stop()
        if self.redis:
            await self.redis.aclose()
        if self.publisher:
            await self.publisher.aclose()
        if self.pool:
            await self.pool.close()

    # -- ownership ---------------------------------------------------------------------------
    async def _placement_at_least(self, version: int) -> None:
        """Reload the placement table if a caller has seen a newer one than ours."""
        if self.placement is None or self.placement.version < version:
            await self._reload_placement()

    def owns(self, key: str) -> bool:
        """Does this host own ``key`` under the placement it knows now?"""
        return self.placement is not None and self.placement.owner(key) == self.name

    async def _owns(self, version: int, key: str) -> bool:
        await self._placement_at_least(version)
        return self.owns(key)

    def placement_version(self) -> int:
        return self.placement.version if self.placement else 0

    # -- cells -------------------------------------------------------------------------------
    async def cell(self, cell: str) -> ActiveCell:
        """The active cell, activated from Postgres on first use (once, even if raced)."""
        active = self.cells.get(cell)
        if active is not None:
            active.last_used = time.monotonic()
            return active

        async def activate() -> ActiveCell:
            assert self.pool is not None
            cap = self.settings.cell_recent_posts
            posts = await feed_store.recent_posts(self.pool, cell, cap)
            loaded = self.cells[cell] = ActiveCell(
                CellFeed.loaded(cell, cap, posts), time.monotonic()
            )
            return loaded

        return await self._activating.run(cell, activate)

    async def _passivate_loop(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.settings.cell_idle_s))
            self.passivate_idle(time.monotonic())

    async def _tick_loop(self, tick: Tick, period: float) -> None:
        """Commit ``tick``'s work every ``period`` seconds; a failure is logged and the next
        round tries again (the tick keeps its state until it committed)."""
        assert self.committer is not None
        while True:
            await asyncio.sleep(period)
            work = tick.make(self)
            if work is None:
                continue
            try:
                await self.committer.enqueue(work, self.placement_version())
            except StaleOwner:  # the work checks ownership itself: the next round, reloaded
                await self._reload_after(self.placement_version())
            except AppError as err:
                log.warning("shard %s: %s did not commit: %s", self.name, tick.name, err.message)

    def passivate_idle(self, now: float) -> list[str]:
        """Drop the memory of cells unused for ``cell_idle_s``; Postgres still has them all."""
        self.load.prune(now)  # keys (users too) that went quiet: the meter stays bounded
        cutoff = now - self.settings.cell_idle_s
        idle = [c for c, a in self.cells.items() if a.last_used < cutoff]
        for cell in idle:
            del self.cells[cell]
        if idle:
            log.debug("passivated %d cells", len(idle))
        return idle

    # -- commands ----------------------------------------------------------------------------
    async def execute(
        self, version: int, commands: list[ShardCommand], waited_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """Run a batch of commands from one router call; one reply per command, in order.
        ``waited_s``: how long the oldest of them already waited at its gateway, which the
        group-commit window counts (commands that gathered there need not gather again).

        The call's commands join the committer's queue together, in order, with no task per
        command: a command's reply is its future's outcome. A client's retry of a committed
        command needs no lookup here: its idempotency record makes the batch's fast path fail
        at the record's primary key, and the careful re-run answers it from the record
        (``_work``). Retries are rare; a query per call is not.
        """
        await self.ready()
        assert self.committer is not None
        await self._placement_at_least(version)
        replies: list[dict[str, Any]] = []
        pending: list[tuple[int, asyncio.Future[Any]]] = []
        checked = self.placement_version()  # what this call's commands are owned under
        for cmd in commands:
            handler = self.handlers.get(type(cmd))
            if handler is None:
                error = BadRequest(f"unknown op {cmd.op!r}")
                replies.append({"ok": False, "error": error.to_dict()})
                continue
            try:
                route = cmd.route
            except AppError as err:  # an id that names no cell
                replies.append({"ok": False, "error": err.to_dict()})
                continue
            if not self.owns(route):
                replies.append({"moved": self.placement_version()})
                continue
            self.load.record(route, time.monotonic())
            future = self.committer.enqueue(self._work(handler, cmd), checked, waited_s)
            pending.append((len(replies), future))
            replies.append({})
        for index, future in pending:
            try:
                replies[index] = {"ok": True, "data": dict(await future)}
            except StaleOwner:  # fenced: nothing written; the caller routes it again
                await self._reload_after(checked)
                replies[index] = {"moved": self.placement_version()}
            except AppError as err:
                replies[index] = {"ok": False, "error": err.to_dict()}
        return replies

    async def _reload_after(self, fenced: int) -> None:
        """A batch checked at version ``fenced`` was fenced: load the table in force, once for
        every command and call the fence turned back (not again if a newer one is here)."""
        if self.placement_version() <= fenced:
            await self._reloading.run("placement", self._reload_placement)

    async def _reload_placement(self) -> None:
        """The table in force (a caller has seen a newer one, or a batch was fenced)."""
        assert self.pool is not None
        self.placement = await placement.load(self.pool)
        self.ext.clear()  # keys may have moved: cached state of any of them may be stale
        for cell in [c for c in self.cells if not self.owns(cell_key(c))]:
            del self.cells[cell]  # another owner writes it now: back here, it loads afresh
        self.heads.forget()

    def _work(self, handler: Handler, cmd: ShardCommand) -> Work:
        """The committer's work for one command: its handler, events and idempotency record."""
        user_id, key, op = cmd.user_id, cmd.key, cmd.op
        asked = fingerprint(cmd)  # a retry with other data is a conflict, not the first result
        recorded = cmd.recorded()  # else its repeat is answered by the state it left

        async def work(tx: Tx) -> dict[str, Any]:
            # A retry (of a committed command, or a duplicate inside this batch) fails the fast
            # path at the record's primary key; the careful re-run finds the first result here.
            if tx.careful and recorded:
                prior = await idempotency.lookup(tx.conn, user_id, key, op, asked)
                if prior is not None:
                    return dict(prior)
            emitted = Emitted()
            try:
                result = await handler(self, tx, cmd, emitted)
            except Refused as refused:
                # On the fast path no record was looked up: a retry of a command that committed
                # may now refuse (sold out since); its first result is still its answer. The
                # committer asks for every refusal's record of the batch at once (``recorded``).
                if not tx.careful and recorded:
                    refused.recheck = (user_id, key, op, asked)
                raise
            committed = await self._append(tx, emitted)
            if recorded:
                tx.defer(RecordRow(user_id, key, op, _result_json(result, committed), asked))
            tx.emit(committed)
            return result

        return work

    async def _append(self, tx: Tx, emitted: Emitted) -> list[Event | PendingEvent]:
        by_stream: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for stream, ev, data in emitted.items:
            by_stream.setdefault(stream, []).append((ev, data))
        out: list[Event | PendingEvent] = list(emitted.appended)
        for stream, items in by_stream.items():
            out.extend(await self.append(tx, stream, items))
        return out

    async def offsets(self, tx: Tx, stream: str, count: int) -> tuple[str, int]:
        """The next ``count`` offsets of ``stream`` in ``tx``: (epoch, first). A stream this
        host writes alone, on the fast path: from ``heads`` (the batch's one statement moves the
        head by compare-and-set). Otherwise (a user inbox, or the careful path): reserved in SQL
        under the stream row's lock."""
        if tx.careful or not single_writer(stream):
            return await event_log.reserve(tx.conn, stream, count)
        return await self.heads.take(tx.conn, stream, count)

    async def append(
        self, tx: Tx, stream: str, items: list[tuple[str, dict[str, Any]]]
    ) -> list[Event] | list[PendingEvent]:
        """Append events to ``stream`` in ``tx``; their rows go with the deferred writes. On the
        fast path, a stream other shards write too (a user's inbox) gets its offsets from the
        batch's one statement (``PendingEvent``), not from a statement of this command's."""
        if not tx.careful and not single_writer(stream):
            pending = [PendingEvent(stream, ev, data) for ev, data in items]
            for row in pending:
                tx.defer(row)
            return pending
        epoch, first = await self.offsets(tx, stream, len(items))
        events = [Event(stream, epoch, first + i, ev, data) for i, (ev, data) in enumerate(items)]
        for event in events:
            tx.defer(event)
        return events

    # -- reads -------------------------------------------------------------------------------
    async def read(self, version: int, read: ShardRead) -> dict[str, Any]:
        """Answer a typed read for the owner of its route: ok/data, error, or moved."""
        await self.ready()
        try:
            reader = self.readers.get(type(read))
            if reader is None:
                raise BadRequest(f"unknown read {read.op!r}")
            if not await self._owns(version, read.route):
                return {"moved": self.placement_version()}
            return {"ok": True, "data": await reader(self, read)}
        except AppError as err:
            return {"ok": False, "error": err.to_dict()}

    async def feed_page(
        self, version: int, cells: list[str], cursor: str | None, limit: int
    ) -> dict[str, Any]:
        """Newest-first posts of ``cells`` (all owned here) older than ``cursor``."""
        await self.ready()
        for cell in cells:
            if not await self._owns(version, cell_key(cell)):
                return {"moved": self.placement_version()}
        before = FeedCursor.decode(cursor) if cursor else None
        items: list[Post] = []
        fallback: list[str] = []
        for cell in cells:
            page, final = (await self.cell(cell)).feed.page(before, limit)
            items.extend(page)
            if not final:
                fallback.append(cell)
        if fallback:
            assert self.pool is not None
            seen = {p["id"] for p in items}
            older = await feed_store.older_posts(self.pool, fallback, before, limit)
            items.extend(p for p in older if p["id"] not in seen)
        return {"ok": True, "data": {"items": items}}

    async def stats(self, cell: str | None = None) -> dict[str, Any]:
        """Counters since start, rates of lately (``load_tau_s``), the hottest cells, and with
        ``cell`` whether that cell is active here and its rate."""
        committer = self.committer
        redis_ok = True
        if self.redis is not None:
            try:
                await self.redis.ping()
            except (RedisError, OSError):
                redis_ok = False
        now = time.monotonic()
        batches = committer.batches if committer else 0
        commands = committer.commands if committer else 0
        commit_s = committer.commit_s if committer else 0.0
        hot = self.load.hottest(now, self.settings.hot_cells, prefix="cell:")
        return {
            "name": self.name,
            "pid": os.getpid(),
            "active_cells": len(self.cells),
            "batches": batches,
            "commands": commands,
            "slow_batches": committer.slow_batches if committer else 0,
            "commit_s": round(commit_s, 6),
            "batch_size_mean": round(commands / batches, 2) if batches else 0.0,
            "commit_ms_mean": round(1000 * commit_s / batches, 3) if batches else 0.0,
            "calls_per_s": round(self.load.total(now), 3),
            "hot_cells": [
                {"cell": key.removeprefix("cell:"), "msgs_per_s": round(rate, 3)}
                for key, rate in hot
            ],
            "placement_version": self.placement_version(),
            "redis_ok": redis_ok,
            **(
                {}
                if cell is None
                else {
                    "cell": {
                        "cell": cell,
                        # in memory (its feed), or served lately (chat keeps no cell memory)
                        "active": cell in self.cells or self.load.rate(cell_key(cell), now) > 0,
                        "msgs_per_s": round(self.load.rate(cell_key(cell), now), 3),
                    }
                }
            ),
        }

    async def drain(self) -> dict[str, Any]:
        """Before this shard is removed: load the table in force (it owns nothing in it, so
        every later command answers ``moved``) and wait until its committer has nothing
        queued or in flight; its stats then."""
        await self.ready()
        await self._reload_placement()
        if self.committer is not None:
            await self.committer.idle()
        return await self.stats()


def _result_json(result: dict[str, Any], events: list[Event | PendingEvent]) -> str:
    """The idempotency record's JSON: an event's own JSON when the result is that event's data
    (a chat message: encoded once for the log, the record and the wire), else encoded here."""
    for event in events:
        if event.data is result:
            return event.data_json
    return compact_json(result)
