"""Fencing (rule 2): a shard that still believes it owns a cell after the placement moved it
writes nothing. Every batch checks, in its own statement, that the version its commands' owner
was checked at is still in force (store/migrations/0009_fencing.sql); a placement change waits
for the batches in flight and fails every later one, which answers ``moved``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import h3
import pytest

from actors.cell_host import CellHost
from actors.registry import HANDLERS, READERS
from cluster.config import Settings
from models.feed import PostCreate
from models.placement import Placement, cell_key
from store import placement
from store.db import create_pool
from tests.integration.client import Api

pytestmark = pytest.mark.integration

LAT, LNG = -48.8767, -123.3933  # Point Nemo: no other test posts there


async def _put(pool: asyncpg.Pool, change: Any) -> Placement:
    async with pool.acquire() as conn, conn.transaction():
        current = await placement.load(conn)
        assert current is not None
        table: Placement = change(current)
        await placement.save(conn, table)
        return table


async def test_a_stale_owner_writes_nothing_once_its_cell_has_moved(
    api: Api, settings: Settings
) -> None:
    user = await api.signup("fenced")
    cell = str(h3.latlng_to_cell(LAT, LNG, settings.h3_resolution))
    key = cell_key(cell)
    pool = await create_pool(settings.database_url)
    table = await placement.load(pool)
    assert table is not None
    owner = table.owner(key)
    others = [s for s in table.shards if s != owner]
    if not others:
        pytest.skip("needs two shards")
    # A twin of the cell's owner (as a zombie incarnation would be): same name, same table.
    host = CellHost(owner, settings, dict(HANDLERS), dict(READERS))
    await host.ready()
    loop = asyncio.get_running_loop()
    results: list[tuple[float, str, dict[str, Any]]] = []
    stop = asyncio.Event()
    moved_at: list[float] = []

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            text = f"fence {n}.{i} {uuid.uuid4().hex}"
            command = PostCreate(
                user_id=user.id, key=uuid.uuid4().hex, cell=cell, lat=LAT, lng=LNG, text=text
            )
            sent = loop.time()
            [reply] = await host.execute(table.version, [command])
            results.append((sent, text, reply))
            i += 1
            await asyncio.sleep(0)  # an answer without I/O (moved) must not starve the mover

    async def mover() -> Placement:
        await asyncio.sleep(0.4)
        moved = await _put(pool, lambda t: t.with_override(key, others[0]))
        moved_at.append(loop.time())  # committed: every batch after this is fenced
        await asyncio.sleep(0.4)
        stop.set()
        return moved

    try:
        *_, moved = await asyncio.gather(*(writer(n) for n in range(4)), mover())
        acked = [text for _, text, reply in results if reply.get("ok")]
        refused = [text for _, text, reply in results if "moved" in reply]
        assert len(acked) + len(refused) == len(results), [r for r in results if not r[2]][:1]
        assert acked and refused, (len(acked), len(refused))
        late = [(text, reply) for sent, text, reply in results if sent > moved_at[0]]
        assert late and all("moved" in reply for _, reply in late), late[:3]
        assert host.placement_version() == moved.version  # reloaded when fenced
        stored = {
            r["text"]
            for r in await pool.fetch(
                "SELECT text FROM posts WHERE author_id = $1 AND cell = $2", user.id, cell
            )
        }
        assert stored == set(acked)  # every ack durable; nothing refused was written
    finally:
        await _put(
            pool,
            lambda t: Placement(
                t.version + 1, t.shards, {k: v for k, v in t.overrides.items() if k != key}
            ),
        )
        await host.close()
        await pool.close()


async def test_a_batch_at_an_old_version_is_fenced_even_when_it_still_owns_the_cell(
    api: Api, settings: Settings
) -> None:
    """The fence is the version, not the cell: a change anywhere in the table makes a shard
    that has not heard of it re-check before it writes (its caller routes again)."""
    user = await api.signup("fenced-version")
    cell = str(h3.latlng_to_cell(LAT, LNG + 1, settings.h3_resolution))
    pool = await create_pool(settings.database_url)
    table = await placement.load(pool)
    assert table is not None
    host = CellHost(table.owner(cell_key(cell)), settings, dict(HANDLERS), dict(READERS))
    await host.ready()
    try:
        bumped = await _put(pool, lambda t: Placement(t.version + 1, t.shards, t.overrides))
        command = PostCreate(
            user_id=user.id, key=uuid.uuid4().hex, cell=cell, lat=LAT, lng=LNG + 1, text="late"
        )
        [reply] = await host.execute(table.version, [command])
        assert reply == {"moved": bumped.version}
        assert not await pool.fetchval("SELECT 1 FROM posts WHERE author_id = $1", user.id)
        [again] = await host.execute(bumped.version, [command])  # routed again: it commits
        assert again["ok"], again
    finally:
        await host.close()
        await pool.close()
