"""Payouts: a vendor's available balance paid out, in batches (docs/payments.md, "Payouts").

A batch (``run``: every ``payout_interval_s`` from the control actor, or ``payouts.run`` by an
admin) first releases what is due (services/ledger.py), then, per vendor and currency, in one
transaction with the vendor's row locked (two batches never pay the same money):

1. asks ``payout_blocked`` (services/payout_holds.py): a vendor-wide hold or a suspension skips
   the vendor; an order's open hold skips that order (its money is in ``vendor_held`` anyway);
2. locks the rows of the orders with an available balance (``SKIP LOCKED``: one its owner
   shard is writing waits for the next batch; a batch never waits on a shard), then takes
   every other order's available balance (those below zero too: a refund after an earlier
   payout nets against this one); nothing positive left: no payout;
3. writes the ``payouts`` row and its ledger transaction (available -> in transit) together.

Then the money moves: a **Stripe Connect transfer** to the vendor's connected account
(``vendors.payout_account``) when Stripe is configured, keyed by the payout id (a retry is the
same transfer); paid: in transit -> Stripe's balance. Refused for good: the payout fails and the
money goes back to the orders it came from; unavailable: it stays pending and the next batch
tries again. Without a connected account it is a **manual** payout: a record the operator pays
and marks paid (``payouts.paid``, with its reference): in transit -> ``payouts_settled``; its
``destination`` is the masked bank account the vendor set (services/payout_accounts.py), whose
details an admin opens with ``payouts.account``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Protocol

import asyncpg

from models import ledger as lg
from models.admin import target_ref
from models.errors import AppError, BadRequest, Conflict, NotFound
from models.ids import new_id
from models.market import PageCursor
from models.rbac import OPERATOR, Staff
from services.ledger import LedgerService
from services.loops import LoopFailures, SupervisedLoop
from services.payout_accounts import PayoutAccounts
from services.payout_holds import payout_blocked
from store import admin_store as st
from store import ledger_store as ls
from store.db import Conn

log = logging.getLogger("hyperlocal.payouts")

_VENDORS = 500


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
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.transfers = transfers
        self.accounts = accounts
        """Where each vendor's payouts go (None in tests that set the columns by hand)."""

    # -- batches --------------------------------------------------------------------------------
    async def run(self, staff: Staff) -> dict[str, Any]:
        """One batch (``payouts.run``): releases, new payouts, pending transfers sent; audited."""
        staff.require("payouts.run")
        released = await self.ledger.release_due()
        made = []
        for vendor_id in await ls.vendors_with_available(self.db, _VENDORS):
            made.extend(await self._make(vendor_id))
        sent = [await self._send(row["id"]) for row in await self._pending_transfers()]
        result = {"released": released, "payouts": [payout_public(r) for r in made],
                  "transfers": [payout_public(r) for r in sent if r is not None]}  # fmt: skip
        summary = {"released": released, "payouts": [r["id"] for r in made]}
        await st.audit(self.db, staff.user_id, "payouts.run", "-", None, summary)
        return result

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

    async def _pending_transfers(self) -> list[asyncpg.Record]:
        if self.transfers is None:
            return []
        return list(
            await self.db.fetch(
                "SELECT id FROM payouts WHERE status = 'pending' AND method = 'stripe_transfer'"
                " ORDER BY created_at LIMIT 100"
            )
        )

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
        """A pending payout ``paid`` or ``failed``, with its ledger transaction, together; one
        no longer pending is left as it is (``conflict`` for a manual one marked twice)."""
        async with self.db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE payouts SET status = $2, reference = $3, error = $4, updated_at = now(),"
                " paid_at = CASE WHEN $2 = 'paid' THEN now() END"
                f" WHERE id = $1 AND status = 'pending' RETURNING {ls.PAYOUT_COLUMNS}",
                payout_id,
                status,
                reference,
                error,
            )
            if row is None:
                current = await conn.fetchrow(
                    f"SELECT {ls.PAYOUT_COLUMNS} FROM payouts WHERE id = $1", payout_id
                )
                if current is None:
                    raise NotFound("no such payout")
                return current
            source, vendor = f"payout:{payout_id}", row["vendor_id"]
            if status == "paid":
                legs = lg.payout_paid_legs(vendor, row["amount"], row["method"])
                await ls.post(conn, source, "payout_paid", row["currency"], legs, vendor_id=vendor)
            else:
                taken = await ls.payout_taken(conn, payout_id)
                legs = lg.payout_failed_legs(vendor, taken)
                await ls.post(conn, source, "payout_failed", row["currency"], legs,
                              vendor_id=vendor)  # fmt: skip
            return row

    # -- the operator's side ------------------------------------------------------------------
    async def mark_paid(self, staff: Staff, payout_id: str, reference: str) -> dict[str, Any]:
        """A manual payout the operator has paid (``payouts.paid``), with its reference."""
        staff.require("payouts.paid")
        if not 1 <= len(reference) <= 200:
            raise BadRequest("reference: 1 to 200 characters")
        row = await self.db.fetchrow(
            f"SELECT {ls.PAYOUT_COLUMNS} FROM payouts WHERE id = $1", payout_id
        )
        if row is None:
            raise NotFound("no such payout")
        if row["method"] != "manual":
            raise Conflict("a transfer payout is marked paid by its transfer")
        if row["status"] != "pending":
            raise Conflict(f"this payout is {row['status']}")
        done = await self._finish(payout_id, "paid", reference, None)
        await st.audit(self.db, staff.user_id, "payouts.paid", target_ref("payout", payout_id),
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


async def run_scheduled(
    payouts: Payouts,
    ledger: LedgerService,
    payout_every_s: float,
    release_every_s: float,
    failures: LoopFailures | None = None,
) -> None:
    """The control actor's money loop: releases every ``release_every_s``, a payout batch as
    the operator every ``payout_every_s`` (0: only on demand). Never dies (services/loops.py):
    a failing round is logged and tried again next period."""
    loop = asyncio.get_running_loop()
    next_batch = loop.time() + payout_every_s if payout_every_s > 0 else None

    async def one() -> None:
        nonlocal next_batch
        if next_batch is not None and loop.time() >= next_batch:
            next_batch = loop.time() + payout_every_s
            await payouts.run(OPERATOR)
        else:
            await ledger.release_due()

    await SupervisedLoop(
        "money", one, period_s=release_every_s, log=log, wait_first=True, failures=failures
    ).run()
