"""Relevance feed end to end: interactions written through the product's own ops (posts, likes,
comments over real websockets), a ranker trained by a Ray task from Postgres, then a user's
``feed.get`` order changes with ``sort: "relevance"``."""

from __future__ import annotations

import h3
import pytest

from cluster import trainer
from cluster.config import Settings
from store import recommend_store
from store.db import create_pool
from tests.integration.client import Api

pytestmark = pytest.mark.integration

HOME = (40.7128, -74.0060)


def _spot(settings: Settings) -> tuple[float, float]:
    """A neighbourhood no other test uses (far ring, own index)."""
    base = h3.latlng_to_cell(HOME[0], HOME[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 45))[7])


async def test_training_on_product_interactions_changes_the_feed_order(
    api: Api, settings: Settings
) -> None:
    here = _spot(settings)
    names = ("author1", "author2", "viewer", "fan1", "fan2")
    users = {n: await api.signup(n) for n in names}
    ws = {n: await api.connect(u) for n, u in users.items()}
    for sock in ws.values():
        await sock.ok("locate", {"lat": here[0], "lng": here[1]})
    a1_posts, a2_posts = [], []
    for i in range(6):
        a1_posts.append((await ws["author1"].mutate("post.create", {"text": f"a1 #{i}"}))["post"])
        a2_posts.append((await ws["author2"].mutate("post.create", {"text": f"a2 #{i}"}))["post"])
    cell = a1_posts[0]["cell"]
    for p1, p2 in zip(a1_posts, a2_posts, strict=True):  # the viewer follows author1's posts
        await ws["viewer"].mutate("post.like", {"post_id": p1["id"]})
        await ws["fan1"].mutate("post.like", {"post_id": p2["id"]})
        await ws["viewer"].mutate("comment.create", {"post_id": p1["id"], "text": "love it"})
        await ws["fan2"].mutate("post.like", {"post_id": p2["id"]})

    no_model = await ws["viewer"].ok("feed.get", {"limit": 5})
    assert no_model["sort"] == "newest"

    assert settings.database_url
    pool = await create_pool(settings.database_url)
    try:
        lines: list[str] = []
        results = await trainer.train(
            settings, pool, cells=[cell], min_events=2, report=lines.append
        )
        assert [r["scope"] for r in results] == [cell] and "version" in results[0], lines
        assert results[0]["metrics"]["groups"] >= 3
        stored = await recommend_store.newest_versions(pool, [cell])
        assert stored == {cell: results[0]["version"]}

        new1 = (await ws["author1"].mutate("post.create", {"text": "a1 new"}))["post"]
        new2 = (await ws["author2"].mutate("post.create", {"text": "a2 new"}))["post"]

        newest = await ws["viewer"].ok("feed.get", {"sort": "newest", "limit": 14})
        assert [p["id"] for p in newest["items"][:2]] == [new2["id"], new1["id"]]
        relevant = await ws["viewer"].ok("feed.get", {"sort": "relevance", "limit": 14})
        assert relevant["sort"] == "relevance"
        assert relevant["model"] == {"scope": cell, "version": results[0]["version"]}
        ids = [p["id"] for p in relevant["items"]]
        assert sorted(ids) == sorted(p["id"] for p in newest["items"])
        assert ids != [p["id"] for p in newest["items"]]
        top = [p["author_id"] for p in relevant["items"][:3]]
        assert top.count(users["author1"].id) >= 2, relevant["items"][:3]

        default = await ws["viewer"].ok("feed.get", {"limit": 14})  # a model exists: relevance
        assert default["sort"] == "relevance"

        page1 = await ws["viewer"].ok("feed.get", {"sort": "relevance", "limit": 8})
        page2 = await ws["viewer"].ok("feed.get", {"cursor": page1["next_cursor"], "limit": 8})
        paged = [p["id"] for p in page1["items"] + page2["items"]]
        assert len(paged) == len(set(paged)) == 14 and page2["next_cursor"] is None

        bad = await ws["viewer"].request("feed.get", {"sort": "best"})
        assert not bad["ok"] and bad["error"]["code"] == "bad_request"
    finally:
        await recommend_store.delete_models(pool, [cell])  # other tests see newest-first feeds
        await pool.close()
        for sock in ws.values():
            await sock.close()
