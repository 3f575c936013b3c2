"""The ledger, payouts and revenue over real REST, websockets, owner shards, the control actor
(Ray), Postgres and Redis (docs/payments.md).

Captures and refunds (whole and partial) post balanced transactions with commission per
category; balances are pending until fulfilment and the hold period, then available; payouts
skip held orders (a dispute) and pay the rest, manual (marked paid by an admin) or as a
Stripe Connect transfer (against a local stand-in); replayed Stripe webhooks add nothing;
revenue matches the orders placed here; and, over the whole table, every transaction sums to
zero and every vendor's balance is the sum of its entries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from models.rbac import OPERATOR
from payments.stripe_transfers import StripeTransfers
from services.ledger import LedgerService
from services.payouts import Payouts, payout_public
from store.db import create_pool
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, User, Ws
from tests.integration.test_stripe import FakeStripe, event, send_event, with_stripe

pytestmark = pytest.mark.integration


async def _fetch(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await mk.db(settings)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _entries(settings: Settings, order_id: str) -> dict[tuple[str, str], int]:
    """(kind, account) -> summed amount of the order's ledger entries."""
    rows = await _fetch(
        settings,
        "SELECT t.kind, e.account, sum(e.amount)::bigint AS amount FROM ledger_entries e"
        " JOIN ledger_transactions t ON t.id = e.txn_id WHERE e.order_id = $1"
        " GROUP BY 1, 2",
        order_id,
    )
    return {(r["kind"], r["account"]): int(r["amount"]) for r in rows}


async def _balance(api: Api, vendor: User) -> dict[str, Any]:
    status, body = await mk.rest(api, "GET", "/api/v1/vendor/balance", None, vendor.access_token)
    assert status == 200, body
    return dict(body)


async def _until(check: Any, timeout: float = 10.0) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


async def _shop(
    api: Api, settings: Settings, i: int, category: str, price: int
) -> tuple[User, dict]:
    seller, vendor = await mk.vendor(api, mk.spot(settings, i), f"ledger{i}")
    item = await mk.listing(api, seller.access_token, stock=50, price=price, category=category)
    return seller, {**item, "vendor": vendor}


async def _buy(api: Api, items: list[tuple[dict, int]], name: str) -> tuple[Ws, list[dict]]:
    buyer = await api.signup(name)
    ws = await api.connect(buyer)
    for item, qty in items:
        await ws.mutate("cart.add", {"listing_id": item["id"], "qty": qty})
    reply = await ws.request("checkout", {"payment": mk.APPROVE}, key=uuid.uuid4().hex, timeout=60)
    assert reply["ok"], reply
    return ws, list(reply["data"]["orders"])


async def _fulfil(api: Api, seller: User, order_id: str) -> None:
    for action in ("accept", "fulfil"):
        path = f"/api/v1/vendor/orders/{order_id}/{action}"
        status, body = await mk.rest(api, "POST", path, None, seller.access_token)
        assert status == 200, body


async def test_capture_and_partial_refund_post_balanced_entries_with_category_commission(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    baker, bread = await _shop(api, settings, 90, "bread", 500)  # default 10 %
    florist, flowers = await _shop(api, settings, 91, "flowers", 1000)  # 15 % (conftest)
    cells_before = await _revenue_rows(api, admin, "cell")  # other tests' vendors share cells
    _, orders = await _buy(api, [(bread, 2), (flowers, 1)], "ledger-buyer")
    by_vendor = {o["vendor_id"]: o for o in orders}
    o_bread, o_flowers = by_vendor[bread["vendor"]["id"]], by_vendor[flowers["vendor"]["id"]]
    assert await _entries(settings, o_bread["id"]) == {
        ("capture", "provider_clearing"): 1000,
        ("capture", "vendor_pending"): -900,
        ("capture", "platform_commission"): -100,
    }
    assert (await _entries(settings, o_flowers["id"]))[("capture", "platform_commission")] == -150
    balance = await _balance(api, baker)
    assert (balance["pending"], balance["available"], balance["currency"]) == (900, 0, "usd")
    assert (await _balance(api, florist))["pending"] == 850

    # a partial refund: 300 back to the buyer, 30 of it from the commission, 270 from the vendor
    path = f"/api/v1/admin/orders/{o_bread['id']}/refund"
    status, reply = await mk.rest(
        api,
        "POST",
        path,
        {"amount": 300, "reason": "one was stale"},
        admin.access_token,
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 200, reply
    # the refund's entries and, once the provider has paid it back, its payment's
    entries = await _until(lambda: _paid_refund(settings, o_bread["id"]))
    assert entries[("refund", "platform_commission")] == 30
    assert entries[("refund", "vendor_pending")] == 270
    assert entries[("refund", "refunds_payable")] == -300
    assert entries[("refund_paid", "refunds_payable")] == 300
    assert entries[("refund_paid", "provider_clearing")] == -300
    assert (await _balance(api, baker))["pending"] == 630

    # the rest refunded: the whole commission is given back, the vendor is owed nothing
    status, reply = await mk.rest(
        api,
        "POST",
        path,
        {"reason": "all of it"},
        admin.access_token,
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 200 and reply["amount"] == 700, reply
    await _until(lambda: _paid_refunds(settings, o_bread["id"], 2))
    entries = await _entries(settings, o_bread["id"])
    assert entries[("refund", "platform_commission")] == 100
    assert entries[("refund", "vendor_pending")] == 900
    assert (await _balance(api, baker))["pending"] == 0

    # revenue, by vendor and by cell (what this test added to it), for the orders placed here
    ours = {"gmv": 1000, "orders": 1, "refunds": 1000, "commission": 0}
    theirs = {"gmv": 1000, "orders": 1, "refunds": 0, "commission": 150}
    vendors = await _revenue_rows(api, admin, "vendor")
    assert vendors[bread["vendor"]["id"]] == ours
    assert vendors[flowers["vendor"]["id"]] == theirs
    cells = await _revenue_rows(api, admin, "cell")
    for cell, want in ((bread["vendor"]["cell"], ours), (flowers["vendor"]["cell"], theirs)):
        before = cells_before.get(cell, dict.fromkeys(want, 0))
        assert {k: cells[cell][k] - before[k] for k in want} == want, cell
    status, report = await mk.rest(
        api, "GET", "/api/v1/admin/revenue?group=day", None, admin.access_token
    )
    assert status == 200 and dt.datetime.now(dt.UTC).date().isoformat() in {
        r["key"] for r in report["rows"]
    }

    # bad input is typed, a non-admin is refused, and nothing changes
    for query in ("group=week", "from=2026-02-30", "from=2026-03-02&to=2026-03-01"):
        status, body = await mk.rest(
            api, "GET", f"/api/v1/admin/revenue?{query}", None, admin.access_token
        )
        assert status == 400 and body["error"]["code"] == "bad_request", (query, body)
    status, body = await mk.rest(api, "GET", "/api/v1/admin/revenue", None, baker.access_token)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await mk.rest(api, "POST", "/api/v1/admin/payouts/run", None, baker.access_token)
    assert status == 403
    status, body = await mk.rest(
        api, "GET", "/api/v1/vendor/balance", None, (await api.signup("not-a-vendor")).access_token
    )
    assert status == 403


async def _revenue_rows(api: Api, admin: User, group: str) -> dict[str, dict[str, int]]:
    """Today's usd revenue rows by ``group``, by key; the totals checked against the rows."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    query = f"/api/v1/admin/revenue?from={today}&to={today}&group={group}"
    status, report = await mk.rest(api, "GET", query, None, admin.access_token)
    assert status == 200, report
    rows = [r for r in report["rows"] if r["currency"] == "usd"]
    usd = next((t for t in report["totals"] if t["currency"] == "usd"), None)
    for name in ("gmv", "orders", "refunds", "commission"):
        assert (usd or {}).get(name, 0) == sum(r[name] for r in rows)
    return {r["key"]: {k: r[k] for k in ("gmv", "orders", "refunds", "commission")} for r in rows}


async def _paid_refund(settings: Settings, order_id: str) -> dict[tuple[str, str], int] | None:
    entries = await _entries(settings, order_id)
    return entries if ("refund_paid", "provider_clearing") in entries else None


async def _paid_refunds(settings: Settings, order_id: str, n: int) -> bool:
    rows = await _fetch(
        settings,
        "SELECT count(*) AS n FROM ledger_transactions"
        " WHERE order_id = $1 AND kind = 'refund_paid'",
        order_id,
    )
    return int(rows[0]["n"]) >= n


async def test_payouts_wait_for_fulfilment_the_hold_period_and_disputes(
    api: Api, settings: Settings
) -> None:
    admin = await staff(api, settings, "admin")
    seller, item = await _shop(api, settings, 92, "bread", 1000)
    _, (first,) = await _buy(api, [(item, 1)], "ledger-p1")
    ws2, (second,) = await _buy(api, [(item, 2)], "ledger-p2")
    assert (await _balance(api, seller))["pending"] == 900 + 1800
    await asyncio.sleep(1.5)  # past the hold period, but neither is fulfilled: still pending
    assert (await _balance(api, seller))["available"] == 0
    for order in (first, second):
        await _fulfil(api, seller, order["id"])
    # the second buyer disputes: that order's money is held, the first one's released
    body = {"order_id": second["id"], "reason": "not_as_described", "text": "stale"}
    dispute = (await ws2.mutate("dispute.open", body))["dispute"]
    balance = await _until(lambda: _balance_with(api, seller, available=900))
    assert (balance["available"], balance["held"], balance["pending"]) == (900, 1800, 0)

    status, run = await mk.rest(api, "POST", "/api/v1/admin/payouts/run", None, admin.access_token)
    assert status == 200, run
    (payout,) = [p for p in run["payouts"] if p["vendor_id"] == item["vendor"]["id"]]
    assert (payout["amount"], payout["method"], payout["status"]) == (900, "manual", "pending")
    assert payout["orders"] == [first["id"]]  # the disputed order is not paid out
    balance = await _balance(api, seller)
    assert (balance["available"], balance["in_transit"], balance["held"]) == (0, 900, 1800)
    # a second run pays nothing twice
    status, again = await mk.rest(
        api, "POST", "/api/v1/admin/payouts/run", None, admin.access_token
    )
    assert not [p for p in again["payouts"] if p["vendor_id"] == item["vendor"]["id"]]
    status, page = await mk.rest(api, "GET", "/api/v1/vendor/payouts", None, seller.access_token)
    assert status == 200 and [p["id"] for p in page["items"]] == [payout["id"]]

    # the operator pays it by hand and says so; twice is a conflict, nothing else is
    path = f"/api/v1/admin/payouts/{payout['id']}/paid"
    status, bad = await mk.rest(api, "POST", path, {"reference": ""}, admin.access_token)
    assert status == 400 and bad["error"]["code"] == "bad_request"
    status, paid = await mk.rest(api, "POST", path, {"reference": "SEPA-1"}, admin.access_token)
    assert status == 200 and paid["payout"]["status"] == "paid", paid
    status, twice = await mk.rest(api, "POST", path, {"reference": "SEPA-2"}, admin.access_token)
    assert status == 409 and twice["error"]["code"] == "conflict"
    status, _ = await mk.rest(
        api, "POST", "/api/v1/admin/payouts/nope/paid", {"reference": "x"}, admin.access_token
    )
    assert status == 404
    assert (await _balance(api, seller))["in_transit"] == 0

    # the dispute is rejected: the hold goes, the money is pending again, then released
    status, resolved = await mk.rest(
        api,
        "POST",
        f"/api/v1/admin/disputes/{dispute['id']}/resolve",
        {"outcome": "reject"},
        admin.access_token,
    )
    assert status == 200, resolved
    balance = await _until(lambda: _balance_with(api, seller, available=1800))
    assert (balance["available"], balance["held"]) == (1800, 0)
    status, run = await mk.rest(api, "POST", "/api/v1/admin/payouts/run", None, admin.access_token)
    (payout2,) = [p for p in run["payouts"] if p["vendor_id"] == item["vendor"]["id"]]
    assert payout2["amount"] == 1800 and payout2["orders"] == [second["id"]]

    # a refund after the payout: the vendor owes it, netted against the next payout
    status, reply = await mk.rest(
        api,
        "POST",
        f"/api/v1/admin/orders/{first['id']}/refund",
        {"amount": 500, "reason": "late complaint"},
        admin.access_token,
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 200, reply
    balance = await _until(lambda: _balance_with(api, seller, available=-450))
    assert balance["available"] == -450  # 500 less its 50 of commission


async def _balance_with(api: Api, vendor: User, **want: int) -> dict[str, Any] | None:
    balance = await _balance(api, vendor)
    return balance if all(balance[k] == v for k, v in want.items()) else None


class FakeTransfers:
    """Stripe's ``POST /v1/transfers`` on loopback, honouring idempotency keys; an account
    named ``acct_gone`` does not exist; the next ``unavailable[account]`` calls to an account
    answer 503."""

    def __init__(self) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.keys: list[str] = []
        """The idempotency key of every call, in order (retries included)."""
        self.unavailable: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/transfers", self.create)
        return app

    async def create(self, request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer sk_test_hyperlocal"
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.calls += 1
        self.keys.append(request.headers["Idempotency-Key"])
        if self.unavailable.get(form["destination"], 0) > 0:
            self.unavailable[form["destination"]] -= 1
            return web.json_response({"error": {"type": "api_error"}}, status=503)
        if form["destination"] == "acct_gone":
            error = {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": "No such destination: 'acct_gone'",
            }
            return web.json_response({"error": error}, status=400)
        key = request.headers["Idempotency-Key"]
        if key not in self.by_key:
            self.by_key[key] = {
                "id": f"tr_{uuid.uuid4().hex[:16]}",
                "object": "transfer",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "destination": form["destination"],
            }
        return web.json_response(self.by_key[key])


@pytest.fixture
async def transfers(settings: Settings) -> AsyncIterator[tuple[FakeTransfers, Payouts]]:
    fake = FakeTransfers()
    server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await server.start_server()
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    rail = StripeTransfers("sk_test_hyperlocal", str(server.make_url("")).rstrip("/"))
    try:
        yield fake, Payouts(pool, LedgerService(settings, pool), rail)
    finally:
        await rail.close()
        await pool.close()
        await server.close()


async def test_connected_accounts_get_stripe_transfers_and_a_refused_one_gives_the_money_back(
    api: Api, settings: Settings, transfers: tuple[FakeTransfers, Payouts]
) -> None:
    fake, payouts = transfers
    shops = []
    for i, account in ((93, "acct_ok"), (94, "acct_gone")):
        seller, item = await _shop(api, settings, i, "bread", 2000)
        conn = await mk.db(settings)
        try:
            await conn.execute(
                "UPDATE vendors SET payout_account = $2 WHERE id = $1",
                item["vendor"]["id"],
                account,
            )
        finally:
            await conn.close()
        _, (order,) = await _buy(api, [(item, 1)], f"ledger-t{i}")
        await _fulfil(api, seller, order["id"])
        shops.append((seller, item))
    for seller, _ in shops:
        await _until(lambda s=seller: _balance_with(api, s, available=1800))
    result = await payouts.run(OPERATOR)
    queued = {p["vendor_id"]: p for p in result["transfers"]}
    assert all(queued[item["vendor"]["id"]]["status"] == "pending" for _, item in shops)
    mine = {r["vendor_id"]: payout_public(r) for r in await payouts.send_due()}
    ok, gone = (mine[item["vendor"]["id"]] for _, item in shops)
    assert (ok["method"], ok["status"], ok["reference"][:3]) == ("stripe_transfer", "paid", "tr_")
    assert gone["status"] == "failed" and "acct_gone" in gone["error"]
    assert (await _balance(api, shops[0][0]))["in_transit"] == 0
    back = await _balance(api, shops[1][0])
    assert (back["available"], back["in_transit"]) == (1800, 0)  # refused: the money is back
    calls = fake.calls
    await payouts.run(OPERATOR)  # the paid one is not sent again
    await payouts.send_due()
    assert fake.by_key.keys() == {f"payout-{ok['id']}"} and fake.calls >= calls


async def test_replayed_stripe_webhooks_add_nothing(api: Api, settings: Settings) -> None:
    """A capture's webhook (and any replay of it) after the checkout captured: no entries."""
    fake = FakeStripe()
    fake_server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await fake_server.start_server()
    configured = with_stripe(settings, fake_server)
    gateway = TestServer(build_app(configured), host="127.0.0.1", port=0)
    await gateway.start_server()
    try:
        async with ClientSession() as http:
            sapi = Api(str(gateway.make_url("")), http)
            _, item = await _shop(sapi, settings, 95, "bread", 700)
            buyer = await sapi.signup("ledger-stripe")
            ws = await sapi.connect(buyer)
            await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
            pay = {"provider": "stripe", "payment_method": "pm_card_threeDSecure2Required"}
            reply = await ws.request("checkout", {"payment": pay}, key=uuid.uuid4().hex)
            assert reply["ok"], reply
            (order,) = reply["data"]["orders"]
            assert await _entries(settings, order["id"]) == {}  # not captured yet
            (intent,) = [i for i in fake.intents.values()]
            intent["status"] = "succeeded"
            succeeded = event("payment_intent.succeeded", intent)
            for evt in (succeeded, succeeded, event("payment_intent.succeeded", intent)):
                status, _ = await send_event(sapi, evt)
                assert status == 200
            entries = await _entries(settings, order["id"])
            assert entries == {
                ("capture", "provider_clearing"): 700,
                ("capture", "vendor_pending"): -630,
                ("capture", "platform_commission"): -70,
            }
            count = await _fetch(
                settings,
                "SELECT count(*) AS n FROM ledger_transactions WHERE order_id = $1",
                order["id"],
            )
            assert count[0]["n"] == 1
            await ws.close()
    finally:
        await gateway.close()
        await fake_server.close()


async def test_every_transaction_balances_and_every_balance_is_its_entries(
    api: Api, settings: Settings
) -> None:
    """Over the whole table, after every flow above (and whatever ran before in the session)."""
    unbalanced = await _fetch(
        settings,
        "SELECT txn_id, sum(amount) FROM ledger_entries GROUP BY txn_id HAVING sum(amount) <> 0",
    )
    assert unbalanced == []
    mismatched = await _fetch(
        settings,
        "SELECT t.id FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.txn_id = t.id"
        " GROUP BY t.id, t.amount HAVING coalesce(sum(greatest(e.amount, 0)), 0) <> t.amount",
    )
    assert mismatched == []  # each transaction's amount is its debits
    assert (await _fetch(settings, "SELECT count(*) AS n FROM ledger_transactions"))[0]["n"] > 0
    # each vendor: the balance served is the sum of its entries, account by account
    vendors = await _fetch(
        settings,
        "SELECT v.user_id, e.owner, e.account, e.currency, -sum(e.amount)::bigint AS owed"
        " FROM ledger_entries e JOIN vendors v ON v.id = e.owner"
        " WHERE e.account IN ('vendor_pending', 'vendor_available', 'vendor_held',"
        " 'payouts_in_transit') GROUP BY 1, 2, 3, 4",
    )
    assert vendors
    # the provider's clearing account is what was captured less what was refunded and sent
    captured = await _fetch(
        settings,
        "SELECT (SELECT coalesce(sum(amount), 0) FROM ledger_entries"
        "  WHERE account = 'provider_clearing') AS ledger,"
        " (SELECT coalesce(sum(o.total), 0) FROM orders o JOIN payments p"
        "  ON p.group_id = o.group_id WHERE p.status = 'captured')"
        " - (SELECT coalesce(sum(amount), 0) FROM refunds WHERE status IN ('succeeded',"
        "  'external'))"
        " - (SELECT coalesce(sum(amount), 0) FROM payouts WHERE status = 'paid'"
        "  AND method = 'stripe_transfer') AS tables",
    )
    assert captured[0]["ledger"] == captured[0]["tables"]
    sums: dict[tuple[str, str], dict[str, int]] = {}
    for r in vendors:
        sums.setdefault((r["owner"], r["currency"]), {})[r["account"]] = int(r["owed"])
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        ledger = LedgerService(settings, pool)
        for owner in {owner for owner, _ in sums}:
            for served in (await ledger.balance(owner))["balances"]:
                summed = sums[(owner, served["currency"])]
                assert served == {
                    "currency": served["currency"],
                    "pending": summed.get("vendor_pending", 0),
                    "available": summed.get("vendor_available", 0),
                    "held": summed.get("vendor_held", 0),
                    "in_transit": summed.get("payouts_in_transit", 0),
                }, owner
    finally:
        await pool.close()
