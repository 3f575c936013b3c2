"""The server drops a browser's socket: the page reconnects, resumes its streams with `since`
and loses nothing (a post made meanwhile shows once, a post written while offline is sent once
the socket is back); and a suspension (4003, do not reconnect) signs the page out."""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

from cluster.config import Settings
from gateway.context import SESSIONS
from gateway.sessions import CLOSE_SERVER_RESTART
from hyperlocal_client import Api
from tests.browser.conftest import PASSWORD, Pages, pick_spot, sign_up, user_id
from tests.integration.admin_kit import operator

pytestmark = pytest.mark.integration


async def sign_in_form(page: Page, email: str) -> None:
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


def drop_sockets(server: TestServer, uid: str) -> int:
    sessions = server.app[SESSIONS].of_user(uid)
    for session in sessions:
        session.close(CLOSE_SERVER_RESTART, "test: server restart")
    return len(sessions)


async def test_reconnect_after_the_server_drops_the_socket_loses_nothing(
    pages: Pages, client_api: Api, server: TestServer, spot: tuple[float, float]
) -> None:
    lat, lng = spot
    ada = await pages.open("/")
    await sign_up(ada, "Ada")
    await pick_spot(ada, lat, lng)
    status = ada.get_by_role("status").first
    await expect(status).to_have_text("live")
    bob = await client_api.signup(f"bob-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Bob")
    async with await client_api.connect(bob) as ws:
        await ws.request("locate", {"lat": lat, "lng": lng})
        await ws.mutate("post.create", {"text": "before the drop"})
        posts = ada.get_by_role("list", name="Posts near you")
        await expect(posts.get_by_text("before the drop")).to_be_visible()

        pages.expect_error("ERR_INTERNET_DISCONNECTED")  # the ticket fetches while offline
        await ada.context.set_offline(True)
        assert drop_sockets(server, await user_id(ada)) == 1
        await expect(status).to_have_text("reconnecting…")
        await ws.mutate("post.create", {"text": "while you were away"})
        await ada.get_by_label("Write a post").fill("written offline")
        await ada.get_by_role("button", name="Post", exact=True).click()  # waits for the socket
        await ada.context.set_offline(False)

        await expect(status).to_have_text("live", timeout=20_000)
        await expect(posts.get_by_text("while you were away")).to_have_count(1)
        await expect(posts.get_by_text("written offline")).to_have_count(1)
        await ws.mutate("post.create", {"text": "after the drop"})
        await expect(posts.get_by_text("after the drop")).to_have_count(1)
        await expect(posts.get_by_text("before the drop")).to_have_count(1)
    # and the server holds exactly one of the offline post: sent once, with one key
    page = await client_api.connect(bob)
    async with page as ws:
        feed = await ws.request("feed.get", {"lat": lat, "lng": lng, "sort": "newest"})
    texts = [p["text"] for p in feed["items"]]
    assert texts.count("written offline") == 1 and texts.count("while you were away") == 1


async def test_suspension_signs_the_page_out_with_the_reason(
    pages: Pages, settings: Settings, client_api: Api, spot: tuple[float, float]
) -> None:
    ada = await pages.open("/")
    email = await sign_up(ada, "Eve")
    await pick_spot(ada, *spot)
    uid = await user_id(ada)
    mod = await client_api.signup(f"mod-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Mod")
    await operator(settings, "users.grant", {"email": mod.email, "role": "moderator"})
    # what the page asks from now on is refused, and the browser logs each refusal
    pages.expect_error("403 (Forbidden)")
    pages.expect_error("401 (Unauthorized)")
    await client_api.post(
        f"/api/v1/admin/users/{uid}/suspend", {"reason": "test suspension"}, mod.access_token
    )
    await expect(ada.get_by_role("alert")).to_contain_text("Signed out")
    await ada.get_by_role("heading", name="Sign in").wait_for()
    await ada.wait_for_timeout(1500)  # and it does not reconnect
    assert await ada.evaluate("window.hyperlocal.session") is None
    # signing in again offers the appeal (with email and password: there is no token)
    await sign_in_form(ada, email)
    await ada.get_by_role("heading", name="Your account is suspended").wait_for()
    await ada.get_by_label("Your appeal").fill("It was my neighbour, not me")
    await ada.get_by_role("button", name="Send appeal").click()
    await ada.get_by_role("heading", name="Appeal sent").wait_for()


async def test_the_shell_loads_offline_from_the_service_worker(
    pages: Pages, spot: tuple[float, float]
) -> None:
    page = await pages.open("/")
    await sign_up(page, "Ivy")
    await pick_spot(page, *spot)
    assert await page.evaluate("navigator.serviceWorker.ready.then((r) => Boolean(r.active))")
    pages.expect_error("ERR_INTERNET_DISCONNECTED")  # the browser logs the refused fetches
    await page.context.set_offline(True)
    await page.reload()
    await expect(page.get_by_role("link", name="Hyperlocal")).to_be_visible()  # the shell
    await expect(page.get_by_role("status").first).to_have_text("reconnecting…")
    await page.context.set_offline(False)
    await page.get_by_role("heading", name="Your neighbourhood").wait_for(timeout=20_000)
    await expect(page.get_by_role("status").first).to_have_text("live")
