"""The one setup of a process's Postgres pool and Redis client (services/container.py
``open_stores``), against the session's real Postgres and Redis: sized from config, and closed
when what is built on them fails (``open_notifier`` leaked both before)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from cluster.config import Settings
from services import container

pytestmark = pytest.mark.integration


async def test_the_notifier_stores_are_sized_from_config_and_closed_when_its_setup_fails(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sized = settings.model_copy(
        update={"notifier_db_pool_max": 3, "notifier_redis_max_connections": 5}
    )
    pools: list[asyncpg.Pool] = []
    clients: list[aioredis.Redis] = []
    create_pool, aclose = container.create_pool, aioredis.Redis.aclose

    async def recorded_pool(*args: Any, **kwargs: Any) -> asyncpg.Pool:
        pool = await create_pool(*args, **kwargs)
        pools.append(pool)
        return pool

    async def recorded_close(self: aioredis.Redis, *args: Any, **kwargs: Any) -> None:
        clients.append(self)
        await aclose(self, *args, **kwargs)

    def bad_keys(*_: Any) -> Any:
        raise RuntimeError("the data key does not open")

    monkeypatch.setattr(container, "create_pool", recorded_pool)
    monkeypatch.setattr(aioredis.Redis, "aclose", recorded_close)
    monkeypatch.setattr(container, "Keys", bad_keys)
    with pytest.raises(RuntimeError, match="data key"):
        async with container.open_notifier(sized):
            pass
    (pool,) = pools
    assert pool.get_max_size() == 3 and pool.is_closing()
    (client,) = clients
    assert client.connection_pool.max_connections == 5


async def test_open_stores_closes_both_when_the_block_fails(settings: Settings) -> None:
    with pytest.raises(LookupError):
        async with container.open_stores(settings, 1, 2, 4) as (db, redis):
            assert await db.fetchval("SELECT 1") == 1 and await redis.ping()
            kept = db
            raise LookupError("what was built on them failed")
    assert kept.is_closing()
