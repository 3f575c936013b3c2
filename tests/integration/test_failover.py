"""Failover (issue 13): a shard whose process dies has its cells served by another shard
within a second, by one placement change the control actor makes; a zombie (a shard that
did not die, but lost its keys) can no longer commit.

The SIGKILL scenario runs ``bench/node_failure.py --kill process`` in its own process (a
deployment with failover on; this session's runs with it off, as its tests kill shards and
wait for Ray's restart). The zombie test acts on the session's table directly."""

from __future__ import annotations

import uuid

import h3
import pytest

from actors.cell_host import CellHost
from actors.registry import HANDLERS, READERS
from cluster.config import Settings
from models.feed import PostCreate
from models.placement import cell_key
from services import cluster_ops
from store import placement
from store.db import create_pool
from tests.integration.client import Api
from tests.integration.test_node_failure import check_failed_over, run_scenario

pytestmark = pytest.mark.integration

LAT, LNG = -47.5, -121.0  # the South Pacific: no other test posts there


async def test_a_sigkilled_shards_cells_serve_again_through_another_within_the_bound() -> None:
    result = await run_scenario("--kill", "process", "--after-s", "3", "--rejoin-s", "1")
    check_failed_over(result, rejoined=True)
    # The target is 1 s (the benchmark reports the figure); 3 s is robust on a loaded box.
    assert result["kill_to_first_ack_s"] < 3, result
    assert result["kill_to_failover_s"] < 3, result


async def test_a_failed_over_zombie_is_fenced_and_writes_nothing(
    api: Api, settings: Settings
) -> None:
    user = await api.signup("zombie")
    cell = str(h3.latlng_to_cell(LAT, LNG, settings.h3_resolution))
    key = cell_key(cell)
    pool = await create_pool(settings.database_url)
    try:
        before = await placement.load(pool)
        assert before is not None and len(before.shards) > 1
        owner = before.owner(key)
        # The owner as a partitioned process would be: alive, still believing the old table.
        zombie = CellHost(owner, settings, dict(HANDLERS), dict(READERS))
        await zombie.ready()

        def post(text: str) -> PostCreate:
            return PostCreate(
                user_id=user.id, key=uuid.uuid4().hex, cell=cell, lat=LAT, lng=LNG, text=text
            )

        [ok] = await zombie.execute(before.version, [post("before the failover")])
        assert ok.get("ok"), ok  # it did own the cell
        record = await cluster_ops.fail_over(pool, [owner])
        assert record["failed"] == [owner] and record["reason"] == "failover"
        text = f"zombie {uuid.uuid4().hex}"
        [reply] = await zombie.execute(before.version, [post(text)])
        assert reply == {"moved": record["placement_version"]}, reply  # fenced, reloaded
        assert await pool.fetchval("SELECT count(*) FROM posts WHERE text = $1", text) == 0
        after = await placement.load(pool)
        assert after is not None and owner not in after.shards
        assert after.owner(key) != owner
        audit = await pool.fetchrow(
            "SELECT * FROM audit_log WHERE action = 'cluster.failover' ORDER BY at DESC LIMIT 1"
        )
        assert audit is not None and audit["actor_id"] is None  # the operator
        assert audit["reason"] == "failover" and audit["result"]["failed"] == [owner]
        assert audit["result"]["placement_version"] == record["placement_version"]
        await zombie.close()
    finally:
        back = await placement.load(pool)
        if back is not None and before is not None and owner not in back.shards:
            await cluster_ops.rejoin(pool, [owner])
        restored = await placement.load(pool)
        await pool.close()
    assert restored is not None and restored.shards == before.shards
    assert restored.owner(key) == owner
