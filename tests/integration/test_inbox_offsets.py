"""Offsets of streams several shards write (users' inboxes), taken by the batch's one statement
(store/batch_write.py ``PendingEvent``): two writers racing on the same inboxes, in opposite
orders, leave every inbox gap-free and in step with what each writer was told, and never
deadlock (the statement locks the streams in name order)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cluster.config import Settings
from models.streams import Event
from store import batch_write, placement
from store import events as event_log
from store.db import LazyTransaction, create_pool

pytestmark = pytest.mark.integration


async def test_two_writers_on_the_same_inboxes_stay_gap_free_and_in_step(
    settings: Settings,
) -> None:
    pool = await create_pool(settings.database_url, min_size=2, max_size=4)
    try:
        table = await placement.load(pool)
        assert table is not None
        fences = [(shard, table.version) for shard in table.shards[:2]]
        tag = uuid.uuid4().hex[:8]
        inboxes = [f"user:inbox-{tag}-{i}" for i in range(5)]
        told: dict[str, list[Event]] = {name: [] for name in inboxes}

        async def writer(w: int) -> None:
            order = inboxes if w == 0 else list(reversed(inboxes))
            for n in range(40):
                rows = [
                    batch_write.PendingEvent(name, "test.event", {"w": w, "n": n, "i": i})
                    for name in order
                    for i in range(1 + (n + w) % 2)  # one or two events per inbox
                ]
                async with pool.acquire() as conn:
                    tx = LazyTransaction(conn)
                    assert await batch_write.write(tx, [], list(rows), fences[w % len(fences)])
                    await tx.finish()
                for row in rows:
                    told[row.stream].append(row.committed())

        await asyncio.wait_for(asyncio.gather(writer(0), writer(1)), timeout=60)
        for name in inboxes:
            position = await event_log.position(pool, name)
            stored = await event_log.read_range(pool, name, position.epoch, 0, None)
            offsets = [e.offset for e in stored]
            assert offsets == list(range(1, len(stored) + 1)), name  # gap-free from 1
            assert len(stored) == len(told[name]) == 2 * 40 + 40  # every event, once
            by_offset = {e.offset: e for e in stored}
            for event in told[name]:  # what each writer was told is what was committed
                assert event.epoch == position.epoch
                assert by_offset[event.offset].data == event.data
            for w in (0, 1):  # and one writer's events keep their order
                mine = [(e.data["n"], e.data["i"]) for e in stored if e.data["w"] == w]
                assert mine == sorted(mine)
    finally:
        await pool.close()


async def test_an_unwritten_pending_event_cannot_be_published() -> None:
    pending = batch_write.PendingEvent("user:nobody", "test.event", {"x": 1})
    assert pending.data_json == '{"x":1}'
    with pytest.raises(RuntimeError, match="before its batch wrote it"):
        pending.committed()
