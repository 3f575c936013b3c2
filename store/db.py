"""Postgres access: the connection pool and versioned migrations.

Migrations are the ``store/migrations/NNNN_name.sql`` files, applied in order, each in its own
transaction, under an advisory lock so that concurrent starters (several gateways) apply each
exactly once. The applied set is recorded in ``schema_migrations``.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from models.streams import compact_json, parse_json

log = logging.getLogger("hyperlocal.db")

RawConn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
"""A connection itself: one of its own (``asyncpg.connect``) or one lent by the pool."""


class LazyTransaction:
    """A connection whose transaction begins with the first statement sent through it.

    A shard batch whose commands write only the rows of the batch's one statement (a chat
    message, a post) then sends that one statement alone, in Postgres's implicit transaction
    of a single statement (atomic and, with ``synchronous_commit``, durable at its reply), and
    saves the ``BEGIN`` and ``COMMIT`` round trips; a batch that sends anything before it runs
    in one transaction as before. Owns nothing but that choice: ``finish`` commits what was
    begun, ``abort`` rolls it back.
    """

    def __init__(self, conn: RawConn) -> None:
        self.raw = conn
        self._tx: Any = None

    @property
    def begun(self) -> bool:
        return self._tx is not None

    async def _conn(self) -> RawConn:
        if self._tx is None:
            self._tx = self.raw.transaction()
            await self._tx.start()
        return self.raw

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        return await (await self._conn()).fetch(query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        return await (await self._conn()).fetchrow(query, *args, timeout=timeout)

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        return await (await self._conn()).fetchval(query, *args, timeout=timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        return await (await self._conn()).execute(query, *args, timeout=timeout)

    async def executemany(self, command: str, args: Any, *, timeout: float | None = None) -> None:
        await (await self._conn()).executemany(command, args, timeout=timeout)

    async def finish(self) -> None:
        if self._tx is not None:
            await self._tx.commit()

    async def abort(self) -> None:
        """Roll back what was begun (nothing to do on a connection already lost: its
        transaction is gone with it)."""
        if self._tx is not None and not self.raw.is_closed():
            await self._tx.rollback()


Conn: TypeAlias = RawConn | LazyTransaction
"""A connection: one of its own (``asyncpg.connect``) or one lent by the pool
(``pool.acquire()``), which asyncpg hands out as a proxy that type checkers do not see as a
``Connection``), or a shard batch's ``LazyTransaction``. Writers take one: they run inside the
caller's transaction."""

Db: TypeAlias = asyncpg.Pool | Conn
"""What a reader takes: the pool, or a connection (to read inside a transaction)."""


_MIGRATION_LOCK = 0x68_6C_6D_67  # "hlmg"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=compact_json, decoder=parse_json, schema="pg_catalog"
    )


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Release hook: nothing to undo. Pooled connections never change session state (no SET,
    LISTEN, advisory locks or open cursors: the migration lock takes its own connection), and
    asyncpg itself rolls back a transaction left open. This saves the default reset's round
    trip (``RESET ALL; UNLISTEN *; ...``) on every release, i.e. on every pooled query."""


async def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, generic_plans: bool = False
) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python objects.

    ``generic_plans`` plans each prepared statement once per connection
    (``plan_cache_mode = force_generic_plan``) instead of Postgres's default of re-planning
    while a custom plan looks cheaper. Only for statements whose plan does not depend on their
    values: a coalesced ``unnest`` of arrays (store/coalesce.py) is costed as 10 rows whatever
    the arrays hold, so Postgres re-plans it at every call (about 1 ms of a checkout's CPU,
    measured in docs/benchmarks.md) for the same plan. A statement matching a partial index
    by a parameter (``status = $1``) must not run on such a pool.
    """
    settings = {"plan_cache_mode": "force_generic_plan"} if generic_plans else None
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_session_state,
        command_timeout=30,
        server_settings=settings,
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every shipped migration, in order."""
    found = []
    for entry in resources.files("store.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


async def migrate(url: str) -> list[int]:
    """Apply pending migrations; return the versions applied now."""
    conn = await asyncpg.connect(url)
    applied_now: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %04d_%s", version, name)
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied_now


def row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


def one(record: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always yields one (``INSERT ... RETURNING``, ``SELECT
    EXISTS (...)``, an ``UPDATE ... RETURNING`` of a row the caller knows is there): a missing row
    is a broken invariant, not an answer."""
    if record is None:
        raise RuntimeError("the statement returned no row")
    return record
