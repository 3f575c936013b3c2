"""What Postgres does per row of one table while a benchmark runs: statements, buffers, WAL and
CPU by process, per message (or post) and per batch.

``python -m bench.pg_watch --bench-pid PID`` follows a running fanout benchmark (bench.chat_fanout,
bench.feed_fanout): it finds the stack's data dir from the environment of the bench's
``cluster.cli`` descendant (``HL_DATA_DIR``), connects to that stack's embedded Postgres, and
takes a snapshot every ``--every-s`` until the bench ends. The report covers the **active
window**: from the last snapshot before rows of ``--table`` began to arrive to the first one after
they stopped. Counts there are load-independent (statements, buffers hit and dirtied, WAL
records, full-page images and bytes, commits, trigger calls: divide by the rows of the table);
CPU is each Postgres process's utime + stime from /proc, grouped by its kind (backends,
walwriter, checkpointer, autovacuum, io workers, the postmaster with the children it reaped), so
it is only as good as the box is quiet.

Statements and trigger calls need pg_stat_statements in the stack (``--ours-env
'HL_EMBEDDED_PG_OPTIONS=-c shared_preload_libraries=pg_stat_statements -c
pg_stat_statements.track=all -c track_functions=pl'``); without it the rest is still reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.targets import stack_dsn

CLK_TCK = os.sysconf("SC_CLK_TCK")

_STATEMENTS = """
SELECT queryid::text AS id, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query,
       toplevel, calls, total_exec_time AS ms, rows, shared_blks_hit AS hit,
       shared_blks_read AS read, shared_blks_dirtied AS dirtied,
       shared_blks_written AS written, wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes
  FROM pg_stat_statements
 WHERE query NOT LIKE '%pg_stat%' AND dbid = (SELECT oid FROM pg_database
                                             WHERE datname = current_database())
"""
_TABLES = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, autovacuum_count,
       autoanalyze_count FROM pg_stat_user_tables
"""
_WAL = (
    "SELECT wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes, wal_buffers_full FROM pg_stat_wal"
)
_DB = """
SELECT xact_commit, xact_rollback, blks_hit, blks_read, tup_inserted, tup_updated
  FROM pg_stat_database WHERE datname = current_database()
"""
_FUNCS = "SELECT funcname, calls, self_time AS ms FROM pg_stat_user_functions"
_CHECKPOINTS = "SELECT num_timed, num_requested, buffers_written FROM pg_stat_checkpointer"


_KINDS = (
    "walwriter",
    "checkpointer",
    "background writer",
    "autovacuum launcher",
    "autovacuum worker",
    "io worker",
    "logical replication",
    "walsummarizer",
)


def _kind(cmdline: str) -> str:
    """A Postgres process's kind from its title (``postgres: walwriter`` ...)."""
    title = cmdline.removeprefix("postgres: ")
    for kind in _KINDS:
        if title.startswith(kind):
            return kind
    return "backends" if title.count(" ") >= 2 else title.split(" ")[0] or "postmaster"


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state, ppid, ...)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _ticks(fields: list[str], *, children: bool = False) -> int:
    used = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        used += int(fields[13]) + int(fields[14])  # cutime, cstime: the children it reaped
    return used


def cpu_by_pid(postmaster: int, skip: set[int]) -> dict[int, tuple[str, float]]:
    """(kind, CPU seconds so far) of every live process of one Postgres cluster: the
    postmaster and its children (found from /proc by their parent), their kind from their
    title."""
    out = {postmaster: ("postmaster", _ticks(_stat(postmaster)) / CLK_TCK)}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(int(entry))
            if int(fields[1]) != postmaster:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            out[int(entry)] = (_kind(title), _ticks(fields) / CLK_TCK)
    return out


def cpu_by_kind(postmaster: int, skip: set[int]) -> dict[str, float]:
    """CPU seconds so far of one Postgres cluster's live processes by kind, the postmaster
    with the children it reaped (for two readings around a window in which no process that
    was running before it ends: else its whole life lands in the window)."""
    out: dict[str, float] = {}
    for kind, seconds in cpu_by_pid(postmaster, skip).values():
        out[kind] = out.get(kind, 0.0) + seconds
    out["postmaster"] += (
        _ticks(_stat(postmaster), children=True) - _ticks(_stat(postmaster))
    ) / CLK_TCK
    return out


def cpu_between(snaps: list[Snapshot]) -> dict[str, float]:
    """CPU seconds by kind over consecutive snapshots: each process's growth from one to the
    next (a process born in between counts from its start), so a backend that ends inside the
    window takes none of its earlier life with it (it loses its last interval at most)."""
    out: dict[str, float] = {}
    for before, after in itertools.pairwise(snaps):
        for pid, (kind, seconds) in after.cpu.items():
            grown = seconds - before.cpu.get(pid, (kind, 0.0))[1]
            out[kind] = out.get(kind, 0.0) + max(grown, 0.0)
    return out


def find_data_dir(bench_pid: int, timeout_s: float) -> Path:
    """``HL_DATA_DIR`` of the bench's ``cluster.cli`` descendant (the stack under test)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in psutil.Process(bench_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "cluster.cli" in " ".join(proc.cmdline()):
                    value = proc.environ().get("HL_DATA_DIR")
                    if value and (Path(value) / "pg" / "postmaster.pid").exists():
                        return Path(value)
        time.sleep(0.5)
    raise SystemExit(f"no cluster.cli with a running Postgres under pid {bench_pid}")


@dataclass
class Snapshot:
    at: float
    statements: dict[tuple[str, bool], dict[str, Any]]
    tables: dict[str, dict[str, int]]
    wal: dict[str, int]
    db: dict[str, int]
    funcs: dict[str, dict[str, float]]
    checkpoints: dict[str, int]
    cpu: dict[int, tuple[str, float]] = field(default_factory=dict)

    def rows(self, table: str) -> int:
        return self.tables.get(table, {}).get("n_tup_ins", 0)


async def snapshot(
    conn: asyncpg.Connection, postmaster: int, me: int, statements: bool
) -> Snapshot:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    stmts: dict[tuple[str, bool], dict[str, Any]] = {}
    if statements:
        for r in await conn.fetch(_STATEMENTS):
            stmts[(r["id"], r["toplevel"])] = dict(r)
    tables = {r["relname"]: dict(r) for r in await conn.fetch(_TABLES)}
    wal = dict(await conn.fetchrow(_WAL) or {})
    db = dict(await conn.fetchrow(_DB) or {})
    funcs = {r["funcname"]: dict(r) for r in await conn.fetch(_FUNCS)}
    checkpoints = dict(await conn.fetchrow(_CHECKPOINTS) or {})
    cpu = cpu_by_pid(postmaster, {me})
    return Snapshot(time.monotonic(), stmts, tables, wal, db, funcs, checkpoints, cpu)


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {k: b[k] - a.get(k, 0) for k, v in b.items() if isinstance(v, int | float)}


def active_window(snaps: list[Snapshot], table: str) -> list[Snapshot]:
    """The snapshots around the rows of ``table``: from the last before they began to the
    first after they stopped."""
    counts = [s.rows(table) for s in snaps]
    start = next((i for i in range(1, len(counts)) if counts[i] > counts[i - 1]), 1) - 1
    end = max((i for i in range(1, len(counts)) if counts[i] > counts[i - 1]), default=start)
    return snaps[start : end + 1]


_PER_ROW = ("calls", "ms", "hit", "dirtied", "wal_records", "wal_fpi", "wal_bytes")


def report(window: list[Snapshot], table: str, batch_marker: str) -> dict[str, Any]:
    """Per row of ``table`` and per batch (calls of the statements naming ``batch_marker``)."""
    a, b = window[0], window[-1]
    rows = b.rows(table) - a.rows(table)
    per = max(rows, 1)
    stmts = []
    for key, now in b.statements.items():
        d = _delta(a.statements.get(key, {}), now)
        if d.get("calls", 0) > 0:
            stmts.append({"query": now["query"], "toplevel": now["toplevel"], **d})
    batches = sum(s["calls"] for s in stmts if s["toplevel"] and batch_marker in s["query"])
    stmts.sort(key=lambda s: -s["calls"])
    cpu = cpu_between(window)
    return {
        "table": table,
        "rows": rows,
        "seconds": b.at - a.at,
        "batches": batches,
        "rows_per_batch": rows / batches if batches else None,
        "wal_per_row": {k: v / per for k, v in _delta(a.wal, b.wal).items()},
        "db_per_row": {k: v / per for k, v in _delta(a.db, b.db).items()},
        "cpu_us_per_row": {k: 1e6 * v / per for k, v in sorted(cpu.items()) if v},
        "cpu_us_per_row_total": 1e6 * sum(cpu.values()) / per,
        "checkpoints": _delta(a.checkpoints, b.checkpoints),
        "tables": {
            name: d
            for name, t in b.tables.items()
            if any((d := _delta(a.tables.get(name, {}), t)).values())
        },
        "functions": {
            name: {k: v / per for k, v in _delta(a.funcs.get(name, {}), f).items()}
            for name, f in b.funcs.items()
            if f["calls"] != a.funcs.get(name, {}).get("calls", 0)
        },
        "statements_per_row": [
            {
                "query": s["query"],
                "top": s["toplevel"],
                **{k: s[k] / per for k in _PER_ROW},
            }
            for s in stmts
        ],
    }


def show(out: dict[str, Any]) -> str:
    lines = [
        f"{out['rows']} rows of {out['table']} in {out['seconds']:.1f} s, {out['batches']} batches"
        f" ({out['rows_per_batch'] or 0:.2f} rows a batch)",
        "WAL per row: " + ", ".join(f"{k} {v:.2f}" for k, v in out["wal_per_row"].items()),
        "database per row: " + ", ".join(f"{k} {v:.2f}" for k, v in out["db_per_row"].items()),
        f"CPU µs per row (loaded box): total {out['cpu_us_per_row_total']:.1f}; "
        + ", ".join(f"{k} {v:.1f}" for k, v in out["cpu_us_per_row"].items()),
        f"checkpoints: {out['checkpoints']}",
        "tables: "
        + "; ".join(
            f"{n} " + " ".join(f"{k}={v:g}" for k, v in d.items() if v)
            for n, d in out["tables"].items()
        ),
        "functions per row: "
        + "; ".join(
            f"{n} calls {d['calls']:.3f} ms {d['ms']:.4f}" for n, d in out["functions"].items()
        ),
        "statements per row (calls, ms, hit, dirtied, WAL records, FPI, bytes):",
    ]
    for s in out["statements_per_row"][:25]:
        lines.append(
            f"  {s['calls']:6.3f} {s['ms']:7.4f} {s['hit']:6.2f} {s['dirtied']:5.2f}"
            f" {s['wal_records']:5.2f} {s['wal_fpi']:5.3f} {s['wal_bytes']:7.1f}"
            f" {'top' if s['top'] else '   '} {s['query']}"
        )
    return "\n".join(lines)


async def _connect(data_dir: Path, timeout_s: float) -> asyncpg.Connection:
    """A connection once the stack's Postgres listens and its schema is migrated."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = await asyncpg.connect(stack_dsn(data_dir))
            if await conn.fetchval("SELECT to_regclass('messages') IS NOT NULL"):
                return conn
            await conn.close()
        except (OSError, IndexError, ValueError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def watch(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = find_data_dir(args.bench_pid, args.timeout_s)
    conn = await _connect(data_dir, args.timeout_s)
    # read once the server listens: initdb's single-user run leaves its own (negative) pid
    postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
    me = await conn.fetchval("SELECT pg_backend_pid()")
    statements = bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
        )
    )
    if not statements:
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("CREATE EXTENSION pg_stat_statements")
            statements = True
    note = f"watching {data_dir} (postmaster {postmaster}, statements {statements})"
    print(note, file=sys.stderr)
    snaps: list[Snapshot] = []
    try:
        while psutil.pid_exists(args.bench_pid):
            snaps.append(await snapshot(conn, postmaster, me, statements))
            await asyncio.sleep(args.every_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, psutil.Error):
        pass  # the stack went down with the bench: the snapshots so far are the run
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    if len(snaps) < 2:
        raise SystemExit("fewer than two snapshots")
    return report(active_window(snaps, args.table), args.table, args.batch_marker)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench-pid", type=int, required=True, help="the benchmark's process")
    p.add_argument("--table", default="messages", help="count per row of this table")
    p.add_argument("--batch-marker", default="WITH f AS (", help="how the batch statement begins")
    p.add_argument("--every-s", type=float, default=1.0)
    p.add_argument("--timeout-s", type=float, default=300.0, help="wait for the stack this long")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    out = asyncio.run(watch(args))
    print(show(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
