"""Every screen opens with no console error (the ``pages`` fixture fails the test on any), is
reachable from the tab bar, and the staff tabs follow the roles live (``session.roles``)."""

from __future__ import annotations

import uuid

import pyotp
import pytest
from playwright.async_api import expect

from cluster.config import Settings
from hyperlocal_client import Api
from tests.browser.conftest import PASSWORD, Pages, pick_spot, sign_up, user_id
from tests.images import png
from tests.integration.admin_kit import operator

pytestmark = pytest.mark.integration


def _png(name: str) -> dict[str, object]:
    return {"name": name, "mimeType": "image/png", "buffer": png(64, 64)}


async def test_every_screen_opens_without_console_errors(
    pages: Pages, settings: Settings, client_api: Api, spot: tuple[float, float]
) -> None:
    page = await pages.open("/", viewport={"width": 390, "height": 844})  # a phone
    email = await sign_up(page, "Fay")
    await pick_spot(page, *spot)
    tabs = page.get_by_role("navigation", name="Sections")
    await expect(tabs.get_by_role("link", name="Admin")).to_have_count(0)
    # the map by keyboard: an outer cell is a button; Enter moves there
    before = await page.get_by_role("img", name="Map of your neighbourhood").get_attribute(
        "aria-label"
    )
    await page.get_by_role("button", name="Move to cell").first.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("img", name="Map of your neighbourhood")).not_to_have_attribute(
        "aria-label", before or ""
    )

    for tab, heading in [
        ("Chat", "Chat"),
        ("Market", "Market"),
        ("Orders", "Your orders"),
        ("Alerts", "Notifications"),
        ("Sell", "Sell in your neighbourhood"),
        ("Feed", "Your neighbourhood"),
    ]:
        await tabs.get_by_role("link", name=tab).click()
        await page.get_by_role("heading", name=heading, exact=True).wait_for()
        await expect(tabs.get_by_role("link", name=tab)).to_have_attribute("aria-current", "page")

    await page.goto("/#/cart")
    await page.get_by_role("heading", name="Your cart").wait_for()
    await page.get_by_role("link", name="Chat").click()
    await page.get_by_role("link", name="Neighbourhood room").click()
    await page.get_by_role("heading", name="Neighbourhood room").wait_for()
    await page.get_by_role("link", name="Your profile").click()
    await page.get_by_role("heading", name="Edit your profile").wait_for()
    await page.get_by_label("Bio").fill("Bakes on Sundays")
    await page.get_by_label("Profile picture").set_input_files(files=[_png("me.png")])
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_have_text("Saved")
    picture = page.get_by_role("img", name="Fay's picture")
    await expect(picture).to_be_visible()
    await page.wait_for_function("document.querySelector('img.avatar').naturalWidth > 0")

    # another user's profile: follow, then a direct chat
    other = await client_api.signup(f"gus-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Gus")
    await tabs.get_by_role("link", name="Chat").click()
    await page.get_by_label("Find people").fill("Gus")
    await page.get_by_label("Find people").press("Enter")
    await page.get_by_role("list", name="People found").get_by_role("link", name="Gus").click()
    await page.get_by_role("heading", name="Gus").wait_for()
    assert page.url.endswith(f"#/user/{other.id}")
    await page.get_by_role("button", name="Follow").click()
    await expect(page.get_by_text("1 followers")).to_be_visible()
    await page.get_by_role("button", name="Message").click()
    await page.get_by_label("Message", exact=True).fill("hello Gus")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("list", name="Messages").get_by_text("hello Gus")).to_be_visible()

    # a shop of one's own
    await tabs.get_by_role("link", name="Sell").click()
    await page.get_by_label("Shop name").fill("Fay's Cakes")
    await page.get_by_label("Category").fill("bakery")
    await page.get_by_role("button", name="Open my shop").click()
    await page.get_by_role("heading", name="Your shop: Fay's Cakes").wait_for()
    await expect(page.get_by_role("img", name="No sales in this range")).to_be_visible()
    await page.get_by_label("Title").fill("Carrot cake")
    await page.get_by_label("Price (cents)").fill("1200")
    await page.get_by_label("Stock", exact=True).fill("4")
    await page.get_by_label("Listing photo").set_input_files(files=[_png("cake.png")])
    await page.get_by_role("button", name="Create listing").click()
    await expect(page.get_by_label("Stock of Carrot cake", exact=True)).to_have_value("4")
    await page.get_by_role("link", name="Market").click()  # the listing, with its photo
    await expect(page.get_by_role("article", name="Carrot cake").get_by_role("img")).to_be_visible()
    await page.get_by_role("link", name="Sell").click()
    await page.get_by_role("button", name="Edit Carrot cake").click()
    await page.get_by_label("Listing title").fill("Carrot cake, large")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("alert")).to_have_text("Listing saved")
    await expect(page.get_by_role("cell", name="Carrot cake, large")).to_be_visible()
    await page.get_by_label("Stock of Carrot cake", exact=True).fill("7")
    await page.get_by_role("button", name="Set stock of Carrot cake").click()
    await expect(page.get_by_role("alert")).to_have_text("Stock saved")
    await page.get_by_label("Target URL").fill("https://hooks.example.test/orders")
    await page.get_by_role("button", name="Add webhook").click()
    await expect(page.get_by_text("Signing secret (shown once)")).to_be_visible()
    hooks = page.get_by_role("list", name="Your webhooks")
    await expect(hooks.get_by_text("https://hooks.example.test/orders")).to_be_visible()
    await page.get_by_label("App name").fill("Till")
    await page.get_by_role("button", name="Create app").click()
    await expect(page.get_by_text("client_secret (shown once)")).to_be_visible()
    await page.get_by_role("button", name="Revoke the app Till").click()
    await expect(page.get_by_role("list", name="Your apps").get_by_text("Till")).to_have_count(0)

    # staff roles show the admin tab at once; every section loads
    for role in ("admin", "ops"):
        await operator(settings, "users.grant", {"email": email, "role": role})
    await expect(tabs.get_by_role("link", name="Admin")).to_be_visible()
    await tabs.get_by_role("link", name="Admin").click()
    for section in (
        "Moderation queue",
        "Users",
        "Appeals",
        "Held orders (fraud review)",
        "Disputes",
        "Revenue",
        "Payouts",
        "Audit log",
        "Cluster",
    ):
        await page.get_by_role("heading", name=section).wait_for()
    await expect(page.get_by_role("table", name="Shards")).to_be_visible()
    await expect(page.get_by_role("table", name="Audit log")).to_be_visible()
    assert await user_id(page)


async def test_two_factor_sign_in_asks_for_the_code(pages: Pages, client_api: Api) -> None:
    user = await client_api.signup(f"hal-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Hal")
    setup = await client_api.post("/api/v1/auth/2fa/setup", None, user.access_token)
    totp = pyotp.TOTP(setup["secret"])
    enabled = await client_api.post(
        "/api/v1/auth/2fa/enable", {"otp": totp.now()}, user.access_token
    )
    pages.expect_error("401 (Unauthorized)")  # the otp_required answer, as the browser logs it
    page = await pages.open("/")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert").filter(has_text="two-factor")).to_be_visible()
    await page.get_by_label("Two-factor code").fill(enabled["recovery_codes"][0])
    await page.get_by_label("Two-factor code").press("Enter")  # the keyboard submits
    await page.get_by_role("navigation", name="Sections").wait_for()
    await page.get_by_role("heading", name="Where are you?").wait_for()
