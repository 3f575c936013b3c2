"""Postgres's cost of the shard batch statement alone: chat-message batches (or post batches)
written with store/batch_write.py against a private embedded Postgres, one after another on one
connection, each its own durable commit (no BEGIN: the fast path's single statement).

``python -m bench.pg_batch_cost --batches 3000 --per-batch 3`` reports per message and per
batch: WAL records, full-page images and bytes, buffers hit and dirtied (pg_stat_statements),
and CPU of the backend and of every other Postgres process (walwriter, checkpointer,
autovacuum, io workers, the postmaster with the children it reaped) from /proc. Counts are
load-independent; CPU is only as good as the box is quiet. ``--pg-options`` adds server
settings (fsync and synchronous_commit stay on); ``--kind post`` writes the feed's rows (a
``posts`` row and a ``feed:<cell>`` event per post) instead. The schema is this checkout's
migrations, so a migration's effect is this command before and after it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.pg_watch import cpu_by_kind
from models.placement import Placement
from models.streams import Event, compact_json
from store import placement
from store.batch_write import PendingEvent, RecordRow, Table, TableRow, write
from store.db import migrate
from store.embedded import EmbeddedPostgres
from store.feed_store import POSTS

MESSAGES = Table(  # as actors/chat_ops.py declares it (actors/ is not imported here)
    "messages",
    (
        ("id", "text"),
        ("room_id", "text"),
        ("cell", "text"),
        ("sender_id", "text"),
        ("text", "text"),
        ("offset", "bigint"),
        ("created_at", "timestamptz"),
    ),
)
_DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
STATS = "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
CELL = "8828308281fffff"
Writer = Callable[..., Awaitable[bool]]


class Workload:
    """Batches of chat messages in ``rooms`` rooms (or posts in ``rooms`` cells)."""

    def __init__(self, kind: str, rooms: int, per_batch: int, seed: int, words: int = 0) -> None:
        self.kind, self.per_batch, self.words = kind, per_batch, words
        self.rng = random.Random(seed)
        vocabulary = random.Random(seed + 1)  # the same words on both sides
        self.vocabulary = [
            "".join(vocabulary.choice("abcdefghiklmnoprstuvwy") for _ in range(3 + i % 7))
            for i in range(2000)
        ]
        prefix = "room:cell-" if kind == "chat" else "feed:"
        self.streams = [f"{prefix}{CELL[:-3]}{i:03d}" for i in range(rooms)]
        self.heads = dict.fromkeys(self.streams, 0)
        self.n = 0

    def batch(self) -> tuple[list[tuple[str, str, int, int]], list[Any]]:
        chosen = [self.rng.choice(self.streams) for _ in range(self.per_batch)]
        before = {s: self.heads[s] for s in chosen}
        rows: list[Any] = []
        for stream in chosen:
            self.n += 1
            self.heads[stream] += 1
            offset = self.heads[stream]
            now = datetime.now(UTC)
            user = f"u{self.rng.randrange(1000):04d}"
            text = self.text()
            ident = f"m{self.n:012d}{self.rng.getrandbits(40):010x}"
            if self.kind == "chat":
                data = {"message": {"id": ident, "room_id": stream[5:], "cell": CELL,
                                    "sender_id": user, "text": text, "created_at": now,
                                    "offset": offset}}  # fmt: skip
                rows.append(MESSAGES.row(ident, stream[5:], CELL, user, text, offset, now))
                ev, op = "chat.message", "chat.send"
            else:
                post = {"id": ident, "cell": stream[5:], "author_id": user, "text": text,
                        "lat": 12.97, "lng": 77.59, "media": [], "like_count": 0,
                        "comment_count": 0, "created_at": now.isoformat(),
                        "created_ms": int(now.timestamp() * 1000), "shared_from": None}  # fmt: skip
                data = {"post": post}
                rows.append(POSTS.row(ident, stream[5:], user, text, 12.97, 77.59, "[]", now))
                ev, op = "post.created", "post.create"
            event = Event(stream, "e1", offset, ev, data)
            rows.append(event)
            rows.append(RecordRow(user, f"k{self.n}", op, event.data_json, "f" * 24))
        heads = [(s, "e1", before[s], self.heads[s]) for s in sorted(before)]
        return heads, rows

    def text(self) -> str:
        """64 x's, or ``words`` words of the vocabulary (what a post's search index sees: ten
        words are ~60 trigrams and ~10 lexemes, 64 x's are 4 trigrams and one lexeme)."""
        if not self.words:
            return "x" * 64
        return " ".join(self.rng.choice(self.vocabulary) for _ in range(self.words))


def _table_rows(rows: list[Any]) -> int:
    return sum(isinstance(r, TableRow) for r in rows)


def _run_ns(pid: int) -> int:
    """CPU time of ``pid`` so far in ns (/proc/PID/schedstat: finer than /proc/PID/stat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


_STATEMENT_COUNTS = """
SELECT coalesce(sum(calls) FILTER (WHERE toplevel AND query LIKE 'WITH f AS%'), 0)::bigint
           AS batches,
       coalesce(sum(shared_blks_hit) FILTER (WHERE toplevel), 0)::bigint AS hit,
       coalesce(sum(shared_blks_dirtied) FILTER (WHERE toplevel), 0)::bigint AS dirtied,
       coalesce(sum(wal_records) FILTER (WHERE toplevel), 0)::bigint AS wal_records,
       coalesce(sum(wal_fpi) FILTER (WHERE toplevel), 0)::bigint AS wal_fpi,
       coalesce(sum(wal_bytes) FILTER (WHERE toplevel), 0)::bigint AS wal_bytes,
       coalesce(sum(calls) FILTER (WHERE NOT toplevel), 0)::bigint AS nested_statements
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
   AND query NOT LIKE '%pg_stat%' AND query NOT LIKE '%CHECKPOINT%'
"""
_TOP = """
SELECT calls, total_exec_time AS ms, toplevel,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS q
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) AND query NOT LIKE '%pg_stat%'
 ORDER BY calls DESC, total_exec_time DESC LIMIT 8
"""


class Side:
    """One variant: its own database in the cluster (the schema with ``sql`` applied), its
    own connection and workload, its backend's CPU and its statements' counts."""

    def __init__(
        self, name: str, url: str, sql: list[str], args: argparse.Namespace, writer: Writer = write
    ) -> None:
        self.name, self.url, self.sql, self.write = name, url, sql, writer
        self.work = Workload(args.kind, args.rooms, args.per_batch, args.seed, args.words)
        self.rows = 0
        self.ns = 0

    async def prepare(self) -> None:
        await migrate(self.url)
        setup = await asyncpg.connect(self.url)
        await setup.set_type_codec(
            "jsonb", encoder=compact_json, decoder=json.loads, schema="pg_catalog"
        )
        await placement.save(setup, Placement(1, ("s0",)))
        await setup.execute(
            "INSERT INTO streams (name, epoch, last_offset) SELECT unnest($1::text[]), 'e1', 0",
            self.work.streams,
        )
        for sql in self.sql:  # an experiment's schema change, before the warm-up
            await setup.execute(sql)
        await setup.close()
        self.conn = await asyncpg.connect(self.url)
        self.backend = await self.conn.fetchval("SELECT pg_backend_pid()")

    async def batches(self, n: int, *, measured: bool) -> None:
        start = _run_ns(self.backend)
        for _ in range(n):
            heads, rows = self.work.batch()
            assert await self.write(self.conn, heads, rows, ("s0", 1))
            self.rows += _table_rows(rows) if measured else 0
        if measured:
            self.ns += _run_ns(self.backend) - start

    async def flush_gin(self) -> None:
        """Empty the posts' GIN pending lists, on this side's backend (its CPU counted)."""
        start = _run_ns(self.backend)
        await self.conn.fetchval(_GIN_FLUSH)
        self.ns += _run_ns(self.backend) - start


_GIN_FLUSH = """
SELECT count(gin_clean_pending_list(i.indexrelid)) FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
 WHERE i.indrelid = 'posts'::regclass AND a.amname = 'gin'
"""


async def _set(admin: asyncpg.Connection, side: Side, setting: str) -> None:
    """Side b's chunks run with ``setting`` (NAME=VALUE, one a reload applies), side a's
    with the server's default; the backend reads its configuration before the next batch."""
    name, value = setting.split("=", 1)
    if side.name == "b":
        await admin.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    else:
        await admin.execute(f"ALTER SYSTEM RESET {name}")
    await admin.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(0.05)
    await side.conn.fetchval("SELECT 1")  # an idle backend reloads after its next command
    want = await side.conn.fetchval(f"SELECT current_setting('{name}')")
    assert side.name == "a" or want == value, (name, want, value)


async def run(args: argparse.Namespace, pg: EmbeddedPostgres, postmaster: int) -> dict[str, Any]:
    admin = await asyncpg.connect(pg.url)
    await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    me = await admin.fetchval("SELECT pg_backend_pid()")
    sides = [Side("a", pg.url, args.sql, args)]
    if args.writer_b:  # another batch_write.py (e.g. ``git show REV:store/batch_write.py``)
        spec = importlib.util.spec_from_file_location("writer_b", args.writer_b)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["writer_b"] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
        setattr(module, "RecordRow", RecordRow)  # noqa: B010 - the rows we make are ours
        setattr(module, "PendingEvent", PendingEvent)  # noqa: B010
        args.sql_b = args.sql_b or ["SELECT 1"]
    if args.setting_b:
        args.sql_b = args.sql_b or ["SELECT 1"]
    if args.sql_b:  # a second database of the same cluster, the batches alternating
        await admin.execute("DROP DATABASE IF EXISTS hl_variant_b")
        await admin.execute("CREATE DATABASE hl_variant_b")
        url_b = pg.url.rsplit("/", 1)[0] + "/hl_variant_b"
        sides.append(Side("b", url_b, args.sql_b, args, module.write if args.writer_b else write))
    for side in sides:
        await side.prepare()
        await side.batches(args.warmup, measured=False)
    await admin.execute("CHECKPOINT")  # every run starts after one (full-page images)
    await admin.execute("SELECT pg_stat_statements_reset()")
    perf = None
    if args.perf:  # the first side's backend over the window (perf report -i FILE)
        perf = subprocess.Popen(  # noqa: ASYNC220 - a bench's tool, started once
            ["perf", "record", "-q", "-g", "-p", str(sides[0].backend), "-o", str(args.perf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)
    cpu0, t0 = cpu_by_kind(postmaster, {me}), time.monotonic()
    done = 0
    while done < args.batches:  # in chunks, alternating: the box's load drifts for both
        n = min(args.chunk, args.batches - done)
        for side in sides:
            if args.setting_b:  # the server setting of this side's chunk
                await _set(admin, side, args.setting_b)
            await side.batches(n, measured=True)
        done += n
    for side in sides:  # what the posts' GIN indexes left in their pending lists is theirs too
        await side.flush_gin()
    wall = time.monotonic() - t0
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    await asyncio.sleep(1.2)  # the backends' statistics flushed
    cpu1 = cpu_by_kind(postmaster, {me})
    out: dict[str, Any] = {
        "kind": args.kind,
        "batches": args.batches,
        "per_batch": args.per_batch,
        "wall_ms_per_batch": 1e3 * wall / args.batches / len(sides),
    }
    for side in sides:
        datname = side.url.rsplit("/", 1)[1]
        counts = dict(await admin.fetchrow(_STATEMENT_COUNTS, datname) or {})
        per = max(side.rows, 1)
        out[side.name] = {
            "sql": side.sql,
            "rows": side.rows,
            "backend_cpu_us_per_row": round(side.ns / 1e3 / per, 1),
            "per_row": {k: round(v / per, 3) for k, v in counts.items()},
            "statements": [
                f"{r['calls'] / per:6.3f} calls {r['ms'] * 1e3 / per:7.1f} µs"
                f" {'top' if r['toplevel'] else 'sub'} {r['q']}"
                for r in await admin.fetch(_TOP, datname)
            ],
        }
        out[side.name]["plans"] = [  # the batch statement's: generic (planned once) or custom
            dict(r)
            for r in await side.conn.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'WITH f AS%'"
            )
        ]
        await side.conn.close()
    rows = sum(side.rows for side in sides)
    out["cluster_cpu_us_per_row"] = {
        k: round(1e6 * (cpu1.get(k, 0) - cpu0.get(k, 0)) / rows, 1)
        for k in cpu1
        if cpu1.get(k, 0) != cpu0.get(k, 0)
    }
    out["cluster_cpu_us_per_row_total"] = round(sum(out["cluster_cpu_us_per_row"].values()), 1)
    await admin.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("chat", "post"), default="chat")
    p.add_argument("--batches", type=int, default=3000)
    p.add_argument("--per-batch", type=int, default=3, help="messages (posts) a batch")
    p.add_argument("--rooms", type=int, default=50, help="rooms (cells) the rows go to")
    p.add_argument("--warmup", type=int, default=300, help="batches before the window")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--words",
        type=int,
        default=0,
        help="texts of this many generated words (default: 64 x's, as earlier runs wrote)",
    )
    p.add_argument("--pg-options", default="", help="more server settings (-c name=value)")
    p.add_argument("--keep", type=Path, help="use (and keep) this data dir, e.g. for perf")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--sql", action="append", default=[], help="run this first (experiments)")
    p.add_argument(
        "--sql-b",
        action="append",
        default=[],
        help="compare: a second database with this run first, batches alternating with the first",
    )
    p.add_argument("--writer-b", type=Path, help="compare: side b writes with this batch_write.py")
    p.add_argument(
        "--setting-b",
        metavar="NAME=VALUE",
        help="compare: side b's chunks run with this reloadable server setting (durability"
        " settings stay as they are: fsync and synchronous_commit cannot be named)",
    )
    p.add_argument("--chunk", type=int, default=25, help="batches a side writes in a row")
    p.add_argument("--perf", type=Path, help="record the backend with perf -g into this file")
    args = p.parse_args(argv)
    if args.setting_b and args.setting_b.split("=")[0].strip() in _DURABILITY:
        p.error("fsync, synchronous_commit and full_page_writes stay on")
    root = args.keep or Path(tempfile.mkdtemp(prefix="hl-pgcost-"))
    pg = EmbeddedPostgres(root, extra_options=f"{STATS} {args.pg_options}".strip())
    pg.start()
    try:
        postmaster = int((pg.pgdata / "postmaster.pid").read_text().splitlines()[0])
        out = asyncio.run(run(args, pg, postmaster))
    finally:
        pg.stop()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
