"""Payouts: a vendor's available balance paid out, in batches (docs/payments.md, "Payouts").

A batch (``run``: every ``payout_interval_s`` from the control actor, or ``payouts.run`` by an
admin) first releases what is due (services/ledger.py), then, per vendor and currency, in one
transaction with the vendor's row locked (two batches never pay the same money):

Every vendor with an available balance is reached, ``page`` at a time in vendor id order
(keyset over the partial index ``ledger_entries_available``, migration 0026), so no vendor
waits behind the same first page run after run.

1. asks ``payout_blocked`` (services/payout_holds.py): a vendor-wide hold or a suspension skips
   the vendor; an order's open hold skips that order (its money is in ``vendor_held`` anyway);
2. locks the rows of the orders with an available balance (``SKIP LOCKED``: one its owner
   shard is writing waits for the next batch; a batch never waits on a shard), then takes
   every other order's available balance (those below zero too: a refund after an earlier
   payout nets against this one); nothing positive left: no payout;
3. writes the ``payouts`` row and its ledger transaction (available -> in transit) together.

Then the money moves, never inside the batch (nor the admin's request that ran it): a
**Stripe Connect transfer** to the vendor's connected account (``vendors.payout_account``) when
Stripe is configured is queued ``pending`` and sent by the control actor's money loop
(``send_due``, woken by the batch), keyed by the payout id (a retry is the same transfer);
paid: in transit -> Stripe's balance. Refused for good: the payout fails and the money goes
back to the orders it came from; unavailable: it stays pending (``attempts`` counted) and is
sent again after ``retry`` (capped exponential backoff). Without a connected account it is a
**manual** payout: a record the operator pays and marks paid (``payouts.paid``, with its
reference; a compare-and-set with its audit entry in one transaction): in transit ->
``payouts_settled``; its ``destination`` is the masked bank account the vendor set
(services/payout_accounts.py), whose details an admin opens with ``payouts.account``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import asyncpg

from models import ledger as lg
from models.admin import target_ref
from models.errors import AppError, BadRequest, Conflict, NotFound
from models.ids import new_id
from models.market import PageCursor
from models.rbac import OPERATOR, Staff
from services.ledger import LedgerService
from services.loops import Backoff, LoopFailures, SupervisedLoop
from services.payout_accounts import PayoutAccounts
from services.payout_holds import payout_blocked
from store import admin_store as st
from store import ledger_store as ls
from store.db import Conn

log = logging.getLogger("hyperlocal.payouts")

_RETRY = Backoff(first_s=60.0, cap_s=3600.0)
"""The defaults of ``payout_retry_base_s`` and ``payout_retry_max_s``."""


class Transfers(Protocol):
    """Where a transfer payout goes (payments/stripe_transfers.py: ``StripeTransfers``)."""

    async def transfer(self, destination: str, amount: int, currency: str, key: str) -> str: ...


def payout_public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "vendor_id": row["vendor_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "method": row["method"],
        "status": row["status"],
        "destination": row["destination"],
        "reference": row["reference"],
        "error": row["error"],
        "orders": list(row["orders"]),
        "created_at": st.iso(row["created_at"]),
        "paid_at": st.iso(row["paid_at"]),
    }


class Payouts:
    """Payout batches, transfers and the operator's manual payouts (see the module docstring);
    keeps no state."""

    def __init__(
        self,
        db: asyncpg.Pool,
        ledger: LedgerService,
        transfers: Transfers | None,
        accounts: PayoutAccounts | None = None,
        *,
        page: int = 500,
        retry: Backoff = _RETRY,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.transfers = transfers
        self.accounts = accounts
        """Where each vendor's payouts go (None in tests that set the columns by hand)."""
        self.page = page
        """Vendors read per page by a batch (``payout_vendor_page``)."""
        self.retry = retry
        """When a transfer the provider could not take is sent again (``payout_retry_*``)."""
        self.queued = asyncio.Event()
        """Set when a batch queued transfers: wakes the money loop (``run_scheduled``)."""

    # -- batches --------------------------------------------------------------------------------
    async def run(self, staff: Staff) -> dict[str, Any]:
        """One batch (``payouts.run``): releases, then new payouts recorded; audited. No money
        moves here: the transfer payouts are queued (``pending``) and the money loop sends
        them (``send_due``), woken at once (``queued``)."""
        staff.require("payouts.run")
        released = await self.ledger.release_due()
        made = []
        async for vendor_id in self._vendors():
            made.extend(await self._make(vendor_id))
        result = {"released": released, "payouts": [payout_public(r) for r in made],
                  "transfers": [payout_public(r) for r in made
                                if r["method"] == "stripe_transfer"]}  # fmt: skip
        summary = {"released": released, "payouts": [r["id"] for r in made]}
        await st.audit(self.db, staff.user_id, "payouts.run", "-", None, summary)
        if result["transfers"]:
            self.queued.set()  # last: the answer is made before the loop sends a thing
        return result

    async def _vendors(self) -> AsyncIterator[str]:
        """Every vendor with an available balance, a page (``page``) at a time in id order:
        a batch reaches them all, not the same first page each run."""
        after = ""
        while True:
            page = await ls.vendors_with_available(self.db, after, self.page)
            for vendor_id in page:
                yield vendor_id
            if len(page) < self.page:
                return
            after = page[-1]

    async def send_due(self) -> list[asyncpg.Record]:
        """Send the pending transfers whose attempt is due (the first at once, the n-th retry
        ``retry.delay_s(n)`` after the last attempt), oldest first, 100 a call; the payouts
        afterwards. The money loop's step."""
        if self.transfers is None:
            return []
        sent = []
        for row in await ls.transfers_due(self.db, self.retry.first_s, self.retry.cap_s, 100):
            done = await self._send(row["id"])
            if done is not None:
                sent.append(done)
        return sent

    async def _make(self, vendor_id: str) -> list[asyncpg.Record]:
        """The vendor's payouts of this batch (one per currency with money to pay)."""
        async with self.db.acquire() as conn, conn.transaction():
            vendor = await conn.fetchrow(
                "SELECT id, payout_account, payout_bank_hint FROM vendors WHERE id = $1 FOR UPDATE",
                vendor_id,
            )
            if vendor is None:
                return []
            blocked = await payout_blocked(conn, vendor_id)
            if any(b["reason"] == "vendor_suspended" or b["hold"]["order_id"] is None
                   for b in blocked):  # fmt: skip
                log.info("payouts of vendor %s blocked: %s", vendor_id, blocked)
                return []
            held = {b["hold"]["order_id"] for b in blocked}
            # lock the orders (those being written are left for the next batch), then read
            # their balances: a refund or a hold of one is wholly before or after this payout
            candidates = await ls.owed_by_order(conn, vendor_id, lg.VENDOR_AVAILABLE)
            locked = await ls.lock_orders(conn, sorted(candidates))
            available = {
                order: owed
                for order, owed in (
                    await ls.owed_by_order(conn, vendor_id, lg.VENDOR_AVAILABLE)
                ).items()
                if order in locked
            }
            per_currency: dict[str, dict[str, int]] = {}
            for order_id, (currency, amount) in available.items():
                per_currency.setdefault(currency, {})[order_id] = amount
            made = []
            for currency, orders in sorted(per_currency.items()):
                taken = lg.payout_amount(orders, held)
                if sum(taken.values()) > 0:
                    made.append(await self._record(conn, vendor, currency, taken))
            return made

    async def _record(
        self, conn: Conn, vendor: asyncpg.Record, currency: str, taken: dict[str, int]
    ) -> asyncpg.Record:
        method = "stripe_transfer" if vendor["payout_account"] and self.transfers else "manual"
        row = await conn.fetchrow(
            "INSERT INTO payouts (id, vendor_id, currency, amount, method, destination, status,"
            f" orders) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING"
            f" {ls.PAYOUT_COLUMNS}",
            new_id(),
            vendor["id"],
            currency,
            sum(taken.values()),
            method,
            vendor["payout_account" if method == "stripe_transfer" else "payout_bank_hint"],
            sorted(taken),
        )
        assert row is not None
        # negative balances are netted; the transaction takes each order's as it is
        await ls.post(conn, f"payout:{row['id']}", "payout", currency,
                      lg.payout_legs(vendor["id"], taken), vendor_id=vendor["id"])  # fmt: skip
        return row

    async def _send(self, payout_id: str) -> asyncpg.Record | None:
        """Send one pending transfer; the payout afterwards (None: not a pending transfer)."""
        row = await self.db.fetchrow(
            f"SELECT {ls.PAYOUT_COLUMNS} FROM payouts WHERE id = $1", payout_id
        )
        if row is None or row["status"] != "pending" or self.transfers is None:
            return row
        try:
            ref = await self.transfers.transfer(
                row["destination"], row["amount"], row["currency"], row["id"]
            )
        except AppError as err:
            if err.temporary:
                log.warning("payout %s not sent yet: %s", payout_id, err.message)
                return await self._attempted(payout_id, err.message)
            log.error("payout %s refused for good: %s", payout_id, err.message)
            return await self._finish(payout_id, "failed", None, err.message)
        return await self._finish(payout_id, "paid", ref, None)

    async def _attempted(self, payout_id: str, error: str) -> asyncpg.Record | None:
        return await self.db.fetchrow(
            "UPDATE payouts SET attempts = attempts + 1, error = $2, updated_at = now()"
            f" WHERE id = $1 RETURNING {ls.PAYOUT_COLUMNS}",
            payout_id,
            error,
        )

    async def _finish(
        self, payout_id: str, status: str, reference: str | None, error: str | None
    ) -> asyncpg.Record:
        """A pending transfer ``paid`` or ``failed``, with its ledger transaction, together; one
        no longer pending is left as it is (another batch finished it)."""
        async with self.db.acquire() as conn, conn.transaction():
            row = await _settled(conn, payout_id, status, reference, error, "stripe_transfer")
            if row is None:
                current = await conn.fetchrow(
                    f"SELECT {ls.PAYOUT_COLUMNS} FROM payouts WHERE id = $1", payout_id
                )
                if current is None:
                    raise NotFound("no such payout")
                return current
            return row

    # -- the operator's side ------------------------------------------------------------------
    async def mark_paid(self, staff: Staff, payout_id: str, reference: str) -> dict[str, Any]:
        """A manual payout the operator has paid (``payouts.paid``), with its reference: the
        change is a compare-and-set (pending -> paid) in one transaction with its ledger
        posting and its audit entry, so of two concurrent marks one wins and the other is a
        ``conflict`` that changed nothing."""
        staff.require("payouts.paid")
        if not 1 <= len(reference) <= 200:
            raise BadRequest("reference: 1 to 200 characters")
        async with self.db.acquire() as conn, conn.transaction():
            done = await _settled(conn, payout_id, "paid", reference, None, "manual")
            if done is None:
                row = await conn.fetchrow(
                    "SELECT method, status FROM payouts WHERE id = $1", payout_id
                )
                if row is None:
                    raise NotFound("no such payout")
                if row["method"] != "manual":
                    raise Conflict("a transfer payout is marked paid by its transfer")
                raise Conflict(f"this payout is {row['status']}")
            await st.audit(conn, staff.user_id, "payouts.paid", target_ref("payout", payout_id),
                           None, {"reference": reference})  # fmt: skip
        return {"payout": payout_public(done)}

    async def listed(self, staff: Staff, status: str | None) -> dict[str, Any]:
        """Payouts of every vendor, newest first, by ``status`` (``payouts.list``)."""
        staff.require("payouts.list")
        if status not in (None, "pending", "paid", "failed"):
            raise BadRequest("status: pending, paid or failed")
        rows = await self.db.fetch(
            f"SELECT {ls.PAYOUT_COLUMNS} FROM payouts WHERE ($1::text IS NULL OR status = $1)"
            " ORDER BY created_at DESC, id DESC LIMIT 100",
            status,
        )
        return {"items": [payout_public(r) for r in rows], "next_cursor": None}

    async def account_details(self, staff: Staff, vendor_id: str) -> dict[str, Any]:
        """A vendor's payout destination in full (``payouts.account``), to pay it by hand."""
        staff.require("payouts.account")
        if self.accounts is None:
            raise NotFound("payout accounts are not kept here")
        return await self.accounts.details(staff, vendor_id)

    # -- the vendor's side --------------------------------------------------------------------
    async def of_vendor(self, vendor_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """The vendor's payouts, newest first, paged by ``cursor``."""
        before = PageCursor.decode(cursor)
        at = (dt.datetime.fromisoformat(before.created_at), before.last_id) if before else None
        rows = await ls.payouts_of(self.db, vendor_id, at, limit + 1)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        next_cursor = (
            PageCursor(last["created_at"].isoformat(), last["id"]).encode() if last else None
        )
        return {"items": [payout_public(r) for r in page], "next_cursor": next_cursor}


async def _settled(
    conn: Conn, payout_id: str, status: str, reference: str | None, error: str | None, method: str
) -> asyncpg.Record | None:
    """Compare-and-set a pending payout of ``method`` to ``status`` (``paid`` or ``failed``)
    and post its ledger transaction, in the caller's transaction; None (nothing changed) when
    it is not such a pending payout."""
    row = await conn.fetchrow(
        "UPDATE payouts SET status = $2, reference = $3, error = $4, updated_at = now(),"
        " paid_at = CASE WHEN $2 = 'paid' THEN now() END"
        f" WHERE id = $1 AND status = 'pending' AND method = $5 RETURNING {ls.PAYOUT_COLUMNS}",
        payout_id,
        status,
        reference,
        error,
        method,
    )
    if row is None:
        return None
    source, vendor = f"payout:{payout_id}", row["vendor_id"]
    if status == "paid":
        legs = lg.payout_paid_legs(vendor, row["amount"], row["method"])
        await ls.post(conn, source, "payout_paid", row["currency"], legs, vendor_id=vendor)
    else:
        legs = lg.payout_failed_legs(vendor, await ls.payout_taken(conn, payout_id))
        await ls.post(conn, source, "payout_failed", row["currency"], legs, vendor_id=vendor)
    return row


async def run_scheduled(
    payouts: Payouts,
    ledger: LedgerService,
    payout_every_s: float,
    release_every_s: float,
    failures: LoopFailures | None = None,
) -> None:
    """The control actor's money loop: releases every ``release_every_s``, a payout batch as
    the operator every ``payout_every_s`` (0: only on demand), and every round the transfers
    due (``Payouts.send_due``); a batch that queued transfers (an admin's too) wakes it at
    once. Never dies (services/loops.py): a failing round is logged, counted in
    ``failures`` and tried again next period."""
    loop = asyncio.get_running_loop()
    next_batch = loop.time() + payout_every_s if payout_every_s > 0 else None

    async def one() -> None:
        nonlocal next_batch
        if next_batch is not None and loop.time() >= next_batch:
            next_batch = loop.time() + payout_every_s
            await payouts.run(OPERATOR)
        else:
            await ledger.release_due()
        await payouts.send_due()

    await SupervisedLoop(
        "money", one, period_s=release_every_s, log=log, wait_first=True, failures=failures,
        wake=payouts.queued,
    ).run()  # fmt: skip
