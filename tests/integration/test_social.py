"""Profiles, follow lists, the following feed, post pages, deletion, reposts, vendors near a
point and buyer–seller chat, over real websockets, shards, Postgres and Redis (issue 16)."""

from __future__ import annotations

import uuid
from typing import Any

import h3
import pytest

from cluster.config import Settings
from tests import images
from tests.integration import market_kit as mk
from tests.integration.client import Api, Ws
from tests.integration.test_media import upload

pytestmark = pytest.mark.integration

LISBON = (38.7223, -9.1393)  # away from every other test's neighbourhoods


def spot(settings: Settings, i: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(LISBON[0], LISBON[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 5 + 4 * i))[0])


async def _located(api: Api, where: tuple[float, float], name: str) -> tuple[Any, Ws]:
    user = await api.signup(name)
    ws = await api.connect(user)
    await ws.ok("locate", {"lat": where[0], "lng": where[1]})
    return user, ws


async def test_profile_read_edit_and_bad_input(api: Api, settings: Settings) -> None:
    user = await api.signup("pat")
    other = await api.signup("quinn")
    status, body = await api.get(f"/api/v1/users/{user.id}", other.access_token)
    assert status == 200, body
    profile = body["user"]
    assert profile["display_name"] == "pat" and profile["bio"] == "" and profile["avatar"] is None
    assert (profile["followers"], profile["following"], profile["posts"]) == (0, 0, 0)
    assert profile["joined_at"] and "vendor" not in profile and "email" not in profile

    status, photo = await upload(api, user, images.gps_jpeg())
    assert status == 201, photo
    avatar = photo["media"]["id"]
    edit = {"bio": "  I bake on Sundays  ", "avatar_media_id": avatar, "display_name": "Pat"}
    status, body = await mk.rest(api, "PATCH", "/api/v1/me", edit, user.access_token)
    assert status == 200, body
    assert body["user"]["bio"] == "I bake on Sundays" and body["user"]["avatar"] == avatar
    assert body["user"]["avatar_url"].endswith(f"/media/{avatar}/256.webp")
    assert body["user"]["display_name"] == "Pat"
    status, described = await api.get(f"/api/v1/media/{avatar}", other.access_token)
    assert status == 200 and described["media"]["attached"], described  # used: never expires
    ws = await api.connect(other)
    seen = await ws.ok("user.get", {"user_id": user.id})
    assert seen["user"]["bio"] == "I bake on Sundays"

    # bad input: typed, and nothing changes
    for bad in (
        {"bio": "x" * 281},
        {"display_name": ""},
        {"avatar_media_id": "not a media id!"},
        {"avatar_media_id": "m" + "0" * 32, "bio": "never saved"},
        {"email": "a@b.c"},
        {"bio": None},
        {},
    ):
        status, body = await mk.rest(api, "PATCH", "/api/v1/me", bad, user.access_token)
        expected = ("not_found", 404) if "bio" in bad and len(bad) == 2 else ("bad_request", 400)
        assert (body["error"]["code"], status) == expected, (bad, body)
    # another user's upload is not yours to wear
    status, theirs = await upload(api, other, images.gps_jpeg())
    assert status == 201, theirs
    status, body = await mk.rest(
        api, "PATCH", "/api/v1/me", {"avatar_media_id": theirs["media"]["id"]}, user.access_token
    )
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = await mk.rest(api, "PATCH", "/api/v1/me", {"bio": "x"})
    assert status == 401
    status, body = await api.get(f"/api/v1/users/{user.id}", other.access_token)
    assert body["user"]["bio"] == "I bake on Sundays" and body["user"]["display_name"] == "Pat"
    assert body["user"]["avatar"] == avatar
    # clearing the avatar
    status, body = await mk.rest(
        api, "PATCH", "/api/v1/me", {"avatar_media_id": None}, user.access_token
    )
    assert status == 200 and body["user"]["avatar"] is None and "avatar_url" not in body["user"]
    status, body = await api.get("/api/v1/users/nobody", other.access_token)
    assert status == 404 and body["error"]["code"] == "not_found"
    reply = await ws.request("user.get", {"user_id": "nobody"})
    assert reply["error"]["code"] == "not_found"
    await ws.close()


async def test_follow_lists_counts_and_following_feed(api: Api, settings: Settings) -> None:
    here = spot(settings, 0)
    far = spot(settings, 3)
    star, star_ws = await _located(api, far, "star")
    fans = [await api.signup(f"fan{i}") for i in range(5)]
    for fan in fans:
        ws = await api.connect(fan)
        await ws.mutate("user.follow", {"user_id": star.id})
        await ws.close()
    me, me_ws = await _located(api, here, "me")
    await me_ws.mutate("user.follow", {"user_id": star.id})
    await me_ws.mutate("user.follow", {"user_id": fans[0].id})

    # followers of the star: six, newest first, in pages of two
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        data: dict[str, Any] = {"user_id": star.id, "limit": 2}
        if cursor:
            data["cursor"] = cursor
        page = await me_ws.ok("user.followers", data)
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [me.id, *[f.id for f in reversed(fans)]]
    status, body = await api.get(f"/api/v1/users/{me.id}/following?limit=10", me.access_token)
    assert status == 200 and {x["id"] for x in body["items"]} == {star.id, fans[0].id}
    status, body = await api.get(f"/api/v1/users/{me.id}/following?cursor=@@", me.access_token)
    assert status == 400 and body["error"]["code"] == "bad_request"
    profile = (await me_ws.ok("user.get", {"user_id": star.id}))["user"]
    assert profile["followers"] == 6 and profile["following"] == 0

    # the following feed: the star's posts far away, none of the strangers' posts nearby
    posts = [(await star_ws.mutate("post.create", {"text": f"far {i}"}))["post"] for i in range(3)]
    _, stranger_ws = await _located(api, here, "stranger")
    await stranger_ws.mutate("post.create", {"text": "near but not followed"})
    page = await me_ws.ok("feed.get", {"sort": "following", "limit": 2})
    assert page["sort"] == "following"
    assert [p["id"] for p in page["items"]] == [posts[2]["id"], posts[1]["id"]]
    rest = await me_ws.ok("feed.get", {"sort": "following", "cursor": page["next_cursor"]})
    assert [p["id"] for p in rest["items"]] == [posts[0]["id"]] and rest["next_cursor"] is None
    profile = (await me_ws.ok("user.get", {"user_id": star.id}))["user"]
    assert profile["posts"] == 3
    bad = await me_ws.request("feed.get", {"sort": "followers"})
    assert bad["error"]["code"] == "bad_request"
    for ws in (star_ws, me_ws, stranger_ws):
        await ws.close()


async def test_post_page_delete_and_share(api: Api, settings: Settings) -> None:
    here = spot(settings, 1)
    there = spot(settings, 4)
    author, a = await _located(api, here, "author")
    _, b = await _located(api, here, "neighbour")
    sharer, s = await _located(api, there, "sharer")
    post = (await a.mutate("post.create", {"text": "lost cat, grey"}))["post"]
    for i in range(5):
        await b.mutate("comment.create", {"post_id": post["id"], "text": f"comment {i}"})

    page = await s.ok("post.get", {"post_id": post["id"], "limit": 3})
    assert page["post"]["id"] == post["id"] and page["post"]["comment_count"] == 5
    assert [c["text"] for c in page["comments"]] == ["comment 0", "comment 1", "comment 2"]
    more = await s.ok("post.get", {"post_id": post["id"], "cursor": page["next_cursor"]})
    assert [c["text"] for c in more["comments"]] == ["comment 3", "comment 4"]
    assert more["next_cursor"] is None

    # share into the sharer's own cell feed, attributed; the author hears of it
    shared = await s.mutate("post.share", {"post_id": post["id"], "text": "help find her"})
    repost = shared["post"]
    assert repost["cell"] != post["cell"] and repost["author_id"] == sharer.id
    assert repost["shared_from"] == {
        "post_id": post["id"], "author_id": author.id, "cell": post["cell"]
    }  # fmt: skip
    notice = await a.next_event("notification")
    while notice["data"]["kind"] != "post.shared":
        notice = await a.next_event("notification")
    assert notice["data"]["share_id"] == repost["id"]
    feed = await s.ok("feed.get", {"sort": "newest"})
    assert repost["id"] in [p["id"] for p in feed["items"]]
    again = await s.ok("post.share", {"post_id": repost["id"]}, key=uuid.uuid4().hex)
    assert again["post"]["shared_from"]["post_id"] == post["id"]  # the first original
    assert (await s.ok("post.get", {"post_id": post["id"]}))["post"]["share_count"] == 2

    # deletion: only the author; the neighbourhood sees post.removed live; gone everywhere
    denied = await b.request("post.delete", {"post_id": post["id"]}, key=uuid.uuid4().hex)
    assert denied["error"]["code"] == "forbidden"
    assert (await b.ok("post.get", {"post_id": post["id"]}))["post"]["id"] == post["id"]
    done = await a.mutate("post.delete", {"post_id": post["id"]})
    assert done == {"post_id": post["id"], "deleted": True}
    removed = await b.next_event("post.removed")
    assert removed["data"]["post_id"] == post["id"] and removed["stream"] == f"feed:{post['cell']}"
    gone = await b.request("post.get", {"post_id": post["id"]})
    assert gone["error"]["code"] == "not_found"
    feed = await b.ok("feed.get", {"sort": "newest"})
    assert post["id"] not in [p["id"] for p in feed["items"]]
    twice = await a.request("post.delete", {"post_id": post["id"]}, key=uuid.uuid4().hex)
    assert twice["error"]["code"] == "not_found"
    for bad in ({"post_id": "nope"}, {}):
        reply = await a.request("post.delete", bad, key=uuid.uuid4().hex)
        assert reply["error"]["code"] in ("not_found", "bad_request"), reply
    reply = await s.request("post.share", {"post_id": post["id"]}, key=uuid.uuid4().hex)
    assert reply["error"]["code"] == "not_found"  # a deleted post cannot be shared
    reply = await s.request("post.get", {"post_id": post["id"], "limit": 0})
    assert reply["error"]["code"] == "bad_request"
    for ws in (a, b, s):
        await ws.close()


async def test_vendors_nearby_and_buyer_seller_chat(api: Api, settings: Settings) -> None:
    here = spot(settings, 2)
    near_vendor_user, near_vendor = await mk.vendor(api, here, "Near-Bakery")
    far_user, far_vendor = await mk.vendor(api, spot(settings, 5), "Far-Bakery")
    listing = await mk.listing(api, near_vendor_user.access_token, title="Rye bread")
    assert listing["vendor"] == {
        "id": near_vendor["id"], "name": "Near-Bakery", "user_id": near_vendor_user.id
    }  # fmt: skip
    buyer, ws = await _located(api, here, "buyer")
    page = await ws.ok("vendors.nearby", {"lat": here[0], "lng": here[1]})
    ids = [v["id"] for v in page["items"]]
    assert near_vendor["id"] in ids and far_vendor["id"] not in ids
    assert all("distance_m" in v for v in page["items"])
    got = await ws.ok("listing.get", {"listing_id": listing["id"]})
    assert got["listing"]["vendor"]["user_id"] == near_vendor_user.id
    nearby = await ws.ok("listings.nearby", {"lat": here[0], "lng": here[1]})
    assert all(x["vendor"]["id"] == x["vendor_id"] for x in nearby["items"])

    opened = await ws.ok("chat.open", {"vendor_id": near_vendor["id"]})
    assert opened["vendor"]["user_id"] == near_vendor_user.id
    room = opened["room"]
    assert sorted(room["members"]) == sorted([buyer.id, near_vendor_user.id])
    direct = await ws.ok("chat.open", {"user_id": near_vendor_user.id})
    assert direct["room"]["id"] == room["id"]

    out = await mk.buy(ws, listing["id"], 1, mk.APPROVE)
    assert out["ok"], out
    order = out["data"]["orders"][0]
    assert order["vendor"]["name"] == "Near-Bakery" and order["room_id"] == room["id"]
    listed = await ws.ok("orders.list", {})
    assert listed["items"][0]["room_id"] == room["id"]
    by_order = await ws.ok("chat.open", {"order_id": order["id"]})
    assert by_order["room"]["id"] == room["id"] and by_order["order_id"] == order["id"]
    seller = await api.connect(near_vendor_user)
    from_seller = await seller.ok("chat.open", {"order_id": order["id"]})
    assert from_seller["room"]["id"] == room["id"]
    status, body = await mk.rest(
        api, "GET", f"/api/v1/vendor/orders/{order['id']}", None, near_vendor_user.access_token
    )
    assert status == 200 and body["order"]["room_id"] == room["id"]
    profile = (await ws.ok("user.get", {"user_id": near_vendor_user.id}))["user"]
    assert profile["vendor"]["id"] == near_vendor["id"]

    # bad input and other people's orders
    stranger = await api.connect(far_user)
    for data, code in (
        ({"order_id": order["id"]}, "not_found"),
        ({"vendor_id": "nope"}, "not_found"),
        ({"vendor_id": far_vendor["id"]}, "bad_request"),  # one's own vendor profile
        ({}, "bad_request"),
        ({"user_id": buyer.id, "vendor_id": near_vendor["id"]}, "bad_request"),
    ):
        reply = await stranger.request("chat.open", data)
        assert reply["error"]["code"] == code, (data, reply)
    bad = await ws.request("vendors.nearby", {"lat": 91, "lng": 0})
    assert bad["error"]["code"] == "bad_request"
    bad = await ws.request("vendors.nearby", {"lat": 1, "lng": 1, "cursor": "zz"})
    assert bad["error"]["code"] == "bad_request"
    for w in (ws, seller, stranger):
        await w.close()
