"""Group commit: many mutations, one Postgres transaction (rule 1: acked means durable).

``GroupCommitter`` gathers queued commands for ``window_s`` from the oldest one's arrival (or
until ``max_batch``), runs them in one transaction (each in its own savepoint once any of them
fails: see ``_commit``; a batch whose only statement is its final write sends it alone, with no
``BEGIN``/``COMMIT``: store/db.py ``LazyTransaction``), commits, and only then runs the
after-commit steps (memory updates), resolves the futures (the replies leave) and flushes the
whole batch's outbox in one call (publishing). Batches run on one held connection, taken from the
pool once and given back only on ``stop`` or a connection error (the next batch takes another).
A command that fails with a typed error is rolled
back alone; a failed commit fails the whole batch as ``unavailable``, and nothing of it is
applied or published.

The committer knows one ``BatchWriter`` (the owner): on the fast path the rows commands
``defer`` are written for the whole batch by its ``write`` (one statement), which may refuse the
batch with ``RunCarefully``; its ``settle`` hears after each attempt whether the fast path
committed; its ``publish`` gets the whole batch's outbox once committed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from models.errors import AppError, BadRequest, Conflict, Unavailable
from store.db import Conn, LazyTransaction, RawConn

log = logging.getLogger("hyperlocal.group_commit")


@dataclass
class Batch:
    """What the commands of one fast-path batch share: ``state``, a feature's per-batch view
    (keyed by the feature: the stock its reservations took, actors/listing_memory.py), and
    ``closing``, steps that defer the batch's rows once every command has run (one
    compare-and-set row per listing however many commands took from it). Gone with the attempt:
    a careful re-run has none."""

    state: dict[str, Any] = field(default_factory=dict)
    closing: list[Callable[[], list[Any]]] = field(default_factory=list)


@dataclass
class Tx:
    """What one command may do inside the batch transaction."""

    conn: Conn
    careful: bool = True
    """False on the batch's fast path: a duplicate will fail the batch at ``defer``'s write, and
    the batch then runs again carefully (savepoints, ``careful`` True). Work may skip checks
    that only matter for duplicates (the idempotency lookup) when it is False."""
    batch: Batch | None = None
    """The fast path's shared ``Batch`` (None on the careful path: each command alone)."""
    after_commit: list[Callable[[], object]] = field(default_factory=list)
    outbox: list[Any] = field(default_factory=list)
    deferred: list[Any] = field(default_factory=list)

    def defer(self, row: Any) -> None:
        """Write ``row`` with the committer's ``BatchWriter.write``, in this transaction: for the
        whole batch in one statement on the fast path, for this command alone otherwise."""
        self.deferred.append(row)

    def then(self, step: Callable[[], object]) -> None:
        """Run ``step`` once the batch has committed (never if it rolls back); what it returns
        is awaited if it is awaitable, else ignored."""
        self.after_commit.append(step)

    def emit(self, items: list[Any]) -> None:
        """Hand ``items`` to ``BatchWriter.publish`` once the batch has committed: the whole
        batch's outbox goes in one call (one Redis round trip), as its replies leave."""
        self.outbox.extend(items)


Work = Callable[[Tx], Awaitable[Any]]


@dataclass
class _Pending:
    work: Work
    future: asyncio.Future[Any]
    queued_at: float
    version: int
    steps: list[Callable[[], object]] = field(default_factory=list)
    outbox: list[Any] = field(default_factory=list)
    result: Any = None
    error: AppError | None = None
    recheck: Any = None


class BatchWriter(Protocol):
    """What the committer needs of its owner (actors/cell_host.py)."""

    async def write(self, conn: Conn, rows: list[Any], version: int) -> None:
        """Write deferred ``rows`` in ``conn``'s transaction (the batch's on the fast path, one
        command's on the careful path), fenced at placement ``version`` (the oldest its
        commands' owner was checked at); may raise ``RunCarefully`` on the fast path, and
        ``Fenced`` if that version is no longer in force."""

    def settle(self, committed: bool) -> None:
        """After each fast-path attempt: did it commit?"""

    async def publish(self, outbox: list[Any]) -> None:
        """The committed batch's outbox, once, as its replies leave."""

    async def recorded(self, conn: RawConn, asks: list[Any]) -> list[Any]:
        """For each refused command's ``Refused.recheck``: its first result if it has one
        (then that is its answer), an ``AppError`` to answer instead, or None (the refusal
        stands); read on ``conn`` (the batch's, its transaction begun or not)."""


class Refused(Exception):
    """Raised by work that refuses *before it has written anything*: on the fast path the batch
    keeps going (no rollback, no careful re-run of everyone) and this command answers
    ``error``. A refusal after a write must stay a plain ``AppError``."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.message)
        self.error = error
        self.recheck: Any = None
        """Set by the owner on the fast path: what ``BatchWriter.recorded`` asks for this
        command (its idempotency record: a retry of a command that committed may refuse now,
        and its first result is still its answer). Every refusal of the batch is asked in one
        call, once all of its commands have run."""


def _usable(conn: PoolConnectionProxy[Any]) -> bool:
    """Is the held connection still open? One that closed (Postgres ended it) was detached
    from its proxy by the pool, and asking the proxy then raises instead of answering."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # released back to the pool when its connection closed
        return False


class Fenced(Exception):
    """Raised by ``BatchWriter.write``: the placement version the batch's owner was checked at
    is no longer in force (the shard may own none of its cells now). Nothing was written; every
    command of the batch answers ``StaleOwner`` and is routed again by its caller."""


class StaleOwner(Unavailable):
    """A command's batch was fenced: its owner reloads the placement and its caller re-routes
    it (actors/cell_host.py answers ``moved``). Retrying with the same key is safe."""


class RunCarefully(Exception):
    """Raised by ``BatchWriter.write`` (or a command) on the fast path: roll the batch back and run
    it again command by command, each in its own savepoint, with ``Tx.careful`` set."""


_REFUSALS = (AppError, asyncpg.IntegrityConstraintViolationError, asyncpg.DataError, RunCarefully)
"""What makes the fast path give way to the careful one: a typed refusal, a duplicate, bad data."""


class GroupCommitter:
    """Owns one writer loop over a pool; ``enqueue``'s future resolves once the work is durable."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        window_s: float,
        max_batch: int,
        writer: BatchWriter,
    ) -> None:
        self._pool = pool
        self._writer = writer
        self._window_s = window_s
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.commands = 0
        self.slow_batches = 0
        self.commit_s = 0.0
        """Time spent committing batches (their first statement to their commit), summed."""
        self._busy = False
        self._settled = asyncio.Event()
        """Set after every batch (``idle`` waits on it)."""
        self._conn: PoolConnectionProxy[Any] | None = None
        """The connection batches run on, held from the first batch to ``stop`` (or to a
        failure that may have left it in doubt): one batch at a time needs one, and a pool's
        acquire and release cost every batch ~50 µs of Python (issue 11)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drop_connection()

    async def _connection(self) -> PoolConnectionProxy[Any]:
        """The held connection, taken from the pool if there is none (or it closed)."""
        if self._conn is None or not _usable(self._conn):
            await self._drop_connection()
            self._conn = conn = await self._pool.acquire()
            return conn
        return self._conn

    async def _drop_connection(self) -> None:
        """Give the held connection back (the pool rolls back anything left open and replaces
        a broken one); the next batch takes another."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn)
            except Exception:  # a broken connection: the pool has let it go
                log.debug("releasing the committer's connection failed", exc_info=True)

    def enqueue(self, work: Work, version: int, waited_s: float = 0.0) -> asyncio.Future[Any]:
        """Queue ``work`` for the next batch (works queued together stay in order), its owner
        checked at placement ``version``; ``waited_s``: how long it already waited for company
        on its way here (counted in the window). The future of its result once committed, or
        of its typed error (``StaleOwner`` if that version is no longer in force)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waited = min(max(waited_s, 0.0), self._window_s)
        self._queue.put_nowait(_Pending(work, future, loop.time() - waited, version))
        return future

    async def _gather(self) -> list[_Pending]:
        """The next batch: the window runs from the oldest command's arrival (less what it had
        already waited at its gateway: ``enqueue``'s ``waited_s``), so commands that
        queued while the previous batch was committing (they have gathered already) leave at
        once, with what else is queued; only a command arriving at an idle committer waits the
        whole window for company."""
        first = await self._queue.get()
        batch = [first]
        wait = self._window_s - (asyncio.get_running_loop().time() - first.queued_at)
        if wait > 0:
            await asyncio.sleep(wait)
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def idle(self) -> None:
        """Return once nothing is queued and no batch is committing (a shard being drained)."""
        while self._busy or not self._queue.empty():
            self._settled.clear()
            await self._settled.wait()

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            self._busy = True
            started = asyncio.get_running_loop().time()
            try:
                await self._commit(batch)
            except Fenced:
                log.warning("batch of %d fenced: the placement changed", len(batch))
                for item in batch:
                    item.error = StaleOwner("this shard's placement changed, route again")
                    item.steps.clear()
                    item.outbox.clear()
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("batch of %d failed to commit: %r", len(batch), exc)
                for item in batch:
                    item.error = Unavailable("storage unavailable, retry with the same key")
                    item.steps.clear()
                    item.outbox.clear()
                await self._drop_connection()  # in doubt (broken, or a transaction left open)
            except Exception:  # the loop must not die; each caller still gets an answer
                log.exception("unexpected error committing a batch of %d", len(batch))
                for item in batch:
                    item.error = Unavailable("internal error, retry with the same key")
                    item.steps.clear()
                    item.outbox.clear()
                await self._drop_connection()
            self.commit_s += asyncio.get_running_loop().time() - started
            try:
                await self._finish(batch)
            finally:
                self._busy = False
                self._settled.set()

    async def _commit(self, batch: list[_Pending]) -> None:
        """Fast path: every command straight in the transaction (no savepoints). If any command
        fails, roll it all back and run the batch again with a savepoint per command, so the
        failure stays its own and the others commit."""
        version = min(item.version for item in batch)  # the fence: its oldest ownership check
        conn = await self._connection()
        committed = careful = False
        lazy = LazyTransaction(conn)  # a batch of one statement needs no BEGIN / COMMIT
        try:
            try:
                deferred: list[Any] = []
                shared = Batch()
                for item in batch:
                    deferred.extend(await self._run_plain(lazy, item, shared))
                await self._recheck(conn, batch)
                for close in shared.closing:
                    deferred.extend(close())
                # the last statement: inside the transaction if one began, else alone
                if deferred or lazy.begun:
                    await self._write(lazy if lazy.begun else conn, deferred, version, True)
                await lazy.finish()
            except BaseException:
                await lazy.abort()
                raise
            committed = True
        except RunCarefully:
            careful = True
        finally:  # before any careful run: what the fast path took is void unless committed
            self._writer.settle(committed)
        if careful:
            self.slow_batches += 1
            async with conn.transaction():
                for item in batch:
                    item.error, item.steps, item.outbox = None, [], []
                    item.recheck = None
                    await self._run_one(conn, item, version)
        self.batches += 1
        self.commands += len(batch)

    async def _run_plain(self, conn: Conn, item: _Pending, shared: Batch) -> list[Any]:
        tx = Tx(conn, careful=False, batch=shared)
        try:
            item.result = await item.work(tx)
        except Refused as refused:  # nothing written: the others go on, fast
            item.error, item.recheck = refused.error, refused.recheck
            return []
        except _REFUSALS:
            raise RunCarefully from None
        item.steps = tx.after_commit
        item.outbox = tx.outbox
        return tx.deferred

    async def _recheck(self, conn: RawConn, batch: list[_Pending]) -> None:
        """The fast path's refusals that asked for it: their records, in one call."""
        asked = [item for item in batch if item.recheck is not None]
        if not asked:
            return
        answers = await self._writer.recorded(conn, [item.recheck for item in asked])
        for item, answer in zip(asked, answers, strict=True):
            item.recheck = None
            if isinstance(answer, AppError):
                item.error = answer
            elif answer is not None:  # a retry: its first result, nothing written now
                item.result, item.error = answer, None

    async def _write(self, conn: Conn, rows: list[Any], version: int, fast: bool) -> None:
        if not fast:
            await self._writer.write(conn, rows, version)
            return
        try:
            await self._writer.write(conn, rows, version)
        except _REFUSALS:
            raise RunCarefully from None  # e.g. a duplicate key: sort it out carefully

    async def _run_one(self, conn: RawConn, item: _Pending, version: int) -> None:
        """Run one command in its own savepoint; a unique-key race is retried once."""
        for attempt in (1, 2):
            tx = Tx(conn)
            try:
                async with conn.transaction():
                    item.result = await item.work(tx)
                    await self._write(conn, tx.deferred, version, False)
                item.steps = tx.after_commit
                item.outbox = tx.outbox
                return
            except Refused as refused:
                item.error = refused.error
                return
            except AppError as err:
                item.error = err
                return
            except asyncpg.UniqueViolationError:
                # A concurrent writer committed the same key; the retry's lookup now sees it.
                if attempt == 2:
                    item.error = Conflict("concurrent duplicate request")
            except asyncpg.IntegrityConstraintViolationError as exc:
                item.error = Conflict(f"refused by a constraint: {exc.constraint_name}")
                return
            except asyncpg.DataError:
                item.error = BadRequest("a value is out of range for storage")
                return

    async def _finish(self, batch: list[_Pending]) -> None:
        for item in batch:
            for step in item.steps:
                try:
                    outcome = step()
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:  # a failed side effect must not lose the ack
                    log.exception("after-commit step failed")
        for item in batch:
            if item.future.done():
                continue
            if item.error is not None:
                item.future.set_exception(item.error)
            else:
                item.future.set_result(item.result)
        # Replies first: they are due once the batch is durable, and they leave while the
        # publish below waits for Redis (it is fanout, best effort; gaps are filled from the
        # log). The next batch is not gathered before this publish is done, so a stream's
        # events still reach Redis in order.
        outbox = [entry for item in batch for entry in item.outbox]
        if outbox:
            try:
                await self._writer.publish(outbox)
            except Exception:  # a failed side effect must not lose the acks
                log.exception("flushing the outbox of %d entries failed", len(outbox))
