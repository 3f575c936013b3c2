"""Payout batches' correctness against real Postgres, Redis, shards and the control actor
(docs/payments.md, "Payouts"): two concurrent marks of one manual payout (one wins, one
``conflict``, one audit entry), a batch reaching every vendor page after page, releases of a
batch posted set-based, and transfers sent by the money loop, never in the batch's request,
retried with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from models.errors import Conflict
from models.rbac import OPERATOR
from payments.stripe_transfers import StripeTransfers
from services.ledger import LedgerService
from services.loops import Backoff
from services.payouts import Payouts, run_scheduled
from store import ledger_store as ls
from store.db import create_pool
from tests.integration import market_kit as mk
from tests.integration.client import Api
from tests.integration.test_money_ledger import (
    FakeTransfers,
    _balance_with,
    _buy,
    _entries,
    _fulfil,
    _shop,
    _until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url
    db = await create_pool(settings.database_url, min_size=2, max_size=6)
    try:
        yield db
    finally:
        await db.close()


async def _available_shops(
    api: Api, settings: Settings, spots: range, price: int, name: str
) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """One new shop per spot, each with one order of one checkout fulfilled and released:
    ``(seller, listing, order)`` each, the vendor owed ``price`` less 10 % available."""
    shops = [await _shop(api, settings, i, "bread", price) for i in spots]
    _, orders = await _buy(api, [(item, 1) for _, item in shops], name)
    by_vendor = {o["vendor_id"]: o for o in orders}
    made = []
    for seller, item in shops:
        order = by_vendor[item["vendor"]["id"]]
        await _fulfil(api, seller, order["id"])
        made.append((seller, item, order))
    owed = price - price // 10
    for seller, _, _ in made:
        assert await _until(lambda s=seller: _balance_with(api, s, available=owed)), seller
    return made


async def _count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


async def test_two_concurrent_marks_of_one_manual_payout_one_wins_one_conflict_one_audit(
    api: Api, settings: Settings, pool: asyncpg.Pool
) -> None:
    ((seller, item, _),) = await _available_shops(api, settings, range(160, 161), 1000, "cas")
    payouts = Payouts(pool, LedgerService(settings, pool), None)
    batch = await payouts.run(OPERATOR)
    (payout,) = [p for p in batch["payouts"] if p["vendor_id"] == item["vendor"]["id"]]
    assert (payout["method"], payout["status"], payout["amount"]) == ("manual", "pending", 900)

    outcomes = await asyncio.gather(
        payouts.mark_paid(OPERATOR, payout["id"], "SEPA-A"),
        payouts.mark_paid(OPERATOR, payout["id"], "SEPA-B"),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if not isinstance(o, dict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], Conflict) and "paid" in lost[0].message
    reference = won[0]["payout"]["reference"]
    target = f"payout:{payout['id']}"
    audited = await pool.fetch(
        "SELECT result FROM audit_log WHERE action = 'payouts.paid' AND target = $1", target
    )
    assert [a["result"] for a in audited] == [{"reference": reference}]
    row = await pool.fetchrow("SELECT status, reference FROM payouts WHERE id = $1", payout["id"])
    assert (row["status"], row["reference"]) == ("paid", reference)
    assert await _count(pool, "SELECT count(*) FROM ledger_transactions WHERE source = $1"
                        " AND kind = 'payout_paid'", target) == 1  # fmt: skip
    assert await _balance_with(api, seller, in_transit=0, available=0)
    # a third mark is a conflict too, and writes no audit entry of a payment
    with pytest.raises(Conflict):
        await payouts.mark_paid(OPERATOR, payout["id"], "SEPA-C")
    assert len(await pool.fetch("SELECT 1 FROM audit_log WHERE action = 'payouts.paid'"
                                " AND target = $1", target)) == 1  # fmt: skip


async def test_a_batch_reaches_every_vendor_page_after_page_and_releases_set_based(
    api: Api, settings: Settings, pool: asyncpg.Pool
) -> None:
    made = await _available_shops(api, settings, range(161, 164), 2000, "pages")
    mine = sorted(item["vendor"]["id"] for _, item, _ in made)
    # each order's release: one transaction of two legs (pending -> available), off the queue
    for _, _, order in made:
        entries = await _entries(settings, order["id"])
        assert (entries[("release", "vendor_pending")],
                entries[("release", "vendor_available")]) == (1800, -1800)  # fmt: skip
        assert await _count(pool, "SELECT count(*) FROM ledger_transactions WHERE order_id = $1"
                            " AND kind = 'release'", order["id"]) == 1  # fmt: skip
        assert not await _count(pool, "SELECT count(*) FROM ledger_release_queue"
                                " WHERE order_id = $1", order["id"])  # fmt: skip

    # keyset pages of one vendor: every vendor once, in id order, ours among them
    seen, after = [], ""
    while page := await ls.vendors_with_available(pool, after, 1):
        assert len(page) == 1 and page[0] > after
        seen.append(page[0])
        after = page[0]
    assert set(mine) <= set(seen) and seen == sorted(set(seen))

    # a batch reading one vendor a page still pays every one of them
    payouts = Payouts(pool, LedgerService(settings, pool), None, page=1)
    batch = await payouts.run(OPERATOR)
    paid = sorted(p["vendor_id"] for p in batch["payouts"] if p["vendor_id"] in mine)
    assert paid == mine
    assert not set(mine) & set(await ls.vendors_with_available(pool, "", 10_000))


async def test_transfers_are_sent_by_the_money_loop_not_the_batch_and_retried_with_one_key(
    api: Api, settings: Settings, pool: asyncpg.Pool
) -> None:
    fake = FakeTransfers()
    server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await server.start_server()
    rail = StripeTransfers("sk_test_hyperlocal", str(server.make_url("")).rstrip("/"))
    ledger = LedgerService(settings, pool)
    payouts = Payouts(pool, ledger, rail, retry=Backoff(first_s=1.0, cap_s=1.0))
    ((seller, item, _),) = await _available_shops(api, settings, range(164, 165), 3000, "sent")
    conn = await mk.db(settings)
    try:
        await conn.execute("UPDATE vendors SET payout_account = 'acct_loop164' WHERE id = $1",
                           item["vendor"]["id"])  # fmt: skip
    finally:
        await conn.close()
    loop = asyncio.create_task(run_scheduled(payouts, ledger, 0.0, 0.2))
    try:
        fake.unavailable["acct_loop164"] = 3  # the first attempt: Stripe away (+ 2 SDK retries)
        batch = await payouts.run(OPERATOR)
        (queued,) = [p for p in batch["transfers"] if p["vendor_id"] == item["vendor"]["id"]]
        key = f"payout-{queued['id']}"
        assert key not in fake.keys  # the batch (the admin's request) answered without sending
        assert (queued["method"], queued["status"], queued["amount"]) == (
            "stripe_transfer", "pending", 2700
        )  # fmt: skip

        async def attempts() -> int:
            return await _count(pool, "SELECT attempts FROM payouts WHERE id = $1", queued["id"])

        assert await _until(attempts, timeout=5.0) == 1  # sent by the loop, refused, kept
        row = await pool.fetchrow("SELECT status, error FROM payouts WHERE id = $1", queued["id"])
        assert row["status"] == "pending" and "stripe transfer failed" in row["error"]

        async def paid() -> bool:  # after its backoff (1 s) the loop sends it again
            status = await pool.fetchval("SELECT status FROM payouts WHERE id = $1", queued["id"])
            return status == "paid"

        assert await _until(paid, timeout=5.0)
        assert fake.keys.count(key) == 4  # every call, the retry too, is the same transfer
        assert fake.by_key[key]["amount"] == 2700
        assert await _balance_with(api, seller, in_transit=0, available=0)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await rail.close()
        await server.close()
