"""A group room made from the chat view: its name and members picked from people found by
name (``room.create``); a member hears of it (``room.added``) and their message shows live."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import expect

from hyperlocal_client import Api
from tests.browser.conftest import PASSWORD, Pages, pick_spot, sign_up

pytestmark = pytest.mark.integration


async def test_a_group_room_is_created_from_the_chat_view(
    pages: Pages, client_api: Api, spot: tuple[float, float]
) -> None:
    name = f"Rex{uuid.uuid4().hex[:6]}"
    rex = await client_api.signup(f"{name.lower()}@example.test", PASSWORD, name)
    page = await pages.open("/")
    await sign_up(page, "Sol")
    await pick_spot(page, *spot)
    async with await client_api.connect(rex) as ws:
        await page.get_by_role("link", name="Chat").click()
        group = page.get_by_role("region", name="New group room")
        await group.get_by_label("Group name").fill("Allotment")
        await group.get_by_role("button", name="Create group").click()  # nobody added yet
        await expect(group.get_by_role("alert")).to_have_text("Add at least one person first")
        await group.get_by_label("Add people").fill(name)
        await group.get_by_role("button", name="Find").click()
        await group.get_by_role("button", name=f"Add {name} to the group").click()
        members = group.get_by_role("list", name="Members of the new group")
        await expect(members.get_by_text(name)).to_be_visible()
        await group.get_by_role("button", name="Create group").click()
        await page.get_by_role("heading", name="Allotment").wait_for()

        added = await ws.next_event("notification")
        assert added["data"]["kind"] == "room.added", added
        rooms = (await ws.request("rooms.list"))["rooms"]
        (room,) = [r for r in rooms if r["title"] == "Allotment"]
        assert page.url.endswith(f"#/chat/{room['id']}")
        assert room["kind"] == "group" and len(room["members"]) == 2
        await ws.mutate("chat.send", {"room_id": room["id"], "text": "tomatoes are in"})
        messages = page.get_by_role("list", name="Messages")
        await expect(messages.get_by_text("tomatoes are in")).to_be_visible()  # live
        await page.get_by_label("Message", exact=True).fill("I'll bring the basil")
        await page.get_by_role("button", name="Send").click()
        await expect(messages.get_by_text("I'll bring the basil")).to_be_visible()  # acked
        history = await ws.request("chat.history", {"room_id": room["id"]})
        assert [m["text"] for m in history["messages"]] == [
            "tomatoes are in",
            "I'll bring the basil",
        ]
        await page.get_by_role("link", name="← All rooms").click()
        await expect(
            page.get_by_role("navigation", name="Rooms").get_by_role("link", name="Allotment")
        ).to_be_visible()
