"""A shard batch's deferred rows in one statement (actors/cell_host.py, the fast path of
actors/group_commit.py): stream heads, events, idempotency records, and the rows of any
feature table that declares itself a ``Table`` (chat messages, for one).

One round trip for the whole batch instead of one per command. It checks the shard's fence first
(the placement version the shard believes is still in force: a share lock on its
``shard_fences`` row, held to commit; ``hl_fence`` raises ``FENCED`` when there is no such
row), so a stale owner writes nothing. The heads move by compare-and-set: if any head was
not at the offset the shard believed, the statement fails inside Postgres (nothing of it is
written, even when it ran alone without ``BEGIN``) and ``write`` returns False (the caller runs
the batch carefully), so two writers can never both commit the same offsets. A duplicate
idempotency key (or a duplicate row of a feature table) raises the unique violation, as separate
inserts would.

The core statement knows no feature: a feature's rows come as ``TableRow``s of its ``Table``
(name, typed columns), each table one more ``INSERT ... SELECT FROM unnest(...)`` in the same
statement. A core part the batch has no rows of is left out (a chat batch takes no inbox
offsets), so there is one statement per shape of batch and set of tables, built once and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from models.streams import Event, compact_json
from store.db import Conn
from store.events import new_epoch

HeadChange = tuple[str, str, int, int]
"""(stream, epoch, expected last offset, new last offset)."""


@dataclass(frozen=True, slots=True)
class RecordRow:
    """An idempotency record: the first result of ``op`` under ``(user_id, key)``, as JSON."""

    user_id: str
    key: str
    op: str
    result_json: str
    fingerprint: str | None = None
    """What the command asked (models/fingerprint.py): a reuse of the key with other data is
    ``conflict``."""


@dataclass(frozen=True, slots=True)
class Table:
    """A feature table whose rows a batch may write: its name and ``(column, pg type)``s.

    By default each row is inserted as given. A table whose rows are computed from the given
    values names its target columns in ``into`` and the query that computes them in ``select``,
    with ``{rows}`` standing for the given rows (``unnest(...) AS u(<columns>)``): REST hook
    deliveries, one per subscribed hook of each event, are one such (store/hooks_store.py).

    A **checked** table's rows change existing rows by compare-and-set: ``statement`` is the
    whole data-modifying statement (``UPDATE ... FROM {rows} WHERE <the expected state>
    RETURNING 1``), and every given row must change one row, else the statement fails (nothing
    of it is written, even when it is the batch's only statement) and ``write`` answers False
    as for a moved stream head (the batch runs carefully): a writer that decided from its
    memory of a row learns here that the row was not as it believed."""

    name: str
    columns: tuple[tuple[str, str], ...]
    into: tuple[str, ...] = ()
    select: str = ""
    statement: str = ""
    checked: bool = False

    def row(self, *values: Any) -> TableRow:
        if len(values) != len(self.columns):
            raise ValueError(f"{self.name}: {len(values)} values for {len(self.columns)} columns")
        return TableRow(self, values)


@dataclass(frozen=True, slots=True)
class TableRow:
    table: Table
    values: tuple[Any, ...]


@dataclass(eq=False, slots=True)
class PendingEvent:
    """An event of a stream several shards write (a user's inbox) whose offset is not taken
    yet. The batch's statement takes the offsets of every such stream of the batch at once,
    under each stream row's lock, streams in name order (so two shards' batches never wait on
    each other in a cycle); ``event`` is the event as committed once the statement returned.
    Before, each command took them with a statement of its own (store/events.py: ``reserve``,
    still what the careful path does)."""

    stream: str
    ev: str
    data: dict[str, Any]
    data_json: str = field(init=False)
    event: Event | None = None

    def __post_init__(self) -> None:
        self.data_json = compact_json(self.data)

    def committed(self) -> Event:
        if self.event is None:
            raise RuntimeError(f"an event of {self.stream} was published before its batch wrote it")
        return self.event


Row = Event | PendingEvent | RecordRow | TableRow
"""What a command may defer (``Tx.defer``)."""


@dataclass(frozen=True, slots=True)
class _Part:
    """One core part of the statement: a CTE over its parameters (``{0}``, ``{1}``, ... stand
    for them, typed ``types``), present only when the batch has rows of its kind."""

    name: str
    types: tuple[str, ...]
    sql: str


# The fence is a plain row lock in the statement; ``hl_fence`` (the same check, raising
# ``FENCED``) runs only when that lock found nothing, so a batch pays no plpgsql call.
_FENCE = _Part(
    "f",
    ("text", "bigint"),
    "SELECT count(*) AS n FROM (SELECT 1 FROM shard_fences"
    " WHERE shard = {0} AND version = {1} FOR SHARE) l",
)
_HEADS = _Part(
    "h",
    ("text[]", "text[]", "bigint[]", "bigint[]"),
    """UPDATE streams s SET last_offset = v.new
    FROM unnest({0}, {1}, {2}, {3}) AS v(name, epoch, old, new)
    WHERE s.name = v.name AND s.epoch = v.epoch AND s.last_offset = v.old
    RETURNING 1""",
)
_EVENTS = _Part(
    "e",
    ("text[]", "bigint[]", "text[]", "text[]"),
    """INSERT INTO stream_events (stream, "offset", ev, data)
    SELECT stream, "offset", ev, data::jsonb
    FROM unnest({0}, {1}, {2}, {3}) AS x(stream, "offset", ev, data)""",
)
_RECORDS = _Part(
    "i",
    ("text[]", "text[]", "text[]", "text[]", "text[]"),
    """INSERT INTO idempotency (user_id, key, op, result, fingerprint)
    SELECT user_id, key, op, result::jsonb, fingerprint
    FROM unnest({0}, {1}, {2}, {3}, {4}) AS y(user_id, key, op, result, fingerprint)""",
)
_TAKEN = _Part(
    "r",
    ("text[]", "text[]", "bigint[]"),
    """INSERT INTO streams AS s (name, epoch, last_offset)
    SELECT name, epoch, n FROM unnest({0}, {1}, {2}) AS q(name, epoch, n)
    ORDER BY name
    ON CONFLICT (name) DO UPDATE SET last_offset = s.last_offset + excluded.last_offset
    RETURNING name, epoch, last_offset""",
)
_PENDING = _Part(
    "p",
    ("text[]", "bigint[]", "text[]", "text[]"),
    """INSERT INTO stream_events (stream, "offset", ev, data)
    SELECT x.stream, r.last_offset + x.back, x.ev, x.data::jsonb
    FROM unnest({0}, {1}, {2}, {3}) AS x(stream, back, ev, data)
    JOIN r ON r.name = x.stream""",
)
Shape = tuple[bool, bool, bool, bool]
"""Which core rows a batch has: (heads, events, records, pending events)."""
_statements: dict[tuple[Shape, tuple[Table, ...]], str] = {}


def statement(shape: Shape, tables: tuple[Table, ...]) -> str:
    """The one statement for a batch of ``shape`` plus ``tables``' rows (built once, then
    kept). A part the batch has no rows of is left out, not sent empty: each part is a plan
    node Postgres sets up on every execution (opening its table, indexes and triggers), and a
    chat batch has neither pending events nor the stream rows they take (issue 11, docs/
    benchmarks.md "Seventh session"). Parameters are numbered in the order ``write`` gives
    them: the fence, then each present part's arrays, then the tables' columns, then the
    checked tables' counts."""
    key = (shape, tables)
    sql = _statements.get(key)
    if sql is None:
        sql = _statements[key] = _build(shape, tables)
    return sql


def _build(shape: Shape, tables: tuple[Table, ...]) -> str:
    heads, events, records, pending = shape
    n = 0

    def params(types: tuple[str, ...]) -> list[str]:
        nonlocal n
        out = [f"${n + j + 1}::{t}" for j, t in enumerate(types)]
        n += len(types)
        return out

    fence = params(_FENCE.types)
    parts = [f"WITH f AS (\n    {_FENCE.sql.format(*fence)}\n)"]
    heads_names = ""
    for present, part in ((heads, _HEADS), (events, _EVENTS), (records, _RECORDS),
                          (pending, _TAKEN), (pending, _PENDING)):  # fmt: skip
        if present:
            given = params(part.types)
            heads_names = given[0] if part is _HEADS else heads_names
            parts.append(f", {part.name} AS (\n    {part.sql.format(*given)}\n)")
    for index, table in enumerate(tables):
        names = ", ".join(f'"{c}"' for c, _ in table.columns)
        arrays = ", ".join(params(tuple(f"{t}[]" for _, t in table.columns)))
        rows = f"unnest({arrays}) AS u({names})"
        if table.statement:
            body = table.statement.format(rows=rows)
        elif table.select:
            into = ", ".join(f'"{c}"' for c in table.into)
            body = f"INSERT INTO {table.name} ({into})\n    {table.select.format(rows=rows)}"
        else:
            body = f"INSERT INTO {table.name} ({names})\n    SELECT * FROM {rows}"
        parts.append(f", t{index} AS (\n    {body}\n)")
    # a checked table's rows must all have changed one row, or the statement fails (so
    # nothing of it commits, even sent alone): the cast of a value no CASE branch gives when
    # they did (not a constant, so never folded at planning)
    checked = "".join(
        f", (CASE WHEN (SELECT count(*) FROM t{index}) = {params(('bigint',))[0]} THEN '0'"
        f" ELSE '{CHECK_FAILED}' END)::int AS checked{index}"
        for index, table in enumerate(tables)
        if table.checked
    )
    # every head must have moved too, or the statement fails the same way: sent alone (no
    # BEGIN) it would otherwise commit its rows at offsets the heads no longer agree with
    moved = (
        f", (CASE WHEN (SELECT count(*) FROM h) = cardinality({heads_names}) THEN '0'"
        f" ELSE '{CHECK_FAILED}' END)::int AS heads_checked"
        if heads
        else ""
    )
    # ``f`` must run even when nothing else reads it (a CTE that is a plain SELECT runs only
    # if referenced; data-modifying ones always run); ``hl_fence`` raises ``FENCED`` when the
    # lock found no row at this version (volatile: called only on that branch)
    fenced = f"(SELECT CASE WHEN n > 0 THEN 0 ELSE hl_fence({fence[0]}, {fence[1]}) END FROM f)"
    taken = (
        ", a.* FROM (SELECT array_agg(name) AS names, array_agg(epoch) AS epochs,"
        " array_agg(last_offset) AS lasts FROM r) a"
        if pending
        else ""
    )
    parts.append(f"\nSELECT {fenced} AS fenced{moved}{checked}{taken}")
    return "".join(parts)


CHECK_FAILED = "hl_checked_row_not_as_believed"
"""What the batch statement fails with (``invalid input syntax for type integer``) when a
checked table's row changed nothing or a stream head was not where the shard believed."""

Fence = tuple[str, int]
"""(shard, placement version): the batch commits only if that version is still in force for
that shard (store/placement.py, ``hl_fence``); else the statement fails with ``FENCED``."""


async def write(conn: Conn, heads: list[HeadChange], rows: list[Row], fence: Fence) -> bool:
    """Write everything inside the caller's transaction, behind ``fence``; False if a head
    had moved or a checked table's row changed nothing (the caller must roll back). With
    nothing to write, the fence alone is checked (the caller's transaction may hold writes of
    its own)."""
    if not (heads or rows):
        await conn.fetchval("SELECT hl_fence($1, $2)", *fence)
        return True
    events: list[Event] = []
    records: list[RecordRow] = []
    pending: dict[str, list[PendingEvent]] = {}
    by_table: dict[Table, list[tuple[Any, ...]]] = {}
    for row in rows:
        if isinstance(row, Event):
            events.append(row)
        elif isinstance(row, PendingEvent):
            pending.setdefault(row.stream, []).append(row)
        elif isinstance(row, RecordRow):
            records.append(row)
        else:
            by_table.setdefault(row.table, []).append(row.values)
    tables = tuple(sorted(by_table, key=lambda t: t.name))
    names = sorted(pending)
    shape = (bool(heads), bool(events), bool(records), bool(names))
    args: list[Any] = [fence[0], fence[1]]
    if heads:
        args += [[h[0] for h in heads], [h[1] for h in heads], [h[2] for h in heads]]
        args.append([h[3] for h in heads])
    if events:
        args += [[e.stream for e in events], [e.offset for e in events]]
        args += [[e.ev for e in events], [e.data_json for e in events]]
    if records:
        args += [[r.user_id for r in records], [r.key for r in records], [r.op for r in records]]
        args += [[r.result_json for r in records], [r.fingerprint for r in records]]
    if names:
        in_order = [p for name in names for p in pending[name]]
        args += [
            names,
            [new_epoch() for _ in names],  # used only by a stream's first event ever
            [len(pending[name]) for name in names],
            [p.stream for p in in_order],
            # each event's place from its stream's new last offset: -(n-1) .. 0
            [i + 1 - len(pending[name]) for name in names for i in range(len(pending[name]))],
            [p.ev for p in in_order],
            [p.data_json for p in in_order],
        ]
    for table in tables:
        values = by_table[table]
        args.extend([v[j] for v in values] for j in range(len(table.columns)))
    args.extend(len(by_table[table]) for table in tables if table.checked)
    try:
        out = await conn.fetchrow(statement(shape, tables), *args)
    except asyncpg.InvalidTextRepresentationError as exc:
        if CHECK_FAILED in str(exc):  # nothing was written: the caller runs it carefully
            return False
        raise
    assert out is not None
    if names:
        columns = zip(out["names"], out["epochs"], out["lasts"], strict=True)
        taken = {name: (epoch, last) for name, epoch, last in columns}
        for name in names:
            epoch, last = taken[name]
            items = pending[name]
            first = last - len(items) + 1
            for i, p in enumerate(items):
                p.event = Event.encoded(p.stream, epoch, first + i, p.ev, p.data, p.data_json)
    return True  # a head not where we believed failed the statement itself (``heads_checked``)
