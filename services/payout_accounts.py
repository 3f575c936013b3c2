"""Where a vendor's payouts go (docs/payments.md, "Payout account"; the rules: models/
payout_account.py).

``PayoutAccounts`` owns the vendor's payout destination on its ``vendors`` row: a Stripe
Connect account id (``payout_account``: the payout batch makes a transfer to it) or bank
details for the operator's manual payouts (``payout_bank``, sealed at rest under the data keys
with the context ``payout:<vendor id>``, and ``payout_bank_hint``, its masked form, which the
batch copies into each manual payout's ``destination``). The vendor's own user sets, reads
(masked) and clears it, each change audited in the same transaction; an admin paying a manual
payout opens the details in full (``payouts.account``, audited by the control actor). It keeps
no state of its own.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg

from models import payout_account as pa
from models.admin import target_ref
from models.errors import NotFound
from models.rbac import Staff
from services.secrets import Keys
from store import admin_store as st


def _context(vendor_id: str) -> str:
    return f"payout:{vendor_id}"


class PayoutAccounts:
    """A vendor's payout destination (see the module docstring)."""

    def __init__(self, db: asyncpg.Pool, keys: Keys) -> None:
        self.db = db
        self.keys = keys

    async def set(self, vendor_id: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the destination by the one ``body`` names (``bad_request`` before anything
        is written); the masked answer, as ``get`` (made from what was written: nothing is
        read back or opened again)."""
        account = pa.parse(body)
        sealed = hint = None
        if account.bank is not None:
            sealed = self.keys.seal(json.dumps(account.bank.full()), _context(vendor_id))
            hint = account.bank.hint()
        async with self.db.acquire() as conn, conn.transaction():
            at = await conn.fetchval(
                "UPDATE vendors SET payout_account = $2, payout_bank = $3, payout_bank_hint = $4,"
                " payout_set_at = now() WHERE id = $1 RETURNING payout_set_at",
                vendor_id,
                account.stripe_account,
                sealed,
                hint,
            )
            if at is None:
                raise NotFound("no such vendor")
            shown = _shown(account.stripe_account, account.bank, at)
            await st.audit(conn, user_id, "vendor.payout_account", target_ref("vendor", vendor_id),
                           None, shown or {})  # fmt: skip
        return {"payout_account": shown}

    async def clear(self, vendor_id: str, user_id: str) -> dict[str, Any]:
        """No destination: payouts are manual records without details until one is set.
        ``not_found`` (nothing written, nothing audited) when none is set."""
        async with self.db.acquire() as conn, conn.transaction():
            cleared = await conn.fetchval(
                "UPDATE vendors SET payout_account = NULL, payout_bank = NULL,"
                " payout_bank_hint = NULL, payout_set_at = now() WHERE id = $1"
                " AND (payout_account IS NOT NULL OR payout_bank IS NOT NULL) RETURNING id",
                vendor_id,
            )
            if cleared is None:
                raise NotFound("no payout account is set")
            await st.audit(conn, user_id, "vendor.payout_account", target_ref("vendor", vendor_id),
                           None, {"cleared": True})  # fmt: skip
        return {"payout_account": None}

    async def get(self, vendor_id: str) -> dict[str, Any]:
        """The destination masked: ``{payout_account: null | {kind, ...}}``."""
        return {"payout_account": await self._masked(self.db, vendor_id)}

    async def details(self, staff: Staff, vendor_id: str) -> dict[str, Any]:
        """The destination in full, for an admin paying a manual payout (``payouts.account``;
        the control actor audits the read)."""
        staff.require("payouts.account")
        row = await self._row(self.db, vendor_id)
        full: dict[str, Any] | None = None
        if row["payout_account"]:
            full = {"kind": pa.STRIPE, "account_id": row["payout_account"]}
        elif row["payout_bank"]:
            opened = json.loads(self.keys.open(row["payout_bank"], _context(vendor_id)))
            full = {"kind": pa.BANK, **pa.BankDetails.from_full(opened).full()}
        return {"vendor_id": vendor_id, "payout_account": full}

    async def _row(self, db: Any, vendor_id: str) -> asyncpg.Record:
        row = await db.fetchrow(
            "SELECT payout_account, payout_bank, payout_set_at FROM vendors WHERE id = $1",
            vendor_id,
        )
        if row is None:
            raise NotFound("no such vendor")
        return row

    async def _masked(self, db: Any, vendor_id: str) -> dict[str, Any] | None:
        row = await self._row(db, vendor_id)
        bank = None
        if not row["payout_account"] and row["payout_bank"]:
            opened = json.loads(self.keys.open(row["payout_bank"], _context(vendor_id)))
            bank = pa.BankDetails.from_full(opened)
        return _shown(row["payout_account"], bank, row["payout_set_at"])


def _shown(
    stripe_account: str | None, bank: pa.BankDetails | None, at: dt.datetime | None
) -> dict[str, Any] | None:
    """A destination as the vendor sees it (masked), set at ``at``; None: none set."""
    if stripe_account:
        return {"kind": pa.STRIPE, **pa.stripe_masked(stripe_account), "updated_at": st.iso(at)}
    if bank is not None:
        return {"kind": pa.BANK, **bank.masked(), "updated_at": st.iso(at)}
    return None
