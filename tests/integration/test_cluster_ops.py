"""The ops surface (issue 13) through the real gateway, control actor and Ray shards: the role
``ops`` is required, bad input is a typed error that changes nothing, every change is audited,
and scaling 2 -> 4 -> 2 under steady chat streams loses no acknowledged message and leaves no
gap, while exactly the cells rendezvous hashing reassigns change shard."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import asyncpg
import h3
import pytest

from cluster.config import Settings
from cluster.runtime import Runtime
from models.cells import Geo
from models.placement import Placement, cell_key
from services.cluster_ops import unpin_cell
from services.router import ShardRouter
from services.scaling import ClusterService, NoFleet
from services.transport import RayTransport
from store import placement
from store.db import create_pool
from tests.integration.admin_kit import operator, staff
from tests.integration.client import Api, Ws
from tests.integration.test_admin_moderation import _cli_env
from tests.integration.test_cell_move import _send_steadily

pytestmark = pytest.mark.integration

PLACES = [  # far from every other test's cells
    (78.2232, 15.6267),  # Longyearbyen
    (37.7412, -25.6756),  # Ponta Delgada
    (-42.8821, 147.3272),  # Hobart
    (-54.8019, -68.3030),  # Ushuaia
    (64.8378, -147.7164),  # Fairbanks
    (-51.6977, -57.8517),  # Stanley
    (21.3069, -157.8583),  # Honolulu
    (-17.5516, -149.5585),  # Papeete
]
CLUSTER = "/api/v1/admin/cluster"


async def _table_version(settings: Settings) -> int:
    pool = await create_pool(settings.database_url)
    try:
        table = await placement.load(pool)
        assert table is not None
        return table.version
    finally:
        await pool.close()


async def test_ops_calls_need_the_role_and_refuse_bad_input(api: Api, settings: Settings) -> None:
    geo = Geo(settings.h3_resolution, settings.k_ring)
    cell = geo.cell_of(*PLACES[0])
    user = await api.signup("not-ops")
    admin = await staff(api, settings, "admin", "admin-not-ops")
    ops = await staff(api, settings, "ops", "ops-one")
    token = ops.access_token
    before = await _table_version(settings)
    for who in (user, admin):  # ops only: not even an admin
        for method, path, body in (
            ("get", CLUSTER, None),
            ("get", f"{CLUSTER}/cells/{cell}", None),
            ("post", f"{CLUSTER}/cells/{cell}/move", {"shard": "shard-1"}),
            ("post", f"{CLUSTER}/cells/{cell}/pin", {"shard": "shard-1"}),
            ("post", f"{CLUSTER}/scale", {"shards": 3}),
        ):
            if method == "get":
                status, reply = await api.get(path, who.access_token)
            else:
                status, reply = await api.post(path, body, who.access_token)
            assert status == 403, (path, status, reply)
            assert reply["error"]["code"] == "forbidden"
    coarse = str(h3.latlng_to_cell(*PLACES[0], settings.h3_resolution - 1))
    for path, body, status, code in (
        (f"{CLUSTER}/cells/nope/move", {"shard": "shard-1"}, 400, "bad_request"),
        (f"{CLUSTER}/cells/{coarse}/move", {"shard": "shard-1"}, 404, "not_found"),
        (f"{CLUSTER}/cells/{cell}/move", {"shard": "shard-99"}, 404, "not_found"),
        (f"{CLUSTER}/cells/{cell}/move", {"shard": ""}, 400, "bad_request"),
        (f"{CLUSTER}/cells/{cell}/move", {"shard": "x", "extra": 1}, 400, "bad_request"),
        (f"{CLUSTER}/cells/{cell}/unpin", None, 409, "conflict"),
        (f"{CLUSTER}/scale", {"shards": 0}, 400, "bad_request"),
        (f"{CLUSTER}/scale", {"shards": "2"}, 400, "bad_request"),
        (f"{CLUSTER}/scale", {"shards": 1000}, 400, "bad_request"),
    ):
        got, reply = await api.post(path, body, token)
        assert (got, reply["error"]["code"]) == (status, code), (path, body, reply)
    status, reply = await api.get(f"{CLUSTER}/cells/nope", token)
    assert status == 400
    assert await _table_version(settings) == before  # nothing changed

    status, view = await api.get(CLUSTER, token)
    assert status == 200, view
    assert [s["id"] for s in view["shards"]] == ["shard-0", "shard-1"]
    assert all(s["up"] and s["node"] for s in view["shards"])
    assert view["placement_version"] == before
    status, where = await api.get(f"{CLUSTER}/cells/{cell}", token)
    assert status == 200 and where["pinned"] is False
    home = where["shard"]
    other = "shard-1" if home == "shard-0" else "shard-0"

    # move, then pin to a shard of its own, then unpin: each audited with the ops user
    status, moved = await api.post(f"{CLUSTER}/cells/{cell}/move", {"shard": other}, token)
    assert status == 200 and moved["from"] == home and moved["shard"] == other, moved
    status, _ = await api.post(f"{CLUSTER}/cells/{cell}/move", {"shard": other}, token)
    assert status == 409
    status, pinned = await api.post(f"{CLUSTER}/cells/{cell}/pin", {"shard": home}, token)
    assert status == 200 and pinned["shard"] == home
    status, view = await api.get(CLUSTER, token)
    dedicated = {s["id"]: s["dedicated"] for s in view["shards"]}
    assert dedicated == {home: True, other: False}
    status, last = await api.post(f"{CLUSTER}/cells/{cell}/pin", {"shard": other},
                                  token)  # fmt: skip
    assert status == 409 and last["error"]["code"] == "conflict"  # the last hashing shard
    status, back = await api.post(f"{CLUSTER}/cells/{cell}/unpin", None, token)
    assert status == 200 and back["shard"] == home
    status, view = await api.get(CLUSTER, token)
    assert not any(s["dedicated"] for s in view["shards"])

    audit = await operator(settings, "audit.list", {"target": f"cell:{cell}", "limit": 10})
    actions = [(e["action"], e["actor_id"]) for e in audit["items"]]
    assert ("cluster.move", ops.id) in actions and ("cluster.pin", ops.id) in actions
    assert ("cluster.unpin", ops.id) in actions
    refused = [e for e in audit["items"] if e["result"].get("error")]
    assert refused  # a refused change is audited too (by the control host)


async def _history(ws: Ws, room: str) -> list[dict[str, Any]]:
    """Every message of ``room``, oldest first (paged back with ``next_before``)."""
    out: list[dict[str, Any]] = []
    before = None
    while True:
        page = await ws.ok("chat.history", {"room_id": room, "limit": 200, "before": before})
        out = page["messages"] + out
        before = page["next_before"]
        if before is None:
            return out


async def _chatter(api: Api, name: str, place: tuple[float, float]) -> Ws:
    user = await api.signup(name)
    ws = await api.connect(user)
    await ws.ok("locate", {"lat": place[0], "lng": place[1]})
    return ws


async def test_scale_2_4_2_under_steady_chat_loses_nothing(api: Api, settings: Settings) -> None:
    geo = Geo(settings.h3_resolution, settings.k_ring)
    ops = await staff(api, settings, "ops", "ops-scaler")
    pool = await create_pool(settings.database_url)
    table = await placement.load(pool)
    await pool.close()
    assert table is not None and table.shards == ("shard-0", "shard-1")
    four = table.with_shards(("shard-0", "shard-1", "shard-2", "shard-3"))
    cells = [geo.cell_of(*p) for p in PLACES]
    moving = [c for c in cells if four.owner(cell_key(c)) != table.owner(cell_key(c))][:2]
    staying = [c for c in cells if four.owner(cell_key(c)) == table.owner(cell_key(c))][:1]
    assert len(moving) == 2 and len(staying) == 1, "pick other places"
    chosen = moving + staying
    places = {geo.cell_of(*p): p for p in PLACES}
    sockets = [await _chatter(api, f"scaler{i}", places[c]) for i, c in enumerate(chosen)]
    stop = asyncio.Event()
    streams = [
        asyncio.create_task(
            _send_steadily(
                ws, "chat.send", lambda i, c=c: {"room_id": f"cell-{c}", "text": f"m{i}"}, stop
            )
        )
        for ws, c in zip(sockets, chosen, strict=True)
    ]
    try:
        await asyncio.sleep(0.5)
        status, up = await api.post(f"{CLUSTER}/scale", {"shards": 4}, ops.access_token)
        assert status == 200, up
        assert up["added"] == ["shard-2", "shard-3"] and up["removed"] == [], up
        await asyncio.sleep(1.0)
        status, view = await api.get(CLUSTER, ops.access_token)
        assert [s["id"] for s in view["shards"]] == [f"shard-{i}" for i in range(4)]
        assert all(s["up"] for s in view["shards"]), view
        for c in chosen:  # exactly the reassigned cells moved, and they are served there
            status, where = await api.get(f"{CLUSTER}/cells/{c}", ops.access_token)
            assert where["shard"] == four.owner(cell_key(c)), where
        for c in moving:
            status, where = await api.get(f"{CLUSTER}/cells/{c}", ops.access_token)
            assert where["active"] and where["msgs_per_s"] > 0, where
        status, down = await api.post(f"{CLUSTER}/scale", {"shards": 2}, ops.access_token)
        assert status == 200 and down["removed"] == ["shard-2", "shard-3"], down
        await asyncio.sleep(0.5)
        stop.set()
        sent = await asyncio.gather(*streams)
    finally:
        stop.set()
        await asyncio.gather(*streams, return_exceptions=True)
    try:
        for ws, c, acked in zip(sockets, chosen, sent, strict=True):
            assert len(acked) > 10, (c, len(acked))
            offsets = [m["message"]["offset"] for m in acked]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets
            stored = await _history(ws, f"cell-{c}")
            assert [m["id"] for m in stored] == [m["message"]["id"] for m in acked]
        status, view = await api.get(CLUSTER, ops.access_token)
        assert [s["id"] for s in view["shards"]] == ["shard-0", "shard-1"]
        status, same = await api.post(f"{CLUSTER}/scale", {"shards": 2}, ops.access_token)
        assert status == 200 and same["changed"] is False  # a repeat changes nothing
        audit = await operator(settings, "audit.list", {"action": "cluster.scale", "limit": 5})
        assert [e["actor_id"] for e in audit["items"][:2]] == [ops.id, ops.id]
    finally:
        for ws in sockets:
            await ws.close()


async def test_shard_metrics_are_exported(api: Api, settings: Settings) -> None:
    status, text = await _metrics(api)
    assert status == 200
    for family in ("hl_shard_up", "hl_shard_calls_per_s", "hl_shard_commands_total",
                   "hl_shard_commit_ms_mean", "hl_placement_version",
                   "hl_shard_gc_young_pause_seconds_total", "hl_shard_gc_full_collections_total",
                   "hl_shard_gc_longest_pause_seconds"):  # fmt: skip
        assert family in text, family
    assert 'hl_shard_up{node="' in text or 'hl_shard_up{shard="' in text


async def _metrics(api: Api) -> tuple[int, Any]:
    async with api.http.get(f"{api.base}/metrics") as resp:
        return resp.status, await resp.text()


async def test_the_cli_acts_through_the_control_actor(runtime: Runtime, settings: Settings) -> None:
    """`hyperlocal cluster` and `hyperlocal cells ...` on the running deployment, as the
    operator: the view, a move and its undo, and a typed error for a bad cell."""
    geo = Geo(settings.h3_resolution, settings.k_ring)
    cell = geo.cell_of(*PLACES[1])
    env = _cli_env(settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cluster.cli", "--log-level", "WARNING", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = await asyncio.to_thread(run, "cluster")
    assert done.returncode == 0, done.stderr[-2000:]
    view = json.loads(done.stdout)
    assert [s["id"] for s in view["shards"]] == ["shard-0", "shard-1"]
    done = await asyncio.to_thread(run, "cells", "show", cell)
    home = json.loads(done.stdout)["shard"]
    other = "shard-1" if home == "shard-0" else "shard-0"
    done = await asyncio.to_thread(run, "cells", "move", cell, other)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["shard"] == other
    done = await asyncio.to_thread(run, "cells", "unpin", cell)
    assert done.returncode == 0 and json.loads(done.stdout)["shard"] == home
    done = await asyncio.to_thread(run, "cells", "move", "nope", other)
    assert done.returncode == 1 and "bad_request" in done.stderr


async def test_the_rebalancer_moves_a_hot_cell_off_a_busy_shard(
    api: Api, settings: Settings
) -> None:
    """Two busy cells on one shard, the other idle: one round moves the hottest (not a cell
    that is the shard's whole load) to the idle shard, audited as the operator's move."""
    geo = Geo(settings.h3_resolution, settings.k_ring)
    pool = await create_pool(settings.database_url)
    table = await placement.load(pool)
    assert table is not None
    busy = table.owner(cell_key(geo.cell_of(*PLACES[0])))
    pair = [p for p in PLACES if table.owner(cell_key(geo.cell_of(*p))) == busy][:2]
    assert len(pair) == 2, "pick other places"
    hot, warm = (geo.cell_of(*p) for p in pair)
    sockets = [await _chatter(api, f"hot{i}", p) for i, p in enumerate([pair[0], pair[0], pair[1]])]
    stop = asyncio.Event()
    rooms = [hot, hot, warm]  # the hot cell gets twice the warm one's load
    streams = [
        asyncio.create_task(
            _send_steadily(ws, "chat.send", lambda i, c=c: {"room_id": f"cell-{c}", "text": "x"},
                           stop)
        )
        for ws, c in zip(sockets, rooms, strict=True)
    ]  # fmt: skip
    router = ShardRouter(RayTransport.connect(settings), lambda: _load(pool), 0.001, 64)
    tuned = settings.model_copy(update={"rebalance_ratio": 1.5, "rebalance_min_per_s": 1.0})
    service = ClusterService(tuned, pool, geo, router, NoFleet())
    try:
        await asyncio.sleep(2.0)
        record = await service.rebalance_once()
        assert record is not None, await service.view_of.view()
        assert record["cell"] == hot and record["from"] == busy and record["shard"] != busy
        audit = await operator(settings, "audit.list", {"target": f"cell:{hot}", "limit": 1})
        assert audit["items"][0]["action"] == "cluster.move"
        assert audit["items"][0]["actor_id"] is None
    finally:
        stop.set()
        await asyncio.gather(*streams, return_exceptions=True)
        await unpin_cell(pool, geo, hot)
        for ws in sockets:
            await ws.close()
        await pool.close()


async def _load(pool: asyncpg.Pool) -> Placement:
    table = await placement.load(pool)
    assert table is not None
    return table
