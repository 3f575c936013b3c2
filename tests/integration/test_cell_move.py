"""A cell moves to another shard under a steady chat stream and a steady feed stream, through
the real gateway and Ray shards: no acknowledged write lost, every one in history exactly once
and in order, and a subscriber sees both streams with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import h3
import pytest

from cluster.config import Settings
from models.cells import Geo
from models.errors import BadRequest, Conflict, NotFound
from models.placement import cell_key
from services.cluster_ops import move_cell, unpin_cell
from store import placement
from store.db import create_pool
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration

LAT, LNG = 64.1466, -21.9426  # Reykjavik: no other test uses its cell


async def _send_steadily(ws: Ws, op: str, data: Any, stop: asyncio.Event) -> list[dict[str, Any]]:
    """``op`` every ~20 ms until ``stop``, each with a fresh key, retried with the same key on
    ``unavailable`` (as a client does); the acknowledged replies' data."""
    acked: list[dict[str, Any]] = []
    while not stop.is_set():
        key = uuid.uuid4().hex
        for _ in range(20):
            reply = await ws.request(op, data(len(acked)), key=key, timeout=30)
            if reply["ok"] or reply["error"]["code"] != "unavailable":
                break
            await asyncio.sleep(0.05)
        assert reply["ok"], reply
        acked.append(reply["data"])
        await asyncio.sleep(0.02)
    return acked


async def _events(ws: Ws, wanted: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """The events of each stream of ``wanted`` (how many of each), in arrival order."""
    out: dict[str, list[dict[str, Any]]] = {stream: [] for stream in wanted}
    while any(len(out[s]) < n for s, n in wanted.items()):
        frame = await ws.next_event(timeout=15)
        if frame.get("stream") in out and frame["ev"] in ("chat.message", "post.created"):
            out[frame["stream"]].append(frame)
    return out


async def test_a_cell_moves_live_under_chat_and_feed_streams(api: Api, settings: Settings) -> None:
    geo = Geo(settings.h3_resolution, settings.k_ring)
    cell = geo.cell_of(LAT, LNG)
    room, feed = f"cell-{cell}", f"feed:{cell}"
    pool = await create_pool(settings.database_url)
    table = await placement.load(pool)
    assert table is not None
    home = table.owner(cell_key(cell))
    target = next((s for s in table.shards if s != home), None)
    if target is None:
        pytest.skip("needs two shards")

    users = [await api.signup(f"mover{i}") for i in range(3)]
    sockets = [await api.connect(u) for u in users]
    for ws in sockets:
        await ws.ok("locate", {"lat": LAT, "lng": LNG})
    chatter, poster, watcher = sockets
    stop = asyncio.Event()
    chat = asyncio.create_task(
        _send_steadily(chatter, "chat.send", lambda i: {"room_id": room, "text": f"m{i}"}, stop)
    )
    posts = asyncio.create_task(
        _send_steadily(
            poster, "post.create", lambda i: {"text": f"p{i}", "lat": LAT, "lng": LNG}, stop
        )
    )
    try:
        await asyncio.sleep(0.6)
        moved = await move_cell(pool, geo, cell, target)
        assert moved["from"] == home and moved["shard"] == target
        with pytest.raises(Conflict):
            await move_cell(pool, geo, cell, target)
        await asyncio.sleep(0.8)
        stop.set()
        messages, created = await chat, await posts
        assert len(messages) > 5 and len(created) > 5, (len(messages), len(created))

        # Every acknowledged message is in the room's history once, in offset order, gap-free.
        offsets = [m["message"]["offset"] for m in messages]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        history = await watcher.ok("chat.history", {"room_id": room, "limit": 200})
        stored = sorted(history["messages"], key=lambda m: m["offset"])
        assert [m["id"] for m in stored] == [m["message"]["id"] for m in messages]

        # The subscriber saw both streams whole: no gap, no duplicate, across the move.
        seen = await _events(watcher, {f"room:{room}": len(messages), feed: len(created)})
        assert [e["offset"] for e in seen[f"room:{room}"]] == offsets
        seen_posts = seen[feed]
        post_offsets = [e["offset"] for e in seen_posts]
        assert post_offsets == list(range(post_offsets[0], post_offsets[0] + len(created)))
        assert [e["data"]["post"]["id"] for e in seen_posts] == [p["post"]["id"] for p in created]
        page = await watcher.ok("feed.get", {"lat": LAT, "lng": LNG, "limit": 100})
        assert {p["post"]["id"] for p in created} <= {p["id"] for p in page["items"]}

        current = await placement.load(pool)
        assert current is not None and current.owner(cell_key(cell)) == target
    finally:
        stop.set()
        await asyncio.gather(chat, posts, return_exceptions=True)
        back = await unpin_cell(pool, geo, cell)  # home again, for the tests after this one
        assert back["shard"] == home
        for ws in sockets:
            await ws.close()
        await pool.close()


async def test_a_move_refuses_bad_cells_and_shards(settings: Settings) -> None:
    geo = Geo(settings.h3_resolution, settings.k_ring)
    pool = await create_pool(settings.database_url)
    try:
        coarse = str(h3.latlng_to_cell(LAT, LNG, max(settings.h3_resolution - 1, 0)))
        with pytest.raises(BadRequest):  # not an H3 cell at all
            await move_cell(pool, geo, "nope", "shard-0")
        for cell, shard in ((coarse, "shard-0"),
                            (geo.cell_of(LAT, LNG + 2), "shard-99")):  # fmt: skip
            with pytest.raises(NotFound):
                await move_cell(pool, geo, cell, shard)
        with pytest.raises(Conflict):
            await unpin_cell(pool, geo, geo.cell_of(LAT, LNG + 2))
    finally:
        await pool.close()
