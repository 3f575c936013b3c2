"""What the other browser tests leave of a neighbour's and a buyer's day: comments live both
ways, the market's search and filters, and a message to a vendor from its listing, with the
read receipt ("Seen") when the vendor reads it and the vendor's answer live."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect

from hyperlocal_client import Api, Socket
from tests.browser.conftest import PASSWORD, Pages, pick_spot, sign_up

pytestmark = pytest.mark.integration


async def _event(ws: Socket, ev: str, match: Any) -> dict[str, Any]:
    """The next ``ev`` event whose data ``match`` accepts (others skipped)."""
    while True:
        frame = await ws.next_event(ev)
        if match(frame["data"]):
            return frame


async def _shown(page: Page, titles: list[str]) -> None:
    grid = page.get_by_role("list", name="Listings near you")
    await expect(grid.get_by_role("article")).to_have_count(len(titles))
    for i, title in enumerate(titles):
        await expect(grid.get_by_role("article").nth(i)).to_have_accessible_name(title)


async def test_comments_market_search_and_a_message_to_the_vendor(
    pages: Pages, client_api: Api, spot: tuple[float, float]
) -> None:
    lat, lng = spot
    vic = await client_api.signup(f"vic-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Vic")
    await client_api.become_vendor(vic, "Vic's Veg", "produce", lat, lng)
    for title, category, price in [
        ("Carrots", "produce", 200),
        ("Pumpkin", "produce", 900),
        ("Honey", "pantry", 500),
    ]:
        await client_api.create_listing(vic, title=title, category=category, price=price, stock=5)
    ned = await client_api.signup(f"ned-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Ned")
    page = await pages.open("/")
    await sign_up(page, "Ada")
    await pick_spot(page, lat, lng)
    async with await client_api.connect(ned) as nws, await client_api.connect(vic) as vws:
        await nws.request("locate", {"lat": lat, "lng": lng})
        await page.get_by_label("Write a post").fill("Who has seedlings?")
        await page.get_by_role("button", name="Post", exact=True).click()
        created = await _event(
            nws, "post.created", lambda d: d["post"]["text"] == "Who has seedlings?"
        )
        post_id = created["data"]["post"]["id"]
        await nws.mutate("comment.create", {"post_id": post_id, "text": "I do, tomatoes"})
        post = page.get_by_role("article", name="Post: Who has seedlings?")
        await post.get_by_role("button", name="Comments (1)").click()  # the count came live
        await expect(post.get_by_role("list", name="Comments")).to_contain_text("I do, tomatoes")
        await post.get_by_label("Write a comment").fill("thanks Ned!")
        await post.get_by_role("button", name="Comment", exact=True).click()
        await _event(nws, "comment.created", lambda d: d["comment"]["text"] == "thanks Ned!")

        # the market: everything near, then a search, a category, a price cap with a sort
        await page.get_by_role("link", name="Market").click()
        search = page.get_by_role("search", name="Search listings")
        grid = page.get_by_role("list", name="Listings near you")
        await expect(grid.get_by_role("article")).to_have_count(3)  # all three, near first
        await search.get_by_label("Search").fill("carrots")
        await search.get_by_role("button", name="Search").click()
        await _shown(page, ["Carrots"])
        await search.get_by_label("Search").fill("")
        await search.get_by_label("Category").fill("pantry")
        await search.get_by_role("button", name="Search").click()
        await _shown(page, ["Honey"])
        await search.get_by_label("Category").fill("")
        await search.get_by_label("Max price (cents)").fill("600")
        await search.get_by_label("Sort").select_option("price")
        await search.get_by_role("button", name="Search").click()
        await _shown(page, ["Carrots", "Honey"])

        # a message to the vendor from its listing; the vendor reads it, then answers
        carrots = page.get_by_role("article", name="Carrots")
        await carrots.get_by_role("button", name="Message Vic's Veg").click()
        await page.get_by_label("Message", exact=True).fill("Are the carrots organic?")
        await page.get_by_role("button", name="Send").click()
        got = await _event(vws, "chat.message", lambda d: d["message"]["text"].startswith("Are"))
        message = got["data"]["message"]
        await vws.mutate("chat.read", {"room_id": message["room_id"], "offset": message["offset"]})
        await expect(page.get_by_text("Seen", exact=True)).to_be_visible()
        await vws.mutate("chat.send", {"room_id": message["room_id"], "text": "Yes, all of them"})
        messages = page.get_by_role("list", name="Messages")
        await expect(messages.get_by_text("Yes, all of them")).to_be_visible()
