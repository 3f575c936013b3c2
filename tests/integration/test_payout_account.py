"""Where a vendor's payouts go, over real REST, the control actor (Ray), Postgres and Redis
(docs/payments.md, "Payout account").

The vendor's user sets bank details (sealed at rest, shown masked, audited) and a payout batch
makes a manual payout to them (its destination the masked account), which an admin opens in
full; or a Stripe connected account, to which the batch's transfer goes (a local stand-in).
Bad input, another caller or an app token change nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cluster.config import Settings
from models.errors import NotFound
from models.rbac import OPERATOR
from services.payout_accounts import PayoutAccounts
from services.payouts import Payouts, payout_public
from services.secrets import Keys
from store.db import create_pool
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, User
from tests.integration.test_analytics import _app_token
from tests.integration.test_money_ledger import (
    FakeTransfers,
    _balance_with,
    _buy,
    _fulfil,
    _shop,
    _until,
    transfers,
)

pytestmark = pytest.mark.integration

__all__ = ["transfers"]  # the fixture, used below

PATH = "/api/v1/vendor/payout-account"
IBAN = "DE89 3704 0044 0532 0130 00"


async def _get(api: Api, user: User) -> Any:
    status, body = await mk.rest(api, "GET", PATH, None, user.access_token)
    assert status == 200, body
    return body["payout_account"]


async def test_bank_details_are_sealed_masked_audited_and_a_manual_payout_goes_there(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    seller, item = await _shop(api, settings, 140, "bread", 1200)
    vendor_id = item["vendor"]["id"]
    assert await _get(api, seller) is None

    # bad input: a typed error each, nothing stored
    app = await _app_token(api, seller.access_token, ["orders:read"])
    bad: list[tuple[dict[str, Any], str, int]] = [
        ({"kind": "bank", "holder_name": "A Baker", "iban": "DE88 3704 0044 0532 0130 00"},
         seller.access_token, 400),  # check digits wrong
        ({"kind": "paypal", "account_id": "x"}, seller.access_token, 400),
        ({"kind": "bank", "holder_name": "A Baker", "iban": IBAN, "account_number": "1234",
          "bank_code": "ABC", "country": "DE"}, seller.access_token, 400),
        ({"kind": "bank", "holder_name": "A Baker", "account_number": "12",
          "bank_code": "021000021", "country": "US"}, seller.access_token, 400),
        ({"kind": "stripe_connect", "account_id": "acct_"}, seller.access_token, 400),
        ({"kind": "stripe_connect", "account_id": "acct_abcd", "iban": IBAN},
         seller.access_token, 400),
        ({"kind": "bank", "holder_name": " ", "iban": IBAN}, seller.access_token, 400),
        ({"kind": "stripe_connect", "account_id": "acct_abcd"}, app, 403),  # an app token
        ({"kind": "stripe_connect", "account_id": "acct_abcd"},
         (await api.signup("payout-not-vendor")).access_token, 403),
    ]  # fmt: skip
    for body, token, want in bad:
        status, reply = await mk.rest(api, "PUT", PATH, body, token)
        assert status == want, (body, reply)
        assert reply["error"]["code"] == {400: "bad_request", 403: "forbidden"}[want]
    assert await _get(api, seller) is None

    status, reply = await mk.rest(
        api,
        "PUT",
        PATH,
        {"kind": "bank", "holder_name": "A Baker", "iban": IBAN},
        seller.access_token,
    )
    assert status == 200, reply
    shown = reply["payout_account"]
    assert {k: shown[k] for k in ("kind", "holder_name", "country", "account_last4", "form")} == {
        "kind": "bank", "holder_name": "A Baker", "country": "DE", "account_last4": "3000",
        "form": "iban",
    }  # fmt: skip
    assert "370400440532" not in str(reply) and await _get(api, seller) == shown
    status, reply = await mk.rest(api, "GET", PATH, None, app)  # an app may read it, masked
    assert status == 200 and reply["payout_account"] == shown
    conn = await mk.db(settings)
    try:
        row = await conn.fetchrow(
            "SELECT payout_bank, payout_bank_hint FROM vendors WHERE id = $1", vendor_id
        )
        assert row["payout_bank"].startswith("hlenc:v1:") and "3704" not in row["payout_bank"]
        assert row["payout_bank_hint"] == "DE ••••3000"
        audited = await conn.fetch(
            "SELECT actor_id, result::text AS result FROM audit_log WHERE action ="
            " 'vendor.payout_account' AND target = $1",
            f"vendor:{vendor_id}",
        )
        assert [a["actor_id"] for a in audited] == [seller.id]
        assert "0532" not in audited[0]["result"]
    finally:
        await conn.close()

    # the payout batch pays the available balance to it: a manual payout, masked destination
    _, (order,) = await _buy(api, [(item, 1)], "payout-account-buyer")
    await _fulfil(api, seller, order["id"])
    await _until(lambda: _balance_with(api, seller, available=1080))
    status, batch = await mk.rest(
        api, "POST", "/api/v1/admin/payouts/run", None, admin.access_token
    )
    assert status == 200, batch
    (payout,) = [p for p in batch["payouts"] if p["vendor_id"] == vendor_id]
    assert (payout["method"], payout["destination"], payout["amount"]) == (
        "manual", "DE ••••3000", 1080
    )  # fmt: skip

    # the admin paying it opens the details in full (audited); nobody else may
    admin_path = f"/api/v1/admin/vendors/{vendor_id}/payout-account"
    status, full = await mk.rest(api, "GET", admin_path, None, admin.access_token)
    assert status == 200, full
    assert full["payout_account"]["iban"] == IBAN.replace(" ", "")
    status, refused = await mk.rest(api, "GET", admin_path, None, seller.access_token)
    assert status == 403 and refused["error"]["code"] == "forbidden"
    conn = await mk.db(settings)
    try:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'payouts.account' AND actor_id = $1"
                " AND target = $2",
                admin.id,
                f"vendor:{vendor_id}",
            )
            == 1
        )
    finally:
        await conn.close()

    # a key rotation's re-sealing covers them (and skips vendors without any)
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        counts = await Keys(settings).reseal(pool)
    finally:
        await pool.close()
    assert "vendors" in counts
    status, again = await mk.rest(api, "GET", admin_path, None, admin.access_token)
    assert status == 200 and again["payout_account"] == full["payout_account"]

    status, reply = await mk.rest(api, "DELETE", PATH, None, seller.access_token)
    assert status == 200 and reply == {"payout_account": None}
    assert await _get(api, seller) is None
    # nothing left to clear: a typed not_found, nothing written or audited
    status, reply = await mk.rest(api, "DELETE", PATH, None, seller.access_token)
    assert status == 404 and reply["error"]["code"] == "not_found", reply
    conn = await mk.db(settings)
    try:
        results = await conn.fetch(
            "SELECT result::text AS result FROM audit_log WHERE action = 'vendor.payout_account'"
            " AND target = $1 ORDER BY seq",
            f"vendor:{vendor_id}",
        )
        assert len(results) == 2 and json.loads(results[1]["result"]) == {"cleared": True}
    finally:
        await conn.close()


async def test_setting_an_account_answers_from_what_it_wrote_without_opening_it_again(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seller, item = await _shop(api, settings, 142, "bread", 500)
    vendor_id = item["vendor"]["id"]
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        keys = Keys(settings)
        accounts = PayoutAccounts(pool, keys)
        with pytest.raises(NotFound):  # nothing set yet: nothing to clear
            await accounts.clear(vendor_id, seller.id)

        def no_open(*_: Any) -> str:
            raise AssertionError("set opened the sealed details it had just written")

        monkeypatch.setattr(keys, "open", no_open)
        body = {"kind": "bank", "holder_name": "C Baker", "iban": IBAN}
        shown = await accounts.set(vendor_id, seller.id, body)
        monkeypatch.undo()
        assert shown["payout_account"]["account_last4"] == "3000"
        assert shown == await accounts.get(vendor_id)  # the same as read back and opened
        stripe = await accounts.set(
            vendor_id, seller.id, {"kind": "stripe_connect", "account_id": "acct_c142abcd"}
        )
        assert stripe == await accounts.get(vendor_id)  # fmt: skip
    finally:
        await pool.close()


async def test_a_connected_account_the_vendor_sets_gets_the_batch_transfer(
    api: Api, settings: Settings, transfers: tuple[FakeTransfers, Payouts]
) -> None:
    fake, payouts = transfers
    seller, item = await _shop(api, settings, 141, "bread", 900)
    body = {"kind": "stripe_connect", "account_id": "acct_vendor141"}
    status, reply = await mk.rest(api, "PUT", PATH, body, seller.access_token)
    assert status == 200, reply
    assert reply["payout_account"]["account_id"] == "acct_…r141"
    _, (order,) = await _buy(api, [(item, 1)], "payout-account-buyer2")
    await _fulfil(api, seller, order["id"])
    await _until(lambda: _balance_with(api, seller, available=810))
    await payouts.run(OPERATOR)
    sent_rows = await payouts.send_due()
    (sent,) = [payout_public(r) for r in sent_rows if r["vendor_id"] == item["vendor"]["id"]]
    assert (sent["method"], sent["status"], sent["destination"]) == (
        "stripe_transfer", "paid", "acct_vendor141"
    )  # fmt: skip
    assert fake.by_key[f"payout-{sent['id']}"]["destination"] == "acct_vendor141"

    # switching to bank details drops the connected account: one destination at a time
    bank = {"kind": "bank", "holder_name": "B Baker", "account_number": "000123456789",
            "bank_code": "021000021", "country": "us"}  # fmt: skip
    status, reply = await mk.rest(api, "PUT", PATH, bank, seller.access_token)
    assert status == 200 and reply["payout_account"]["account_last4"] == "6789", reply
    conn = await mk.db(settings)
    try:
        row = await conn.fetchrow(
            "SELECT payout_account, payout_bank_hint FROM vendors WHERE id = $1",
            item["vendor"]["id"],
        )
        assert (row["payout_account"], row["payout_bank_hint"]) == (None, "US ••••6789")
    finally:
        await conn.close()
