"""The marketplace sweeper: a gateway background loop that finishes what a crash or a silent
customer left open. Every gateway runs one; each step is idempotent, so they may overlap.

Each round:
- **expired reservations**: a ``pending_payment`` order past ``reserved_until`` is settled by
  its payment's real state, asked of the provider when ours is not final: captured confirms
  it, authorised (a checkout held for review) holds it, anything else voids the payment and
  expires the order (its stock goes back);
- **paid but unconfirmed** groups (a crash after capture, a review's release included) are
  confirmed;
- **stale holds**: checkouts held for review longer than ``risk_hold_s`` are rejected
  (services/risk.py: the authorisation voided, the stock back);
- **pending refunds** are executed at the provider again (idempotent by refund id); their
  outcome is recorded by the order's owner shard (``refund.settle``);
- **refunded amounts** behind their payment's done refunds (a crash between a refund's
  ``refund.settle`` and the gateway's ``sync_refunded``) are derived again.

The loop never dies: a failing round is logged and retried with exponential backoff.
"""

from __future__ import annotations

import logging

import asyncpg

from models.errors import AppError, Unavailable
from services.checkout import SYSTEM, Checkout
from services.loops import Backoff, LoopFailures, SupervisedLoop
from services.market import Actor, MarketService
from services.risk import RiskReview
from store import market_store as ms

log = logging.getLogger("hyperlocal.market.sweeper")

_BATCH = 100


class Sweeper:
    def __init__(
        self, market: MarketService, checkout: Checkout, review: RiskReview | None = None
    ) -> None:
        self.market = market
        self.checkout = checkout
        self.review = review
        self.db = market.db
        self.rounds = 0

    async def run(self, failures: LoopFailures | None = None) -> None:
        """A round every ``market_sweep_s``; a failing one backs off (doubling, up to 60 s)."""
        period = self.market.settings.market_sweep_s
        await SupervisedLoop(
            "market-sweeper",
            self.round,
            period_s=period,
            log=log,
            backoff=Backoff(2 * period, 60.0),
            expected=(asyncpg.PostgresError, OSError, AppError),
            wait_first=True,
            failures=failures,
        ).run()

    async def round(self) -> None:
        for row in await ms.expired_orders(self.db, _BATCH):
            await self._guard(self.expire(row["id"], row["group_id"]), f"expire {row['id']}")
        for group_id in await self.db.fetch(
            "SELECT DISTINCT o.group_id FROM orders o JOIN payments p ON p.group_id = o.group_id"
            " WHERE o.status IN ('pending_payment', 'held') AND p.status = 'captured'"
            " AND p.updated_at < now() - interval '10 seconds' LIMIT $1",
            _BATCH,
        ):
            gid = group_id["group_id"]
            await self._guard(self.checkout.settle(gid, "captured", "sweep#"), f"confirm {gid}")
        for refund in await self.db.fetch(
            "SELECT id FROM refunds WHERE status = 'pending'"
            " AND updated_at < now() - interval '2 seconds' ORDER BY updated_at LIMIT $1",
            _BATCH,
        ):
            await self._guard(self.market.run_refund(refund["id"]), f"refund {refund['id']}")
        for payment in await self.db.fetch(
            "SELECT p.id FROM payments p JOIN refunds r ON r.payment_id = p.id"
            " WHERE r.status IN ('succeeded', 'external') GROUP BY p.id"
            " HAVING p.refunded_amount < sum(r.amount) LIMIT $1",
            _BATCH,
        ):
            await ms.sync_refunded(self.db, payment["id"])
        if self.review is not None:
            await self.review.reject_stale(_BATCH)
        self.rounds += 1

    async def _guard(self, step: object, what: str) -> None:
        try:
            await step  # type: ignore[misc]
        except AppError as err:  # one stuck item must not block the others
            log.warning("sweeper could not %s: %s", what, err.message)

    async def expire(self, order_id: str, group_id: str) -> None:
        """Settle an expired order by what its payment really did."""
        payment = await self.db.fetchrow("SELECT * FROM payments WHERE group_id = $1", group_id)
        state = payment["status"] if payment else None
        if payment is not None and state in ("pending", "requires_action"):
            state = await self._ask_provider(payment)
        if state == "captured":
            await self.checkout.settle(group_id, "captured", "sweep#")
            return
        if state == "authorized":  # held for review, authorised after customer action
            await self.checkout.hold(group_id, "sweep#")
            return
        who = Actor(SYSTEM, f"expire:{order_id}")
        await self.market.act(who, order_id, "expire", SYSTEM, "reservation expired")

    async def _ask_provider(self, payment: asyncpg.Record) -> str:
        """The payment's real outcome, settled in our row: ``captured``, ``authorized`` (a
        checkout held for review whose customer finished authorising: held, not voided) or
        ``cancelled``.

        A payment without a provider reference (we crashed before storing the answer) is looked
        up at the provider by our ids. A payment not captured is voided; when the provider
        refuses to void it (the customer finished 3-D Secure meanwhile), it is asked again and
        settled by that answer, never assumed void.
        """
        provider = self.market.provider(payment["provider"])
        ref = payment["provider_ref"]
        if not ref:
            ref = await provider.lookup(payment["id"], payment["group_id"])
            if ref is None:
                return await self._settle_payment(payment["id"], "cancelled")
            await self.db.execute(
                "UPDATE payments SET provider_ref = $2, updated_at = now()"
                " WHERE id = $1 AND provider_ref IS NULL",
                payment["id"],
                ref,
            )
        state = await provider.status(ref)
        if state == "authorized":  # only a checkout held for review is authorised alone
            await self.db.execute(
                "UPDATE payments SET status = 'authorized', updated_at = now()"
                " WHERE id = $1 AND status IN ('pending', 'requires_action')",
                payment["id"],
            )
            return "authorized"
        if state != "captured" and not await provider.cancel(ref):
            state = await provider.status(ref)
            if state in ("pending", "requires_action"):
                raise Unavailable(f"payment {payment['id']} is neither voidable nor final yet")
        return await self._settle_payment(
            payment["id"], "captured" if state == "captured" else "cancelled"
        )

    async def _settle_payment(self, payment_id: str, state: str) -> str:
        if state == "captured":
            await self.db.execute(
                "UPDATE payments SET status = 'captured', updated_at = now() WHERE id = $1",
                payment_id,
            )
        else:
            await self.db.execute(
                "UPDATE payments SET status = 'cancelled', updated_at = now()"
                " WHERE id = $1 AND status IN ('pending', 'requires_action')",
                payment_id,
            )
        return state
