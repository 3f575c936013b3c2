"""Vendor analytics: the dashboard and the export of one vendor, for REST and GraphQL alike.

``AnalyticsService`` owns no state: it decides whose figures a viewer reads
(models/analytics.py: ``target_vendor``: a vendor its own, an admin any vendor's), reads the
rollups (store/analytics_store.py) and shapes the answer. The rollups are kept by ``rollup``,
which the scheduled Ray task runs (cluster/analytics_jobs.py); a dashboard never reads a raw
order, so its figures are as fresh as the last run (``as_of`` says when it began).

Exports stream: CSV is written per chunk of rows as they come from the cursor; Parquet one row
group per chunk (pyarrow, in a thread: rule 6), the bytes of each handed on as soon as they are
written, the footer last. Everything that can be refused (range, format, access) is checked
before the first byte, so a refusal is a typed error, never a truncated file.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.config import Settings
from models import analytics as an
from models.errors import BadRequest, NotFound
from store import analytics_store as st


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """What a caller asks for, as given (strings from a query string or GraphQL arguments)."""

    first: str | None = None
    last: str | None = None
    granularity: str | None = None
    vendor_id: str | None = None


@dataclass(frozen=True)
class Export:
    """A validated export: its name and type, and the body, produced as it is consumed."""

    filename: str
    content_type: str
    chunks: AsyncIterator[bytes]


EXPORT_SCHEMA = pa.schema([
    ("order_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")),
    ("status", pa.string()), ("buyer_id", pa.string()), ("listing_id", pa.string()),
    ("title", pa.string()), ("qty", pa.int32()), ("unit_price", pa.int64()),
    ("line_total", pa.int64()), ("currency", pa.string()), ("order_total", pa.int64()),
    ("order_refunded", pa.int64()), ("cell", pa.string()),
])  # fmt: skip
assert tuple(EXPORT_SCHEMA.names) == st.EXPORT_COLUMNS


class AnalyticsService:
    """The vendor analytics use cases; ``settings`` gives the limits (docs/config.md)."""

    def __init__(self, settings: Settings, db: asyncpg.Pool) -> None:
        self.settings = settings
        self.db = db

    async def viewer(self, user_id: str, roles: frozenset[str]) -> an.Viewer:
        """A signed-in user as a viewer: the vendor they are (if any) and their roles."""
        vendor_id = await self.db.fetchval("SELECT id FROM vendors WHERE user_id = $1", user_id)
        return an.Viewer(vendor_id, roles)

    async def roles(self, user_id: str) -> frozenset[str]:
        """A user's roles as Postgres has them now (GraphQL callers carry only their id)."""
        roles = await self.db.fetchval("SELECT roles FROM users WHERE id = $1", user_id)
        return frozenset(roles or ())

    async def _target(self, viewer: an.Viewer, vendor_id: str | None) -> str:
        target = an.target_vendor(viewer, vendor_id)
        if target != viewer.vendor_id and not await st.vendor_exists(self.db, target):
            raise NotFound("no such vendor")
        return target

    def _range(self, q: AnalyticsQuery, today: date | None) -> an.Range:
        return an.parse_range(
            q.first, q.last, q.granularity, today or datetime.now(UTC).date(),
            self.settings.analytics_max_days,
        )  # fmt: skip

    async def dashboard(
        self, viewer: an.Viewer, q: AnalyticsQuery, today: date | None = None
    ) -> dict[str, Any]:
        """``GET /api/v1/vendor/analytics``'s answer (docs/analytics.md)."""
        rng = self._range(q, today)
        vendor_id = await self._target(viewer, q.vendor_id)
        rows = await st.dashboard(
            self.db, vendor_id, rng.first, rng.last, self.settings.analytics_top_listings
        )
        series = an.series(rng, [dict(r) for r in rows.series])
        orders = sum(int(r["orders"]) for r in rows.series)
        return {
            "vendor_id": vendor_id,
            "from": rng.first.isoformat(),
            "to": rng.last.isoformat(),
            "granularity": rng.granularity,
            "timezone": an.TIMEZONE,
            "as_of": rows.as_of.isoformat() if rows.as_of else None,
            "series": series,
            "funnel": {"views": rows.views, "carts": rows.carts, "orders": orders},
            "top_listings": [_top(r) for r in rows.top],
            "customers": rows.customers,
            "repeat_customers": rows.repeat,
            "repeat_customer_rate": an.repeat_rate(rows.customers, rows.repeat),
            "hour_weekday": an.heatmap(dict(r) for r in rows.heatmap),
        }

    async def export(
        self, viewer: an.Viewer, q: AnalyticsQuery, fmt: str | None, today: date | None = None
    ) -> Export:
        """The vendor's order lines of the range as CSV or Parquet (docs/analytics.md)."""
        if fmt not in ("csv", "parquet"):
            raise BadRequest("format: csv or parquet")
        rng = self._range(q, today)
        vendor_id = await self._target(viewer, q.vendor_id)
        rows = st.export_rows(
            self.db, vendor_id, rng.first, rng.last, self.settings.analytics_export_chunk_rows
        )
        name = f"orders-{vendor_id}-{rng.first.isoformat()}-{rng.last.isoformat()}.{fmt}"
        if fmt == "csv":
            return Export(name, "text/csv", _csv(rows))
        return Export(name, "application/vnd.apache.parquet", _parquet(rows))


def _top(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "listing_id": r["listing_id"], "title": r["title"], "currency": r["currency"],
        "orders": int(r["orders"]), "units": int(r["units"]), "revenue": int(r["revenue"]),
    }  # fmt: skip


def _value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def _csv(chunks: AsyncIterator[list[asyncpg.Record]]) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(st.EXPORT_COLUMNS)
    async for rows in chunks:
        writer.writerows([_value(v) for v in r.values()] for r in rows)
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
    if out.tell():  # the header of an export without rows
        yield out.getvalue().encode()


class _Sink(io.RawIOBase):
    """A write-only file pyarrow writes Parquet to; ``drain`` takes what was written so far."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._buf += data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


def _table(rows: list[asyncpg.Record]) -> pa.Table:
    columns = {name: [r[name] for r in rows] for name in st.EXPORT_COLUMNS}
    return pa.Table.from_pydict(columns, schema=EXPORT_SCHEMA)


async def _parquet(chunks: AsyncIterator[list[asyncpg.Record]]) -> AsyncIterator[bytes]:
    sink = _Sink()
    writer = pq.ParquetWriter(sink, EXPORT_SCHEMA, compression="zstd")
    try:
        async for rows in chunks:
            await asyncio.to_thread(writer.write_table, _table(rows))
            if data := sink.drain():
                yield data
    finally:
        await asyncio.to_thread(writer.close)
    yield sink.drain()


async def run_rollup(database_url: str, overlap_s: float) -> st.RollupRun:
    """One rollup run on a connection of its own (what the scheduled Ray task calls)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await st.rollup(conn, overlap_s)
    finally:
        await conn.close()
