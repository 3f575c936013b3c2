"""Many callers' rows of one statement, written by one statement and one commit.

What the shards' group commit (actors/group_commit.py) is for commands, a ``Coalescer`` is for
one statement that many concurrent requests of a gateway run with their own values (a
checkout's payment update, its group's final status: services/checkout.py). Each caller hands
its row and awaits its answer; the rows that arrive while a statement is in flight go together
in the next one, as ``unnest`` arrays, in one implicit transaction: one round trip and one
commit for all of them. Nothing waits for a window: a lone caller's row is sent at once, so at
low rates this is the plain statement, and under load the batches grow by themselves.

Each caller's answer is the row ``RETURNING`` gave for its key, or None. The statement is
atomic for the batch: if it fails, each row is retried alone, so one bad row fails only its own
caller (with the error it would have had alone) and the others are written. A caller is
answered only once its row's statement has committed (rule 1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import asyncpg

log = logging.getLogger("hyperlocal.coalesce")

_Item = tuple[Hashable, Sequence[Any], "asyncio.Future[Any]"]
"""A queued row: its caller's key, its values, its caller's answer."""


class Coalescer:
    """Owns one statement and the queue of rows waiting for it; guarantees each queued row is
    written by exactly one committed statement (or its caller gets that statement's error),
    at most ``max_rows`` rows per statement and one row per key (two rows of one key, e.g. a
    group's status set by a checkout and a webhook at once, go in order, in two statements),
    one statement in flight at a time.

    ``sql`` takes one array parameter per column (``$1::text[]``, ...; the columns of a row in
    order) and returns rows from which ``key_of`` reads the key a caller passed to ``run``.
    """

    def __init__(
        self,
        db: asyncpg.Pool,
        name: str,
        sql: str,
        key_of: Callable[[asyncpg.Record], Hashable],
        max_rows: int = 256,
    ) -> None:
        self.db, self.name, self.sql, self.key_of = db, name, sql, key_of
        self.max_rows = max_rows
        self._queue: list[_Item] = []
        self._draining: asyncio.Task[None] | None = None
        self.statements = 0
        """Statements sent so far, a failed batch's retries row by row included."""
        self.rows = 0
        """Rows queued so far, each counted once (rows / statements: how much they coalesced)."""

    async def run(self, key: Hashable, *values: Any) -> asyncpg.Record | None:
        """Write ``values`` (one row) with the others queued now; the row ``RETURNING`` gave
        for ``key``, or None."""
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # its caller may be gone: no "never retrieved"
        self._queue.append((key, values, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name=f"coalesce:{self.name}")
        return await asyncio.shield(future)  # a caller gone does not take its row back

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                self.rows += len(batch)
                await self._write(batch)
        finally:
            self._draining = None

    def _take(self) -> list[_Item]:
        """The next statement's rows, in arrival order: at most ``max_rows``, and one per key
        (a second row of a key waits for the next statement, so rows of one key are applied
        in the order they came, as separate statements would)."""
        batch: list[_Item] = []
        rest: list[_Item] = []
        keys: set[Hashable] = set()
        for item in self._queue:
            if len(batch) < self.max_rows and item[0] not in keys:
                keys.add(item[0])
                batch.append(item)
            else:
                rest.append(item)
        self._queue = rest
        return batch

    async def _write(self, batch: list[_Item]) -> None:
        self.statements += 1
        try:
            rows = await self.db.fetch(self.sql, *_columns([values for _, values, _ in batch]))
        except Exception as err:  # each row's own outcome decides
            if len(batch) == 1:
                _settle(batch[0][2], error=err)
                return
            log.info("%s: a batch of %d failed (%s): each row alone", self.name, len(batch), err)
            for item in batch:
                await self._write([item])
            return
        found = {self.key_of(row): row for row in rows}
        for key, _, future in batch:
            _settle(future, found.get(key))


def _columns(rows: list[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column (the statement's array parameters)."""
    return [list(column) for column in zip(*rows, strict=True)]


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(
    future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
