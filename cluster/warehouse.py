"""The warehouse export: a Ray Data job writing tables as Parquet, partitioned by day and cell.

``export(settings, out_dir, tables)`` writes, for each table of ``TABLES`` asked for,
``out_dir/<table>/day=YYYY-MM-DD/cell=<h3>/*.parquet`` (Hive-style partitions any warehouse
engine reads: DuckDB, Spark, Trino, BigQuery external tables, pyarrow.dataset). The job is
Ray Data's: a dataset of day ranges (``warehouse_days_per_task`` days each), ``map_batches``
reading each range from Postgres in its own Ray task (its own connection, keyed by
``created_at``, one index range scan each), then ``write_parquet(partition_cols=[day, cell])``.
So the rows never pass through the driver and the reads run in parallel across the cluster.

A table is written into a fresh folder and swapped in when complete: an export run again
replaces the table's folder whole (never half a table, never rows twice). Days are UTC.
``hyperlocal warehouse export DIR [--tables orders,interactions]``.

Adding a table is one entry of ``TABLES``: its SQL (rows created in [$1, $2), with ``day``
and ``cell`` columns) and its Arrow schema.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pyarrow as pa
import pyarrow.dataset as pads
import ray
import ray.data

from cluster.config import Settings

PARTITIONS = ["day", "cell"]
_TS = pa.timestamp("us", tz="UTC")
_DAY = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day"


@dataclass(frozen=True)
class Table:
    """One exported table: where its rows of a time range come from, and their schema."""

    span_sql: str
    """The first and last ``created_at`` (None, None: no rows)."""
    rows_sql: str
    """Its rows created in [$1, $2), with ``day`` and ``cell`` columns."""
    schema: pa.Schema


TABLES: dict[str, Table] = {
    "orders": Table(
        "SELECT min(created_at), max(created_at) FROM orders",
        f"""SELECT id AS order_id, group_id, buyer_id, vendor_id, status, total, refunded, currency,
                   (SELECT coalesce(sum(qty), 0) FROM order_lines WHERE order_id = o.id)::int
                       AS units, created_at, updated_at, {_DAY}, cell
              FROM orders o WHERE created_at >= $1 AND created_at < $2
             ORDER BY created_at, id""",
        pa.schema([
            ("order_id", pa.string()), ("group_id", pa.string()), ("buyer_id", pa.string()),
            ("vendor_id", pa.string()), ("status", pa.string()), ("total", pa.int64()),
            ("refunded", pa.int64()), ("currency", pa.string()), ("units", pa.int32()),
            ("created_at", _TS), ("updated_at", _TS), ("day", pa.string()), ("cell", pa.string()),
        ]),
    ),
    "interactions": Table(
        "SELECT min(created_at), max(created_at) FROM interactions",
        f"""SELECT id, user_id, item_kind, item_id, kind, lat, lng, category, price, created_at,
                   {_DAY}, cell
              FROM interactions WHERE created_at >= $1 AND created_at < $2
             ORDER BY created_at, id""",
        pa.schema([
            ("id", pa.int64()), ("user_id", pa.string()), ("item_kind", pa.string()),
            ("item_id", pa.string()), ("kind", pa.string()), ("lat", pa.float64()),
            ("lng", pa.float64()), ("category", pa.string()), ("price", pa.float64()),
            ("created_at", _TS), ("day", pa.string()), ("cell", pa.string()),
        ]),
    ),
    "ledger_entries": Table(  # an entry's day and cell are its transaction's (docs/payments.md)
        "SELECT min(created_at), max(created_at) FROM ledger_transactions",
        """SELECT e.id, e.txn_id, t.source, t.kind, e.account, e.owner, e.order_id, e.amount,
                  e.currency, t.vendor_id, t.created_at,
                  to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
                  coalesce(t.cell, 'none') AS cell
             FROM ledger_transactions t JOIN ledger_entries e ON e.txn_id = t.id
            WHERE t.created_at >= $1 AND t.created_at < $2
            ORDER BY t.created_at, e.id""",
        pa.schema([
            ("id", pa.int64()), ("txn_id", pa.int64()), ("source", pa.string()),
            ("kind", pa.string()), ("account", pa.string()), ("owner", pa.string()),
            ("order_id", pa.string()), ("amount", pa.int64()), ("currency", pa.string()),
            ("vendor_id", pa.string()), ("created_at", _TS), ("day", pa.string()),
            ("cell", pa.string()),
        ]),
    ),
}  # fmt: skip
"""Every table the warehouse export knows, by name."""


def _ranges(first: datetime, last: datetime, days: int) -> list[dict[str, Any]]:
    """[lo, hi) ranges of ``days`` whole UTC days covering first..last."""
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while start <= last:
        end = start + timedelta(days=days)
        out.append({"lo": start.isoformat(), "hi": end.isoformat()})  # strings: tz kept
        start = end
    return out


async def _span(database_url: str, table: Table) -> tuple[datetime | None, datetime | None]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(table.span_sql)
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1]


def _read_batch(batch: dict[str, Any], database_url: str, name: str) -> pa.Table:
    """``map_batches`` body (a Ray task per batch): the table's rows of the batch's ranges."""
    ranges = list(zip(batch["lo"], batch["hi"], strict=True))
    return asyncio.run(_read(database_url, TABLES[name], ranges))


async def _read(database_url: str, table: Table, ranges: list[tuple[Any, Any]]) -> pa.Table:
    conn = await asyncpg.connect(database_url)
    try:
        rows = []
        for lo, hi in ranges:
            rows += await conn.fetch(table.rows_sql, _dt(lo), _dt(hi))
    finally:
        await conn.close()
    columns = {n: [r[n] for r in rows] for n in table.schema.names}
    return pa.Table.from_pydict(columns, schema=table.schema)


def _dt(value: Any) -> datetime:
    """A range end (ISO 8601 with its offset) back as a datetime."""
    return datetime.fromisoformat(str(value))


def export_table(settings: Settings, name: str, out_dir: Path) -> int:
    """Write one table's partitions under ``out_dir/name`` (replaced whole); its row count."""
    assert settings.database_url
    table = TABLES[name]
    final = out_dir / name
    staging = out_dir / f".{name}.{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        first, last = asyncio.run(_span(settings.database_url, table))
        if first is not None and last is not None:
            ranges = _ranges(first, last, settings.warehouse_days_per_task)
            ds = ray.data.from_items(ranges).map_batches(
                cast(Any, _read_batch),  # ray's overloads do not name keyword arguments
                fn_kwargs={"database_url": settings.database_url, "name": name},
                batch_size=1,
                batch_format="numpy",
                num_cpus=0.25,  # each mostly waits on Postgres
            )
            ds.write_parquet(str(staging), partition_cols=PARTITIONS)
        count = pads.dataset(staging, format="parquet", partitioning="hive").count_rows()
        _swap(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return int(count)


def _swap(staging: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old.{uuid.uuid4().hex}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def export(settings: Settings, out_dir: Path, tables: Sequence[str]) -> dict[str, int]:
    """The export of ``tables`` (names of ``TABLES``) into ``out_dir``; rows per table."""
    unknown = sorted(set(tables) - TABLES.keys())
    if unknown:
        raise ValueError(f"unknown table {unknown[0]!r}: one of {', '.join(TABLES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: export_table(settings, name, out_dir) for name in tables}
