"""The ledger's use cases: vendor balances, the release sweep and revenue reports.

The ledger itself is Postgres (store/migrations/0016_ledger.sql): captures, refunds and holds
are posted by triggers on the rows whose change causes them, in that change's own statement;
this service posts the **release** of an order's pending balance (fulfilled, then
``balance_hold_s`` passed, no open hold of the order: ``orders_held``) as a ledger
transaction, a batch of orders by one statement, and reads balances and revenue. It keeps no
state; every call is idempotent (a release is unique per order).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import asyncpg

from cluster.config import Settings
from models import ledger as lg
from models.rbac import Staff
from services.payout_holds import orders_held, payout_blocked, vendor_hold
from store import ledger_store as ls

log = logging.getLogger("hyperlocal.ledger")

_BATCH = 200


class LedgerService:
    """Balances, releases and revenue over the ledger tables (see the module docstring)."""

    def __init__(self, settings: Settings, db: asyncpg.Pool) -> None:
        self.settings = settings
        self.db = db

    async def balance(self, vendor_id: str) -> dict[str, Any]:
        """``{available, pending, currency}`` of the vendor's newest currency (none yet: zeros
        in the default currency), with ``held``, ``in_transit`` and ``balances``: every
        currency's figures; ``holds``: the open holds that stop its payouts (a dispute's or an
        admin's, of one order or, ``order_id`` null, of all), and ``payouts_suspended`` while
        the vendor is suspended (``payout_blocked``: what a payout batch skips)."""
        rows = await ls.balances(self.db, vendor_id)
        first = rows[0] if rows else {"currency": "usd", "available": 0, "pending": 0,
                                      "held": 0, "in_transit": 0}  # fmt: skip
        blocked = await payout_blocked(self.db, vendor_id)
        holds = [vendor_hold(b["hold"]) for b in blocked if b.get("hold")]
        suspended = any(b["reason"] == "vendor_suspended" for b in blocked)
        return {**first, "balances": rows, "holds": holds, "payouts_suspended": suspended}

    async def release_due(self, now: dt.datetime | None = None) -> int:
        """Release the pending balance of every order fulfilled at least ``balance_hold_s``
        ago and not held (an open hold of the order keeps it queued); the orders released.

        A batch of due orders is locked first, queue rows and order rows each in one
        statement (``SKIP LOCKED``: one being written is left for the next sweep, so this
        never waits on a shard), so a refund or a hold of an order is posted either wholly
        before or wholly after its release; then the open holds of the batch are read and
        every other order is released by one set-based statement (store/ledger_store.py
        ``post_releases``), with a snapshot taken after the locks."""
        now = now or dt.datetime.now(dt.UTC)
        cutoff = now - dt.timedelta(seconds=self.settings.balance_hold_s)
        async with self.db.acquire() as conn, conn.transaction():
            due = [row["order_id"] for row in await ls.due_releases(conn, cutoff, _BATCH)]
            locked = await ls.lock_orders(conn, due) if due else set()
            held = await orders_held(conn, sorted(locked)) if locked else set()
            ready = sorted(locked - held)
            released = await ls.post_releases(conn, ready) if ready else 0
        if released:
            log.info("released the pending balance of %d orders", released)
        return released

    async def revenue(
        self, staff: Staff, first: str | None, last: str | None, group: str | None
    ) -> dict[str, Any]:
        """The admin's revenue report (``revenue.read``): rows per key and currency, totals
        per currency (models/ledger.py ``ReportRange`` for the query's rules)."""
        staff.require("revenue.read")
        span = lg.ReportRange.parse(first, last, group, dt.datetime.now(dt.UTC).date())
        rows = await ls.revenue(self.db, span)
        return {
            "from": span.first.isoformat(),
            "to": span.last.isoformat(),
            "group": span.group,
            "rows": rows,
            "totals": lg.totals(rows),
        }
