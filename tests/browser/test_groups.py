"""A group room made from the chat view: its name and members picked from people found by
name (``room.create``); a member hears of it (``room.added``) and their message shows live."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import expect

from hyperlocal_client import Api
from tests.browser.conftest import PASSWORD, Pages, pick_spot, sign_up, user_id

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


async def test_a_member_adds_someone_and_leaves_from_the_room(
    pages: Pages, client_api: Api, spot: tuple[float, float]
) -> None:
    """In a group room's view: its members (live: one leaving elsewhere drops from the list),
    someone found by name added (``room.add``: they hear ``room.added``, and ``rooms.list``
    has them), then leaving it (``room.leave``): the room is gone from the page's rooms and
    from the members the others see."""
    tag = uuid.uuid4().hex[:6]
    rex = await client_api.signup(f"rex-{tag}@example.test", PASSWORD, f"Rex{tag}")
    kit_name = f"Kit{tag}"
    kit = await client_api.signup(f"kit-{tag}@example.test", PASSWORD, kit_name)
    page = await pages.open("/")
    await sign_up(page, "Sol")
    await pick_spot(page, *spot)
    sol_id = await user_id(page)
    async with await client_api.connect(rex) as rex_ws, await client_api.connect(kit) as kit_ws:
        await rex_ws.request("locate", {"lat": spot[0], "lng": spot[1]})
        title = f"Choir {tag}"
        room = (await rex_ws.mutate("room.create", {"title": title, "members": [sol_id]}))["room"]
        room_id = room["id"]
        await page.get_by_role("link", name="Chat").click()
        await page.get_by_role("navigation", name="Rooms").get_by_role("link", name=title).click()
        await page.get_by_role("heading", name=title).wait_for()
        panel = page.get_by_role("region", name="Members")
        members = panel.get_by_role("list", name="Members")
        await expect(members.get_by_role("listitem")).to_have_count(2)  # Rex and you
        await expect(members.get_by_text(f"Rex{tag}")).to_be_visible()

        await panel.get_by_label("Add someone").fill(kit_name)
        await panel.get_by_role("button", name="Find").click()
        await panel.get_by_role("button", name=f"Add {kit_name} to this room").click()
        await expect(members.get_by_text(kit_name)).to_be_visible()
        added = await kit_ws.next_event("notification")
        assert added["data"]["kind"] == "room.added", added
        (seen,) = [r for r in (await kit_ws.request("rooms.list"))["rooms"] if r["id"] == room_id]
        assert sorted(seen["members"]) == sorted([rex.id, sol_id, kit.id])

        await rex_ws.mutate("room.leave", {"room_id": room["id"]})  # elsewhere: live here
        await expect(members.get_by_text(f"Rex{tag}")).to_have_count(0)
        await expect(members.get_by_role("listitem")).to_have_count(2)

        await panel.get_by_role("button", name="Leave group").click()
        await panel.get_by_role("button", name="Stay").click()  # asked twice: nothing yet
        await panel.get_by_role("button", name="Leave group").click()
        await panel.get_by_role("button", name="Yes, leave").click()
        rooms = page.get_by_role("navigation", name="Rooms")
        await rooms.wait_for()
        await expect(rooms.get_by_role("link", name=title)).to_have_count(0)
        (left,) = [r for r in (await kit_ws.request("rooms.list"))["rooms"] if r["id"] == room_id]
        assert left["members"] == [kit.id]
        history = await kit_ws.call("chat.history", {"room_id": room["id"]})
        assert history["ok"]  # the room lives on for its last member
