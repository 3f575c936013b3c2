"""Two people in the same neighbourhood, each in a browser context of their own: each sees the
other's post and chat message live, without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Pages, pick_spot, sign_up
from tests.images import png

pytestmark = pytest.mark.integration

ROOM_READY = re.compile(r"^(Here now: .+|Nobody else is here right now)$")
"""A chat room's presence line: shown once the view has read the room's history and presence."""


async def test_post_and_chat_live_between_two_browsers(
    pages: Pages, spot: tuple[float, float]
) -> None:
    ada = await pages.open("/")
    bob = await pages.open("/")
    await sign_up(ada, "Ada")
    await sign_up(bob, "Bob")
    lat, lng = spot
    await pick_spot(ada, lat, lng)
    # Bob uses the browser's geolocation (granted to his context)
    await bob.context.grant_permissions(["geolocation"])
    await bob.context.set_geolocation({"latitude": lat + 0.0005, "longitude": lng})
    await bob.get_by_role("button", name="Use my location").click()
    await bob.get_by_role("heading", name="Your neighbourhood").wait_for()
    await expect(ada.get_by_role("img", name="Map of your neighbourhood")).to_be_visible()

    await ada.get_by_label("Write a post").fill("Fresh bread at the corner, from Ada")
    photo = {"name": "bread.png", "mimeType": "image/png", "buffer": png(120, 80)}
    await ada.get_by_label("Photo").set_input_files(files=[photo])  # through POST /api/v1/media
    await ada.get_by_role("button", name="Post", exact=True).click()
    posts = bob.get_by_role("list", name="Posts near you")
    await expect(posts.get_by_text("Fresh bread at the corner, from Ada")).to_be_visible()
    image = posts.get_by_role("img", name="photo of the post")
    await expect(image).to_be_visible()
    assert await image.evaluate("img => img.complete && img.naturalWidth > 0")

    # Bob comments and likes; Ada sees both live
    bob_post = bob.get_by_role("article", name="Post: Fresh bread")
    await bob_post.get_by_role("button", name="Like post").click()
    await expect(
        ada.get_by_role("article", name="Post: Fresh bread").get_by_role(
            "button", name="Like post, 1 likes"
        )
    ).to_be_visible()
    alerts = ada.get_by_role("navigation", name="Sections").get_by_role("link", name="Alerts")
    await expect(alerts).to_contain_text("1")  # the notification centre heard of the like
    await alerts.click()
    centre = ada.get_by_role("list", name="Notifications")
    await expect(centre.get_by_text("liked your post")).to_be_visible()
    await expect(centre.get_by_role("link", name="Bob")).to_be_visible()
    await ada.get_by_role("button", name="Mark all read").click()
    await expect(ada.get_by_text("0 unread")).to_be_visible()
    await expect(alerts).not_to_contain_text("1")

    for page in (ada, bob):
        await page.get_by_role("link", name="Chat").click()
        await page.get_by_role("link", name="Neighbourhood room").click()
        await page.get_by_role("heading", name="Neighbourhood room").wait_for()
    for page in (ada, bob):  # the room is set up (history and presence read) before anyone types
        await expect(page.get_by_text(ROOM_READY)).to_be_visible()
    await bob.get_by_label("Message", exact=True).fill("Hi Ada, saving me a loaf?")
    await expect(ada.get_by_text("Bob is typing…")).to_be_visible()
    await bob.get_by_role("button", name="Send").click()
    messages = ada.get_by_role("list", name="Messages")
    await expect(messages.get_by_text("Hi Ada, saving me a loaf?")).to_be_visible()
    await expect(ada.get_by_text("Here now: Bob")).to_be_visible()
