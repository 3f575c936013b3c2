"""The neighbourhood feed over real websockets, shards, Postgres and Redis."""

from __future__ import annotations

import asyncio
import uuid

import h3
import pytest

from cluster.config import Settings
from tests.integration.client import Api

pytestmark = pytest.mark.integration

# Lower Manhattan; "far" is about 8 km north.
HOME = (40.7128, -74.0060)
FAR = (40.7850, -73.9700)


def neighbour_of(lat: float, lng: float, settings: Settings) -> tuple[float, float]:
    cell = h3.latlng_to_cell(lat, lng, settings.h3_resolution)
    ring = sorted(h3.grid_ring(cell, 1))
    return h3.cell_to_latlng(ring[0])


def spot(settings: Settings, i: int) -> tuple[float, float]:
    """A fresh neighbourhood per test so tests do not see each other's posts."""
    base = h3.latlng_to_cell(HOME[0], HOME[1], settings.h3_resolution)
    far_cell = sorted(h3.grid_ring(base, 6 + 3 * i))[0]
    return h3.cell_to_latlng(far_cell)


async def test_neighbour_receives_post_live_and_in_feed_far_user_does_not(
    api: Api, settings: Settings
) -> None:
    here = spot(settings, 0)
    near = neighbour_of(*here, settings)
    alice, bob = await api.signup("alice"), await api.signup("bob")
    carol = await api.signup("carol")
    a, b, c = await api.connect(alice), await api.connect(bob), await api.connect(carol)
    located = await a.ok("locate", {"lat": here[0], "lng": here[1]})
    assert len(located["cells"]) == 7 and located["streams"][0] == f"feed:{located['cell']}"
    await b.ok("locate", {"lat": near[0], "lng": near[1]})
    far = (here[0] + 0.072, here[1])  # about 8 km north
    await c.ok("locate", {"lat": far[0], "lng": far[1]})

    post = (await a.mutate("post.create", {"text": "fresh bread at the corner"}))["post"]

    event = await b.next_event("post.created")
    assert event["data"]["post"]["id"] == post["id"]
    assert event["stream"] == f"feed:{post['cell']}" and event["offset"] >= 1 and event["epoch"]
    feed = await b.ok("feed.get", {})
    assert post["id"] in [p["id"] for p in feed["items"]]

    await c.no_event("post.created", wait=1.0)
    far_feed = await c.ok("feed.get", {})
    assert post["id"] not in [p["id"] for p in far_feed["items"]]
    for ws in (a, b, c):
        await ws.close()


async def test_same_key_twice_makes_one_post(api: Api, settings: Settings) -> None:
    here = spot(settings, 1)
    user = await api.signup()
    ws = await api.connect(user)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    key = uuid.uuid4().hex
    first = await ws.ok("post.create", {"text": "only once"}, key=key)
    second = await ws.ok("post.create", {"text": "only once"}, key=key)
    assert first == second
    feed = await ws.ok("feed.get", {"limit": 100})
    assert [p["id"] for p in feed["items"]].count(first["post"]["id"]) == 1
    assert sum(p["text"] == "only once" for p in feed["items"]) == 1
    # The same key for another op is a conflict, not a silent success.
    reply = await ws.request("post.like", {"post_id": first["post"]["id"]}, key=key)
    assert reply["error"]["code"] == "conflict"

    # The same key many times at once (one shard batch, most likely): still one post.
    racing = uuid.uuid4().hex
    replies = await asyncio.gather(
        *(ws.request("post.create", {"text": "raced"}, key=racing) for _ in range(6)),
        ws.mutate("post.create", {"text": "bystander"}),
    )
    ids = {r["data"]["post"]["id"] for r in replies[:6]}
    assert all(r["ok"] for r in replies[:6]) and len(ids) == 1
    feed = await ws.ok("feed.get", {"limit": 100})
    assert sum(p["text"] == "raced" for p in feed["items"]) == 1
    assert sum(p["text"] == "bystander" for p in feed["items"]) == 1
    await ws.close()


async def test_comment_on_missing_post_is_not_found(api: Api, settings: Settings) -> None:
    user = await api.signup()
    ws = await api.connect(user)
    cell = h3.latlng_to_cell(*spot(settings, 2), settings.h3_resolution)
    for post_id in (f"{cell}.0000000000000000", "nonsense", "8a2a1072b59ffff.zzzz"):
        reply = await ws.request("comment.create", {"post_id": post_id, "text": "hi"}, key=post_id)
        assert reply["ok"] is False and reply["error"]["code"] == "not_found", reply
    await ws.close()


async def test_like_and_comment_reach_the_author_live(api: Api, settings: Settings) -> None:
    here = spot(settings, 3)
    author, fan = await api.signup("author"), await api.signup("fan")
    a, f = await api.connect(author), await api.connect(fan)
    await a.ok("locate", {"lat": here[0], "lng": here[1]})
    post = (await a.mutate("post.create", {"text": "like me"}))["post"]

    liked = await f.mutate("post.like", {"post_id": post["id"]})
    assert liked == {"post_id": post["id"], "liked": True, "like_count": 1}
    event = await a.next_event("post.liked")
    assert event["data"] == {"post_id": post["id"], "user_id": fan.id, "like_count": 1}
    note = await a.next_event("notification")
    assert note["stream"] == f"user:{author.id}"
    assert note["data"]["kind"] == "post.liked" and note["data"]["by"] == fan.id

    again = await f.mutate("post.like", {"post_id": post["id"]})
    assert again["like_count"] == 1  # liking twice changes nothing

    comment = (await f.mutate("comment.create", {"post_id": post["id"], "text": "nice"}))["comment"]
    event = await a.next_event("comment.created")
    assert event["data"]["comment"]["id"] == comment["id"]
    unliked = await f.mutate("post.unlike", {"post_id": post["id"]})
    assert unliked["like_count"] == 0
    feed = await a.ok("feed.get", {})
    mine = next(p for p in feed["items"] if p["id"] == post["id"])
    assert mine["like_count"] == 0 and mine["comment_count"] == 1
    await a.close()
    await f.close()


async def test_follow_notifies_and_rejects_bad_targets(api: Api) -> None:
    alice, bob = await api.signup("alice"), await api.signup("bob")
    a, b = await api.connect(alice), await api.connect(bob)
    assert await a.mutate("user.follow", {"user_id": bob.id}) == {
        "user_id": bob.id,
        "following": True,
    }
    note = await b.next_event("notification")
    assert note["data"] == {"kind": "user.followed", "by": alice.id}
    reply = await a.request("user.follow", {"user_id": "nobody"}, key=uuid.uuid4().hex)
    assert reply["error"]["code"] == "not_found"
    reply = await a.request("user.follow", {"user_id": alice.id}, key=uuid.uuid4().hex)
    assert reply["error"]["code"] == "bad_request"
    assert (await a.mutate("user.unfollow", {"user_id": bob.id}))["following"] is False
    await a.close()
    await b.close()


async def test_reconnect_with_position_gets_exactly_the_missed_events(
    api: Api, settings: Settings
) -> None:
    here = spot(settings, 4)
    poster, reader = await api.signup("poster"), await api.signup("reader")
    p = await api.connect(poster)
    await p.ok("locate", {"lat": here[0], "lng": here[1]})
    r = await api.connect(reader)
    located = await r.ok("locate", {"lat": here[0], "lng": here[1]})
    stream = located["streams"][0]
    await p.mutate("post.create", {"text": "before"})
    seen = await r.next_event("post.created")
    position = {"epoch": seen["epoch"], "offset": seen["offset"]}
    await r.close()

    missed = [
        (await p.mutate("post.create", {"text": f"missed {i}"}))["post"]["id"] for i in range(3)
    ]

    r2 = await api.connect(reader)
    sub = await r2.ok("subscribe", {"stream": stream, "since": position})
    assert sub["recovered"] is True
    assert [e["data"]["post"]["id"] for e in sub["events"]] == missed
    assert [e["offset"] for e in sub["events"]] == [position["offset"] + i for i in (1, 2, 3)]
    # ...and then live, with no duplicate and no gap.
    after = (await p.mutate("post.create", {"text": "after"}))["post"]["id"]
    live = await r2.next_event("post.created")
    assert live["data"]["post"]["id"] == after and live["offset"] == position["offset"] + 4

    stale = await r2.ok("subscribe", {"stream": stream, "since": {"epoch": "nope", "offset": 1}})
    assert stale["recovered"] is False and stale["epoch"] == seen["epoch"]
    assert stale["offset"] == position["offset"] + 4
    ahead = await r2.ok(
        "subscribe", {"stream": stream, "since": {"epoch": seen["epoch"], "offset": 10**9}}
    )
    assert ahead["recovered"] is False
    await p.close()
    await r2.close()


async def test_inbox_of_another_user_is_forbidden(api: Api) -> None:
    alice, bob = await api.signup(), await api.signup()
    a = await api.connect(alice)
    reply = await a.request("subscribe", {"stream": f"user:{bob.id}"})
    assert reply["error"]["code"] == "forbidden"
    reply = await a.request("subscribe", {"stream": "feed:not-a-cell"})
    assert reply["error"]["code"] == "not_found"
    await a.close()


async def test_feed_pages_with_cursor(api: Api, settings: Settings) -> None:
    here = spot(settings, 5)
    user = await api.signup()
    ws = await api.connect(user)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    made = [(await ws.mutate("post.create", {"text": f"p{i}"}))["post"]["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await ws.ok("feed.get", {"limit": 3, **({"cursor": cursor} if cursor else {})})
        seen.extend(p["id"] for p in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(made))
    bad = await ws.request("feed.get", {"cursor": "!!!"})
    assert bad["error"]["code"] == "bad_request"
    await ws.close()


async def test_msgpack_subprotocol(api: Api, settings: Settings) -> None:
    here = spot(settings, 6)
    user = await api.signup()
    ws = await api.connect(user, protocol="hl.msgpack")
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    post = (await ws.mutate("post.create", {"text": "binary"}))["post"]
    event = await ws.next_event("post.created")
    assert event["data"]["post"]["id"] == post["id"]
    await ws.close()


async def test_concurrent_posts_from_many_sockets_are_all_durable(
    api: Api, settings: Settings
) -> None:
    here = spot(settings, 7)
    users = [await api.signup(f"u{i}") for i in range(8)]
    sockets = [await api.connect(u) for u in users]
    for ws in sockets:
        await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    replies = await asyncio.gather(
        *(
            ws.mutate("post.create", {"text": f"burst {i}-{j}"})
            for i, ws in enumerate(sockets)
            for j in range(5)
        )
    )
    ids = {r["post"]["id"] for r in replies}
    assert len(ids) == 40
    feed = await sockets[0].ok("feed.get", {"limit": 100})
    assert ids <= {p["id"] for p in feed["items"]}
    for ws in sockets:
        await ws.close()
