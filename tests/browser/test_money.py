"""The money views in the browser, on the real ledger and analytics: a vendor's sales over a
range it picks (bars, the hour x weekday heatmap), its balance and payouts; an admin's revenue
charts by vendor and day, a payout batch run from the panel and a manual payout marked paid,
which the vendor's page then shows."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from playwright.async_api import Page, expect

from cluster.config import Settings
from hyperlocal_client import Api, SignIn
from services.analytics import run_rollup
from tests.browser.conftest import PASSWORD, Pages, sign_in
from tests.integration.admin_kit import operator

pytestmark = pytest.mark.integration

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CARD = {"provider": "sandbox", "card": "4242424242424242"}


def usd(cents: int) -> str:
    return f"${cents / 100:,.2f}"


async def _sold_and_fulfilled(
    api: Api, spot: tuple[float, float]
) -> tuple[SignIn, dict[str, object], dict[str, object]]:
    """A shop, and an order of 2 x 6.00 its buyer paid and the vendor fulfilled (by the API)."""
    lat, lng = spot
    seller = await api.signup(f"jam-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Jam")
    vendor = await api.become_vendor(seller, "Jam Jar", "grocery", lat, lng)
    listing = await api.create_listing(
        seller, title="Plum jam", category="grocery", price=600, stock=5
    )
    buyer = await api.signup(f"kit-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Kit")
    async with await api.connect(buyer) as ws:
        await ws.request("locate", {"lat": lat, "lng": lng})
        await ws.mutate("cart.add", {"listing_id": listing["id"], "qty": 2})
        reply = await ws.request("checkout", {"payment": CARD}, uuid.uuid4().hex, timeout_s=60)
    (order,) = reply["orders"]
    assert order["status"] == "paid", order
    for step in ("accept", "fulfil"):
        await api.post(f"/api/v1/vendor/orders/{order['id']}/{step}", None, seller.access_token)
    return seller, vendor, order


async def _available(api: Api, seller: SignIn, cents: int) -> None:
    """Wait for the release sweep: fulfilled + balance_hold_s (1 s in tests)."""
    for _ in range(100):
        if (await api.get("/api/v1/vendor/balance", seller.access_token))["available"] == cents:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the balance was never released")


async def _vendor_page(pages: Pages, email: str) -> Page:
    page = await pages.open("/#/vendor", viewport={"width": 390, "height": 844})
    await sign_in(page, email)
    await page.get_by_role("link", name="Sell").click()
    await page.get_by_role("heading", name="Your shop: Jam Jar").wait_for()
    return page


async def test_sales_range_heatmap_balance_payouts_and_admin_revenue(
    pages: Pages, settings: Settings, client_api: Api, spot: tuple[float, float]
) -> None:
    seller, vendor, order = await _sold_and_fulfilled(client_api, spot)
    total, net = 1200, 1080  # 10 % commission
    await run_rollup(str(settings.database_url), 0.0)  # the scheduled rollup, now
    placed = dt.datetime.fromisoformat(str(order["created_at"])).astimezone(dt.UTC)

    shop = await _vendor_page(pages, seller.email)
    sales = shop.get_by_role("region", name="Sales")
    await expect(
        sales.get_by_role("img", name=f"Revenue per day: {usd(total)} in all")
    ).to_be_visible()
    slot = f"busiest {WEEKDAYS[placed.weekday()]} {placed.hour:02d}:00 (1)"
    await expect(
        sales.get_by_role("img", name=f"orders by weekday and hour (UTC): 1 in all, {slot}")
    ).to_be_visible()
    # a range of its own: an old month has nothing; a reversed one is refused, saying why
    await sales.get_by_label("From", exact=True).fill("2020-01-01")
    await sales.get_by_label("To", exact=True).fill("2020-01-31")
    await sales.get_by_role("button", name="Show").click()
    await expect(
        sales.get_by_role("heading", name="Sales 2020-01-01 to 2020-01-31 (UTC)")
    ).to_be_visible()
    await expect(sales.get_by_role("img", name="No sales in this range")).to_be_visible()
    await expect(sales.get_by_role("img", name="none in this range")).to_be_visible()
    pages.expect_error("400 (Bad Request)")
    await sales.get_by_label("From", exact=True).fill("2020-02-01")
    await sales.get_by_role("button", name="Show").click()
    await expect(sales.get_by_role("alert")).to_contain_text("from: after to")
    today = dt.datetime.now(dt.UTC).date()
    await sales.get_by_label("From", exact=True).fill((today - dt.timedelta(days=70)).isoformat())
    await sales.get_by_label("To", exact=True).fill(today.isoformat())
    await sales.get_by_label("Periods").select_option("week")
    await sales.get_by_role("button", name="Show").click()
    await expect(
        sales.get_by_role("img", name=f"Revenue per week: {usd(total)} in all")
    ).to_be_visible()
    await expect(sales.get_by_role("alert")).to_have_count(0)  # the error is gone

    # the balance, released after fulfilment and the hold; no payouts yet
    await _available(client_api, seller, net)
    await shop.get_by_role("button", name="Reload the balance").click()
    balance = shop.get_by_role("table", name="Your balance")
    await expect(balance.get_by_role("row", name=f"USD {usd(net)} {usd(0)}")).to_be_visible()
    await expect(
        shop.get_by_role("region", name="Payouts").get_by_text("No payouts yet.")
    ).to_be_visible()

    # the admin: revenue by vendor and by day, then a payout batch and the manual payout paid
    boss = await client_api.signup(f"boss-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Boss")
    await operator(settings, "users.grant", {"email": boss.email, "role": "admin"})
    admin = await pages.open("/#/admin")
    await sign_in(admin, boss.email)
    await admin.get_by_role("link", name="Admin").click()
    revenue = admin.get_by_role("region", name="Revenue")
    await revenue.get_by_label("Group by").select_option("vendor")
    await revenue.get_by_role("button", name="Show revenue").click()
    row = revenue.get_by_role("table", name="Revenue by vendor").get_by_role(
        "row", name=str(vendor["id"])
    )
    await expect(row).to_have_text(f"{vendor['id']}USD{usd(total)}1{usd(0)}{usd(total - net)}")
    await revenue.get_by_label("Group by").select_option("day")
    await revenue.get_by_role("button", name="Show revenue").click()
    await expect(revenue.get_by_role("img", name="GMV by day")).to_be_visible()
    await expect(
        revenue.get_by_role("table", name="Revenue by day").get_by_role(
            "row", name=today.isoformat()
        )
    ).to_be_visible()

    payouts = admin.get_by_role("region", name="Payouts")
    await payouts.get_by_role("button", name="Run payouts now").click()
    await expect(payouts.get_by_role("status")).to_contain_text("Batch done")
    mine = payouts.get_by_role("article", name=f"Payout of {usd(net)} to vendor {vendor['id']}")
    await mine.get_by_label("Bank reference").fill("BANK-42")
    await mine.get_by_role("button", name="Mark paid").click()
    await expect(admin.get_by_role("alert")).to_have_text("Payout marked paid")
    await expect(mine).to_have_count(0)  # no longer pending

    await shop.reload()
    await shop.get_by_role("heading", name="Your shop: Jam Jar").wait_for()
    paid = shop.get_by_role("table", name="Your payouts").get_by_role("row").nth(1)
    await expect(paid).to_contain_text(usd(net))
    await expect(paid).to_contain_text("paid")
    await expect(paid).to_contain_text("BANK-42")
    await expect(
        shop.get_by_role("table", name="Your balance").get_by_role("row").nth(1)
    ).to_contain_text(f"USD{usd(0)}{usd(0)}{usd(0)}{usd(0)}")
