"""`hyperlocal up` after a scale (issue 13): a stored placement table names the shards to
start, not ``HL_SHARD_COUNT``, which only seeds a new table (cluster/runtime.py)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import ray

from cluster.config import Settings
from cluster.runtime import Runtime
from models.placement import Placement
from store import placement
from store.db import create_pool, migrate

pytestmark = pytest.mark.integration


async def _database(settings: Settings, name: str, table: Placement | None) -> str:
    """A fresh, migrated database on the session's Postgres, holding ``table``; its URL."""
    assert settings.database_url
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    if table is not None:
        pool = await create_pool(url)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await placement.save(conn, table)
        finally:
            await pool.close()
    return url


async def _drop(settings: Settings, name: str) -> None:
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _stored(url: str) -> Placement | None:
    pool = await create_pool(url)
    try:
        return await placement.load(pool)
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ((("shard-0", "shard-1"), 5), ("shard-0", "shard-1")),  # scaled to 2: kept
        (None, ("shard-0",)),  # a new deployment: HL_SHARD_COUNT seeds the table
    ],
)
def test_up_starts_the_shards_the_stored_table_names(
    settings: Settings, stored: tuple[tuple[str, ...], int] | None, expected: tuple[str, ...]
) -> None:
    name = f"hl_up_{uuid.uuid4().hex[:8]}"
    table = Placement(stored[1], stored[0]) if stored else None
    url = asyncio.run(_database(settings, name, table))
    ours = settings.model_copy(
        update={"database_url": url, "ray_namespace": name, "shard_count": 1}
    )
    runtime = Runtime(ours)
    try:
        runtime.start_ray()  # the session's Ray: nothing new
        kept = runtime.start_shards()
        assert tuple(runtime.shards) == expected
        assert kept.shards == expected
        if table is not None:
            assert kept.version == table.version  # not re-versioned: nothing moved
        after = asyncio.run(_stored(url))
        assert after == kept
        for shard in expected:  # each serves, under its own name
            handle = ray.get_actor(shard, namespace=name)
            assert ray.get(handle.ping.remote(), timeout=60) == shard
    finally:
        for handle in runtime.shards.values():
            ray.kill(handle)  # type: ignore[arg-type]
        asyncio.run(_drop(settings, name))
