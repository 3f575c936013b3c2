"""CellHost without Ray, on the real Postgres and Redis: cells activate lazily from Postgres,
passivate when idle, and come back with everything committed."""

from __future__ import annotations

import uuid

import h3
import pytest

from actors.cell_host import CellHost
from actors.registry import HANDLERS, READERS
from cluster.config import Settings
from models.feed import CommentCreate, PostCreate
from models.placement import cell_key
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def test_cells_activate_from_postgres_and_passivate_when_idle(
    api: Api, settings: Settings
) -> None:
    user = await api.signup("host")
    host = CellHost("shard-0", settings, dict(HANDLERS), dict(READERS))
    await host.ready()
    try:
        cell = str(h3.latlng_to_cell(-33.8688, 151.2093, settings.h3_resolution))  # Sydney
        owner = host.placement.owner(cell_key(cell)) if host.placement else None
        host.name = owner or host.name  # act as the owner of this cell
        version = host.placement_version()
        command = PostCreate(
            user_id=user.id,
            key=uuid.uuid4().hex,
            cell=cell,
            lat=-33.8688,
            lng=151.2093,
            text="g'day",
        )
        [reply] = await host.execute(version, [command])
        assert reply["ok"], reply
        post_id = reply["data"]["post"]["id"]
        assert cell in host.cells

        assert host.passivate_idle(now=0.0) == []  # used just now: stays
        assert host.passivate_idle(now=10**9) == [cell]
        assert cell not in host.cells

        page = await host.feed_page(version, [cell], None, 10)  # activated again from Postgres
        assert [p["id"] for p in page["data"]["items"]] == [post_id]
        assert cell in host.cells

        [again] = await host.execute(version, [command])  # the same key: the first result
        assert again["data"]["post"]["id"] == post_id
        host.name = "nobody"  # the cell's owner is now another shard
        [moved] = await host.execute(version, [command])
        assert "moved" in moved
    finally:
        await host.close()


async def test_stream_offsets_stay_gap_free_when_a_cached_head_is_stale(
    api: Api, settings: Settings
) -> None:
    """The owner numbers its feed and room streams in memory; a head that moved behind its back
    (a second writer, as during a placement change) refuses the fast path at the batch's
    compare-and-set, and the careful re-run numbers from Postgres: no gap, no duplicate."""
    user = await api.signup("heads")
    lat, lng = -41.2865, 174.7762  # Wellington
    cell = str(h3.latlng_to_cell(lat, lng, settings.h3_resolution))
    first, second = (
        CellHost(f"shard-{n}", settings, dict(HANDLERS), dict(READERS)) for n in (0, 1)
    )
    await first.ready()
    await second.ready()
    try:
        owner = first.placement.owner(cell_key(cell)) if first.placement else "shard-0"
        first.name = second.name = owner  # both believe they own the cell
        version = first.placement_version()

        def post(text: str) -> PostCreate:
            key = uuid.uuid4().hex
            return PostCreate(user_id=user.id, key=key, cell=cell, lat=lat, lng=lng, text=text)

        async def offsets() -> list[int]:
            assert first.pool is not None
            rows = await first.pool.fetch(
                'SELECT "offset" FROM stream_events WHERE stream = $1 ORDER BY "offset"',
                f"feed:{cell}",
            )
            return [r["offset"] for r in rows]

        replies = await first.execute(version, [post("a"), post("b"), post("c")])
        assert all(r["ok"] for r in replies), replies
        start = (await offsets())[0]
        assert await offsets() == [start, start + 1, start + 2]
        assert len(first.heads) == 1  # the head is cached now

        [behind] = await second.execute(version, [post("from the other writer")])
        assert behind["ok"], behind
        slow_before = first.committer.slow_batches if first.committer else 0
        [late] = await first.execute(version, [post("stale head")])
        assert late["ok"], late
        assert first.committer is not None and first.committer.slow_batches == slow_before + 1
        [after] = await first.execute(version, [post("head reloaded")])
        assert after["ok"], after
        assert await offsets() == list(range(start, start + 6))

        # A head moved behind the owner's back with no event where the owner would write next
        # (the case a primary key cannot catch): the fast statement must write nothing, not
        # commit the post and its event at the stale offset before its check fails.
        assert first.pool is not None
        await first.pool.execute(
            "UPDATE streams SET last_offset = last_offset + 5 WHERE name = $1", f"feed:{cell}"
        )
        slow_before = first.committer.slow_batches
        [moved] = await first.execute(version, [post("behind a moved head")])
        assert moved["ok"], moved
        assert first.committer.slow_batches == slow_before + 1
        assert await offsets() == [*range(start, start + 6), start + 11]
        copies = await first.pool.fetchval(
            "SELECT count(*) FROM posts WHERE text = 'behind a moved head'"
        )
        assert copies == 1
        start_mixed = start + 12

        # A typed refusal inside a batch: the others still get consecutive offsets.
        missing = f"{cell}.{'0' * 16}"  # routed to this cell, but there is no such post
        bad = CommentCreate(user_id=user.id, key=uuid.uuid4().hex, post_id=missing, text="hi")
        mixed = await first.execute(version, [post("d"), bad, post("e")])
        assert [r["ok"] for r in mixed] == [True, False, True]
        assert await offsets() == [
            *range(start, start + 6),
            start + 11,
            start_mixed,
            start_mixed + 1,
        ]
        head = await first.pool.fetchval(
            "SELECT last_offset FROM streams WHERE name = $1", f"feed:{cell}"
        )
        assert head == start_mixed + 1
    finally:
        await first.close()
        await second.close()
