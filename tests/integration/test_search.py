"""Search over posts, listings, vendors and users: full text, typos (pg_trgm), distance,
paging and its bounds, over the real gateway and the embedded Postgres (issue 16, item 5)."""

from __future__ import annotations

import random
from typing import Any

import h3
import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration

PORTO = (41.1579, -8.6291)  # away from every other test's neighbourhoods


def _word() -> str:
    """A made-up word of ten letters no other test writes (so results are this test's)."""
    return "".join(random.choice("bcdfghjklmnpqrstvwxz") for _ in range(10))


def _typo(word: str) -> str:
    """One letter replaced: what fingers do."""
    i = len(word) // 2
    return word[:i] + ("a" if word[i] != "a" else "e") + word[i + 1 :]


def spot(settings: Settings, i: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(PORTO[0], PORTO[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 4 * i))[0]) if i else PORTO


async def _search(ws: Any, **data: Any) -> dict[str, Any]:
    return await ws.ok("search", data)


async def test_posts_by_words_typos_and_distance(api: Api, settings: Settings) -> None:
    word = _word()
    near, far = spot(settings, 0), spot(settings, 3)
    author = await api.signup("searcher")
    ws = await api.connect(author)
    far_post = (await ws.mutate("post.create", {"text": f"{word} at the far market", "lat": far[0],
                                                "lng": far[1]}))["post"]  # fmt: skip
    near_post = (await ws.mutate("post.create", {"text": f"fresh {word} bread", "lat": near[0],
                                                 "lng": near[1]}))["post"]  # fmt: skip
    await ws.mutate("post.create", {"text": "nothing to see", "lat": near[0], "lng": near[1]})

    found = await _search(ws, q=word, kind="posts")
    assert {p["id"] for p in found["items"]} == {far_post["id"], near_post["id"]}
    typo = await _search(ws, q=_typo(word), kind="posts")
    assert {p["id"] for p in typo["items"]} == {far_post["id"], near_post["id"]}
    # given a point, the near one first whichever is older
    for where, first in ((near, near_post), (far, far_post)):
        located = await _search(ws, q=word, kind="posts", lat=where[0], lng=where[1])
        assert located["items"][0]["id"] == first["id"], located
        assert located["items"][0]["distance_m"] < located["items"][1]["distance_m"]
    # a deleted post is found no more
    await ws.mutate("post.delete", {"post_id": far_post["id"]})
    found = await _search(ws, q=word, kind="posts")
    assert [p["id"] for p in found["items"]] == [near_post["id"]]
    await ws.close()


async def test_listings_vendors_users_and_paging(api: Api, settings: Settings) -> None:
    word = _word()
    where = spot(settings, 1)
    vendor_user, vendor = await mk.vendor(api, where, f"{word}-house", category="ceramics")
    listings = [
        await mk.listing(api, vendor_user.access_token, title=f"{word} bowl {i}", price=100 + i)
        for i in range(5)
    ]
    buyer = await api.signup(f"{word}-fan")
    ws = await api.connect(buyer)

    ids: list[str] = []
    cursor = None
    while True:
        data: dict[str, Any] = {"q": word, "kind": "listings", "limit": 2}
        if cursor:
            data["cursor"] = cursor
        page = await _search(ws, **data)
        assert all(x["vendor"]["id"] == vendor["id"] for x in page["items"])
        ids += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(ids) == sorted(x["id"] for x in listings) and len(set(ids)) == 5

    vendors = await _search(ws, q=_typo(word), kind="vendors", lat=where[0], lng=where[1])
    assert [v["id"] for v in vendors["items"]] == [vendor["id"]]
    users = await _search(ws, q=_typo(word), kind="users")
    assert {u["id"] for u in users["items"]} == {buyer.id, vendor_user.id}  # both names
    assert set(users["items"][0]) >= {"id", "display_name", "bio", "avatar", "joined_at"}
    assert "email" not in users["items"][0]

    status, body = await api.get(f"/api/v1/search?q={word}&kind=vendors", buyer.access_token)
    assert status == 200 and [v["id"] for v in body["items"]] == [vendor["id"]]
    status, body = await api.get(f"/api/v1/search?q={word}&kind=vendors")
    assert status == 401
    await ws.close()


async def test_bad_search_input_is_typed(api: Api, settings: Settings) -> None:
    user = await api.signup("badsearch")
    ws = await api.connect(user)
    deep = "czo1MDE"  # an offset past the bound, well formed
    for data in (
        {"q": "", "kind": "posts"},
        {"q": "   ", "kind": "posts"},
        {"q": "x" * 101, "kind": "posts"},
        {"q": "bread", "kind": "comments"},
        {"q": "bread"},
        {"q": "bread", "kind": "posts", "lat": 1.0},
        {"q": "bread", "kind": "posts", "limit": 51},
        {"q": "bread", "kind": "posts", "limit": 0},
        {"q": "bread", "kind": "posts", "cursor": "!!"},
        {"q": "bread", "kind": "posts", "cursor": deep},
        {"q": "bread", "kind": "posts", "extra": 1},
    ):
        reply = await ws.request("search", data)
        assert not reply["ok"] and reply["error"]["code"] == "bad_request", (data, reply)
    # punctuation and operators are words to websearch_to_tsquery, never a syntax error
    for q in ("'", '"', "-", "a & | ! (", "%", "_", "\\", "<%"):
        page = await _search(ws, q=q, kind="posts")
        assert isinstance(page["items"], list)
    for query in ("q=&kind=posts", "q=bread&kind=nope", "q=bread&kind=posts&limit=500",
                  "kind=posts", f"q={'y' * 300}&kind=users"):  # fmt: skip
        status, body = await api.get(f"/api/v1/search?{query}", user.access_token)
        assert status == 400 and body["error"]["code"] == "bad_request", (query, body)
    await ws.close()
