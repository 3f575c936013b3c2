"""A checkout end to end in the browser, and the vendor's dashboard moving the order while the
buyer's page follows it live."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import expect

from hyperlocal_client import Api
from tests.browser.conftest import PASSWORD, Pages, pick_spot, sign_in, sign_up

pytestmark = pytest.mark.integration


async def test_checkout_then_vendor_accepts_and_buyer_sees_it_live(
    pages: Pages, client_api: Api, spot: tuple[float, float]
) -> None:
    lat, lng = spot
    email = f"baker-{uuid.uuid4().hex[:8]}@example.test"
    vendor = await client_api.signup(email, PASSWORD, "Baker")
    await client_api.become_vendor(vendor, "Corner Bakery", "bakery", lat, lng)
    await client_api.create_listing(
        vendor, title="Sourdough loaf", category="bakery", price=450, stock=3
    )

    shop = await pages.open("/#/vendor")
    await sign_in(shop, email)
    await shop.get_by_role("link", name="Sell").click()
    await shop.get_by_role("heading", name="Your shop: Corner Bakery").wait_for()
    orders = shop.get_by_role("list", name="Incoming orders")
    await expect(orders.get_by_text("No orders yet.")).to_be_visible()

    buyer = await pages.open("/")
    await sign_up(buyer, "Cleo")
    await pick_spot(buyer, lat, lng)
    await buyer.get_by_role("link", name="Market").click()
    listing = buyer.get_by_role("article", name="Sourdough loaf")
    await expect(listing.get_by_text("3 left")).to_be_visible()
    await listing.get_by_role("button", name="Add Sourdough loaf to cart").click()
    await expect(buyer.get_by_role("alert").filter(has_text="in your cart")).to_be_visible()
    await buyer.get_by_role("link", name="Your cart").click()
    cart = buyer.get_by_role("table", name="Cart")
    await expect(cart.get_by_text("Sourdough loaf")).to_be_visible()
    await expect(buyer.get_by_label("Card number")).to_have_value("4242424242424242")
    await buyer.get_by_role("button", name="Pay").click()

    await buyer.get_by_role("heading", name="Your orders").wait_for()
    order = buyer.get_by_role("article", name="Order from Corner Bakery")
    await expect(order.get_by_label("Order status: paid")).to_be_visible()

    # the vendor's dashboard got the paid order live, and accepts it
    await orders.get_by_role("button", name="Accept order").click()
    await expect(order.get_by_label("Order status: accepted")).to_be_visible()  # no reload
    await orders.get_by_role("button", name="Mark fulfilled").click()
    await expect(order.get_by_label("Order status: fulfilled")).to_be_visible()
    await order.get_by_role("button", name="Confirm receipt").click()
    await expect(order.get_by_label("Order status: completed")).to_be_visible()
    await expect(orders.get_by_text("completed")).to_be_visible()  # and back to the vendor

    # the buyer disputes it, the vendor refunds from the dashboard, the buyer's page follows
    buyer.once("dialog", lambda dialog: dialog.accept("The loaf was stale"))
    await order.get_by_role("button", name="Report a problem").click()
    await expect(buyer.get_by_role("alert").filter(has_text="Dispute opened")).to_be_visible()
    await shop.reload()
    answer = shop.get_by_role("form", name="Respond to the dispute on order")
    await answer.get_by_label("Your answer").fill("Sorry! Refunded.")
    await answer.get_by_label("refund the buyer in full").check()
    await answer.get_by_role("button", name="Respond").click()
    await expect(shop.get_by_text("Answered.")).to_be_visible()
    await expect(order.get_by_label("Order status: refunded")).to_be_visible()

    # the stock the sale took is the vendor's to see
    await shop.reload()
    await expect(shop.get_by_label("Stock of Sourdough loaf", exact=True)).to_have_value("2")


async def test_declined_card_says_so_and_keeps_the_cart(
    pages: Pages, client_api: Api, spot: tuple[float, float]
) -> None:
    lat, lng = spot
    vendor = await client_api.signup(f"v-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "V")
    await client_api.become_vendor(vendor, "Bike Fix", "repairs", lat, lng)
    await client_api.create_listing(
        vendor, title="Puncture repair", category="repairs", price=900, stock=2, kind="service"
    )
    buyer = await pages.open("/")
    await sign_up(buyer, "Dan")
    await pick_spot(buyer, lat, lng)
    await buyer.get_by_role("link", name="Market").click()
    await buyer.get_by_role("button", name="Add Puncture repair to cart").click()
    await expect(buyer.get_by_role("alert").filter(has_text="in your cart")).to_be_visible()
    await buyer.get_by_role("link", name="Your cart").click()
    await buyer.get_by_label("Card number").fill("4000000000000002")
    await buyer.get_by_role("button", name="Pay").click()
    await expect(buyer.get_by_role("form", name="Checkout").get_by_role("alert")).to_contain_text(
        "declined"
    )
    await expect(
        buyer.get_by_role("table", name="Cart").get_by_text("Puncture repair")
    ).to_be_visible()
