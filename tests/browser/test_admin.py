"""The admin panel's actions in the browser, each checked where it lands: a report dismissed,
a reported post removed (its feed hears ``post.removed``), a role granted (the user's open
socket hears ``session.roles``), a suspension (the socket closes 4003), an appeal accepted and
one rejected, a suspension lifted, a dispute refunded (the order is refunded), the audit log
listing them; orders held for fraud review released and rejected."""

from __future__ import annotations

import asyncio
import base64
import random
import uuid

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from cluster.config import Settings
from gateway.app import build_app
from hyperlocal_client import Api, ApiError, SignIn, Socket
from tests.browser.conftest import PASSWORD, Pages, sign_in
from tests.integration import market_kit as mk
from tests.integration.admin_kit import operator

pytestmark = pytest.mark.integration

CARD = {"provider": "sandbox", "card": "4242424242424242"}


async def _disputed_order(api: Api, spot: tuple[float, float]) -> str:
    """A paid order its buyer disputes (set up by the API)."""
    lat, lng = spot
    seller = await api.signup(f"tea-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Tea")
    await api.become_vendor(seller, "Tea Room", "cafe", lat, lng)
    listing = await api.create_listing(seller, title="Oolong", category="cafe", price=800, stock=3)
    buyer = await api.signup(f"uma-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Uma")
    async with await api.connect(buyer) as ws:
        await ws.request("locate", {"lat": lat, "lng": lng})
        await ws.mutate("cart.add", {"listing_id": listing["id"], "qty": 1})
        reply = await ws.request("checkout", {"payment": CARD}, uuid.uuid4().hex, timeout_s=60)
        (order,) = reply["orders"]
        await ws.mutate(
            "dispute.open",
            {"order_id": order["id"], "reason": "not_received", "text": "never came"},
        )
    return str(order["id"])


async def _appeal(http: ClientSession, base: str, user: SignIn, reason: str, text: str) -> None:
    """The suspended user appeals the suspension given for ``reason``, with email and password
    (a suspended account has no token)."""
    basic = base64.b64encode(f"{user.email}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    async with http.get(f"{base}/api/v1/me/moderation", headers=headers) as resp:
        (action_id,) = [a["id"] for a in (await resp.json())["items"] if a["reason"] == reason]
    body = {"action_id": action_id, "text": text}
    async with http.post(f"{base}/api/v1/appeals", json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()


async def _order_status(settings: Settings, order_id: str, want: str) -> None:
    conn = await mk.db(settings)
    try:
        for _ in range(100):
            if await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == want:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"order {order_id} never became {want}")


async def test_admin_panel_actions_land(
    pages: Pages,
    settings: Settings,
    client_api: Api,
    http: ClientSession,
    spot: tuple[float, float],
) -> None:
    lat, lng = spot
    tag = uuid.uuid4().hex[:6]
    name = f"Bob{tag}"
    bob = await client_api.signup(f"bob-{tag}@example.test", PASSWORD, name)
    order_id = await _disputed_order(client_api, spot)
    reporter = await client_api.signup(f"cy-{tag}@example.test", PASSWORD, "Cy")
    ws: Socket = await client_api.connect(bob)
    try:
        await ws.request("locate", {"lat": lat, "lng": lng})
        post = (await ws.mutate("post.create", {"text": "cheap watches, DM me"}))["post"]
        async with await client_api.connect(reporter) as rws:
            target = {"kind": "post", "id": post["id"]}
            await rws.mutate("report.create", {"target": target, "reason": "spam"})
            mistaken = {"kind": "user", "id": bob.id}
            await rws.mutate("report.create", {"target": mistaken, "reason": "other"})

        boss = await client_api.signup(f"boss-{tag}@example.test", PASSWORD, "Boss")
        await operator(settings, "users.grant", {"email": boss.email, "role": "admin"})
        page = await pages.open("/#/admin")
        await sign_in(page, boss.email)
        await page.get_by_role("link", name="Admin").click()

        # the report queue: one report dismissed, the other's post removed (its feed hears it)
        queue = page.get_by_role("list", name="Open reports")
        dismissed = queue.get_by_role("listitem").filter(has_text=f"target {bob.id}")
        await dismissed.get_by_role("button", name="Dismiss").click()
        await expect(page.get_by_role("alert")).to_have_text("Report dismissed")
        await expect(dismissed).to_have_count(0)
        report = (
            page.get_by_role("list", name="Open reports")
            .get_by_role("listitem")
            .filter(has_text=post["id"])
        )
        await report.get_by_role("button", name="Remove content").click()
        await expect(page.get_by_role("alert")).to_have_text("Report resolved: remove")
        await expect(report).to_have_count(0)
        removed = await ws.next_event("post.removed")
        assert removed["data"]["post_id"] == post["id"]

        # users: a role granted reaches Bob's open socket at once
        users = page.get_by_role("region", name="Users")
        await users.get_by_label("Find a user by name").fill(name)
        await users.get_by_role("button", name="Find").click()
        await users.get_by_role("button", name=f"Manage {name}").click()
        card = users.get_by_role("region", name=f"User {name}")
        await card.get_by_label("moderator").check()
        await card.get_by_role("button", name="Save roles").click()
        await expect(card.get_by_text("roles: user, moderator")).to_be_visible()
        roles = await ws.next_event("session.roles")
        assert sorted(roles["data"]["roles"]) == ["moderator", "user"]

        # a suspension closes Bob's socket (do not reconnect); his appeal is accepted
        await card.get_by_label("Reason for the suspension").fill("spam, from the panel")
        await card.get_by_role("button", name="Suspend user").click()
        await expect(card.get_by_text("Suspended: spam, from the panel")).to_be_visible()
        await asyncio.wait_for(ws.closed.wait(), 10)
        assert ws.close_code == 4003
        await _appeal(
            http, client_api.base, bob, "spam, from the panel", "a neighbour used my phone"
        )
        await page.get_by_role("button", name="Reload Appeals").click()
        appeal = (
            page.get_by_role("list", name="Open appeals")
            .get_by_role("listitem")
            .filter(has_text="a neighbour used my phone")
        )
        await appeal.get_by_role("button", name="Accept appeal").click()
        await expect(appeal).to_have_count(0)
        await client_api.login(bob.email, PASSWORD)  # signed in again: the suspension is gone

        # suspended again: the appeal is rejected (still suspended), then lifted from the panel
        await users.get_by_role("button", name=f"Manage {name}").click()
        await card.get_by_label("Reason for the suspension").fill("second look")
        await card.get_by_role("button", name="Suspend user").click()
        await expect(card.get_by_role("button", name="Lift suspension")).to_be_visible()
        await _appeal(http, client_api.base, bob, "second look", "please look again")
        await page.get_by_role("button", name="Reload Appeals").click()
        appeal = (
            page.get_by_role("list", name="Open appeals")
            .get_by_role("listitem")
            .filter(has_text="please look again")
        )
        await appeal.get_by_role("button", name="Reject appeal").click()
        await expect(appeal).to_have_count(0)
        with pytest.raises(ApiError) as refused:
            await client_api.login(bob.email, PASSWORD)
        assert refused.value.status == 403
        await card.get_by_role("button", name="Lift suspension").click()
        await expect(page.get_by_role("alert")).to_have_text(f"{name} may sign in again")
        await expect(card.get_by_role("button", name="Suspend user")).to_be_visible()
        await client_api.login(bob.email, PASSWORD)

        # a dispute refunded by the admin: the order is refunded through its provider
        dispute = (
            page.get_by_role("list", name="Open disputes")
            .get_by_role("listitem")
            .filter(has_text=order_id)
        )
        await dispute.get_by_role("button", name="Refund buyer").click()
        await expect(dispute).to_have_count(0)
        await _order_status(settings, order_id, "refunded")

        # the audit log names each action, on its target
        await page.get_by_role("button", name="Reload Audit log").click()
        log = page.get_by_role("table", name="Audit log")
        for action in (
            "roles.set",
            "user.suspend",
            "user.unsuspend",
            "appeal.decide",
            "content.remove",
            "dispute.resolve",
        ):
            await expect(log.get_by_role("row").filter(has_text=action).first).to_be_visible()
        await expect(log.get_by_role("row").filter(has_text="roles.set").first).to_contain_text(
            f"user:{bob.id}"
        )
    finally:
        await ws.close()


async def test_held_orders_are_released_and_rejected_from_the_panel(
    pages: Pages, settings: Settings, client_api: Api, http: ClientSession
) -> None:
    """Orders held for fraud review (a gateway of this deployment that holds, as in
    tests/integration/test_risk.py: one card shared by new accounts), released and rejected by
    an admin in the panel: captured and paid, or voided and cancelled."""
    held_settings = settings.model_copy(update={"risk_hold_score": 60})
    risky_server = TestServer(build_app(held_settings), host="127.0.0.1", port=0)
    await risky_server.start_server()
    try:
        risky = Api(str(risky_server.make_url("")).rstrip("/"), http)
        lat, lng = round(random.uniform(-50, 50), 4), round(random.uniform(-150, 150), 4)
        seller = await risky.signup(f"rv-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Rv")
        await risky.become_vendor(seller, "Risky Bikes", "bikes", lat, lng)
        listing = await risky.create_listing(
            seller, title="Bell", category="bikes", price=300, stock=20
        )
        card = {**CARD, "card_id": f"shared-{uuid.uuid4().hex}"}
        buyers: list[tuple[str, str]] = []  # (email, order id) of the held ones
        for n in range(5):  # the fourth and fifth are held (new accounts, a card shared)
            buyer = await risky.signup(f"m{n}-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "M")
            async with await risky.connect(buyer) as ws:
                await ws.request("locate", {"lat": lat, "lng": lng})
                await ws.mutate("cart.add", {"listing_id": listing["id"], "qty": 1})
                reply = await ws.request("checkout", {"payment": card}, uuid.uuid4().hex)
            (order,) = reply["orders"]
            if order["status"] == "held":
                buyers.append((buyer.email, str(order["id"])))
        assert len(buyers) >= 2, buyers
        (release_email, released), (reject_email, rejected) = buyers[:2]

        boss = await client_api.signup(f"rb-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "B")
        await operator(settings, "users.grant", {"email": boss.email, "role": "admin"})
        page = await pages.open("/#/admin")
        await sign_in(page, boss.email)
        await page.get_by_role("link", name="Admin").click()
        queue = page.get_by_role("list", name="Held orders")
        one = queue.get_by_role("listitem").filter(has_text=release_email)
        await one.get_by_role("button", name="Release order").click()
        await expect(one).to_have_count(0)
        other = queue.get_by_role("listitem").filter(has_text=reject_email)
        await other.get_by_role("button", name="Reject order").click()
        await expect(other).to_have_count(0)
        await _order_status(settings, released, "paid")
        await _order_status(settings, rejected, "cancelled")
    finally:
        await risky_server.close()
