"""The vendor's payout account and held payouts in the browser: bank details by IBAN (masked
on the page and in the API, the full number never shown), one whose check digits fail refused
on the form with nothing changed, a Stripe connected account replacing it, then removed; an
admin's hold of all the vendor's payouts shown with its reason in the balance, gone once
released."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import expect

from cluster.config import Settings
from hyperlocal_client import Api
from tests.browser.conftest import PASSWORD, Pages, sign_in
from tests.integration.admin_kit import operator

pytestmark = pytest.mark.integration

IBAN = "DE89 3704 0044 0532 0130 00"  # the standard example IBAN: its check digits hold
PATH = "/api/v1/vendor/payout-account"


async def test_payout_account_and_holds_in_the_vendor_view(
    pages: Pages, client_api: Api, settings: Settings, spot: tuple[float, float]
) -> None:
    seller = await client_api.signup(f"pa-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Pia")
    vendor = await client_api.become_vendor(seller, "Pia's Pans", "grocery", *spot)
    body = {"vendor_id": vendor["id"], "reason": "chargebacks under review"}
    hold = await operator(settings, "payouts.hold", {"body": body})
    page = await pages.open("/#/vendor", viewport={"width": 390, "height": 844})
    await sign_in(page, seller.email)
    await page.get_by_role("link", name="Sell").click()
    await page.get_by_role("heading", name="Your shop: Pia's Pans").wait_for()

    held = page.get_by_role("list", name="Held payouts")
    await expect(held).to_contain_text("All your payouts: chargebacks under review")
    await operator(settings, "payouts.release", {"hold_id": hold["hold"]["id"], "body": {}})
    await page.get_by_role("button", name="Reload the balance").click()
    await expect(page.get_by_text("Nothing holds your payouts.")).to_be_visible()
    await expect(held).to_have_count(0)

    account = page.get_by_role("region", name="Payout account")
    status = account.get_by_role("status")
    await expect(status).to_contain_text("No payout account")
    setter = account.get_by_role("form", name="Set the payout account")
    await setter.get_by_label("Pay out to").select_option(label="Bank account (IBAN)")
    await setter.get_by_label("Account holder").fill("Pia Pans GmbH")
    await setter.get_by_label("IBAN").fill(IBAN)
    await setter.get_by_role("button", name="Save payout account").click()
    await expect(status).to_contain_text("Bank: Pia Pans GmbH, DE IBAN ending 3000")
    masked = (await client_api.get(PATH, seller.access_token))["payout_account"]
    assert (masked["kind"], masked["form"], masked["account_last4"]) == ("bank", "iban", "3000")
    assert "370400440532" not in await page.content()  # masked everywhere on the page

    await setter.get_by_label("Account holder").fill("Pia Pans GmbH")
    await setter.get_by_label("IBAN").fill(IBAN[:-1] + "1")  # the check digits fail
    await setter.get_by_role("button", name="Save payout account").click()
    await expect(setter.get_by_role("alert")).to_contain_text("IBAN")
    pages.expect_error("400")  # the browser logs the refused PUT
    assert (await client_api.get(PATH, seller.access_token))["payout_account"] == masked

    await setter.get_by_label("Pay out to").select_option(label="Stripe connected account")
    await setter.get_by_label("Stripe account id").fill("acct_1PiaPansAbcd")
    await setter.get_by_role("button", name="Save payout account").click()
    await expect(status).to_contain_text("Stripe connected account acct_…Abcd")
    stripe = (await client_api.get(PATH, seller.access_token))["payout_account"]
    assert stripe["kind"] == "stripe_connect" and stripe["account_id"] == "acct_…Abcd"

    await account.get_by_role("button", name="Remove the payout account").click()
    await expect(status).to_contain_text("No payout account")
    assert (await client_api.get(PATH, seller.access_token))["payout_account"] is None
