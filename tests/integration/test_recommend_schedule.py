"""A deployment ranks without anyone running a command: ``hyperlocal up``'s own composition
(``with_retrain``: the gateway with the scheduled retrain beside it, each run a Ray task over
Postgres) turns product activity into models, and ``feed.get`` then answers by relevance with
the cell's model; a quiet sibling cell falls back to the parent's model, a far one to the global
model, and ``/metrics`` counts which model served each request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h3
import pytest

from cluster.config import Settings
from cluster.trainer import with_retrain
from store.db import create_pool
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration

HOME = (40.7128, -74.0060)
FAR = (-33.8688, 151.2093)
MIN_EVENTS = 30  # the activity below makes 32 in its cell: it gets its own model


def _spots(settings: Settings) -> tuple[str, str]:
    """An active cell no other test uses, and a quiet cell under the same parent cell."""
    res = settings.h3_resolution
    base = h3.latlng_to_cell(HOME[0], HOME[1], res)
    active = sorted(h3.grid_ring(base, 47))[3]
    near = set(h3.grid_disk(active, settings.k_ring))
    siblings = h3.cell_to_children(h3.cell_to_parent(active, res - 1), res)
    quiet = next(c for c in sorted(siblings) if c not in near)
    return active, quiet


async def _served_by(ws: Ws, scope: str, timeout_s: float = 150.0) -> dict[str, Any]:
    """feed.get by relevance, polled until the model of ``scope`` ranks it (the schedule runs
    on its own and stores one scope after another) or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await ws.ok("feed.get", {"sort": "relevance", "limit": 10})
        model = got.get("model") or {}
        if model.get("scope") == scope or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def test_activity_gets_models_on_schedule_and_every_cell_is_served(
    api: Api, settings: Settings
) -> None:
    active, quiet = _spots(settings)
    assert settings.database_url
    pool = await create_pool(settings.database_url)
    before = int(await pool.fetchval("SELECT coalesce(max(version), 0) FROM models"))
    names = ("author1", "author2", "viewer", "fan1", "fan2", "neighbour", "traveller")
    users = {n: await api.signup(n) for n in names}
    ws = {n: await api.connect(u) for n, u in users.items()}
    here = h3.cell_to_latlng(active)
    spots = {"neighbour": h3.cell_to_latlng(quiet), "traveller": FAR}
    for name, sock in ws.items():
        lat, lng = spots.get(name, here)
        await sock.ok("locate", {"lat": lat, "lng": lng})
    try:
        a1, a2 = [], []
        for i in range(8):
            a1.append((await ws["author1"].mutate("post.create", {"text": f"a1 #{i}"}))["post"])
            a2.append((await ws["author2"].mutate("post.create", {"text": f"a2 #{i}"}))["post"])
        assert a1[0]["cell"] == active
        for p1, p2 in zip(a1, a2, strict=True):
            await ws["viewer"].mutate("post.like", {"post_id": p1["id"]})
            await ws["viewer"].mutate("comment.create", {"post_id": p1["id"], "text": "yes"})
            await ws["fan1"].mutate("post.like", {"post_id": p2["id"]})
            await ws["fan2"].mutate("post.like", {"post_id": p2["id"]})
        plain = await ws["viewer"].ok("feed.get", {"limit": 10})
        assert plain["sort"] == "newest"  # no model yet: newest first, counted as "none"

        schedule = settings.model_copy(
            update={
                "recommend_retrain_s": 3600.0,
                "recommend_retrain_idle_s": 0.5,
                "recommend_cell_min_events": MIN_EVENTS,
            }
        )
        parent = h3.cell_to_parent(active, settings.h3_resolution - 1)
        served: dict[str, dict[str, Any]] = {}

        async def gateway_side() -> None:  # what clients see while `up` serves
            served["viewer"] = await _served_by(ws["viewer"], active)
            served["neighbour"] = await _served_by(ws["neighbour"], parent)
            served["traveller"] = await _served_by(ws["traveller"], "global")

        await asyncio.wait_for(with_retrain(schedule, gateway_side()), 200)

        viewer = served["viewer"]
        assert viewer["sort"] == "relevance" and viewer["model"]["scope"] == active, viewer
        top = [p["author_id"] for p in viewer["items"][:3]]
        assert top.count(users["author1"].id) >= 2  # the viewer's own taste, learnt unasked
        assert served["neighbour"]["model"]["scope"] == parent, served["neighbour"]
        assert served["traveller"]["model"]["scope"] == "global", served["traveller"]
        default = await ws["viewer"].ok("feed.get", {"limit": 10})
        assert default["sort"] == "relevance"  # no sort asked: relevance, the model is there

        status, text = await api.get("/metrics")
        assert status == 200
        for kind in ("cell", "parent", "global", "none"):
            assert f'hl_recommend_served_total{{model="{kind}",surface="feed"}}' in text, kind
    finally:  # other tests expect no model outside their own cells
        await pool.execute("DELETE FROM models WHERE version > $1", before)
        await pool.close()
        for sock in ws.values():
            await sock.close()
