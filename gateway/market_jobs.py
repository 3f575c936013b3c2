"""The marketplace sweeper: a gateway background loop that finishes what a crash or a silent
customer left open. Every gateway runs one; each step is idempotent, so they may overlap.

Each round:
- **expired reservations**: a ``pending_payment`` order past ``reserved_until`` is settled by
  its payment's real state, asked of the provider when ours is not final: captured confirms
  it, anything else voids the payment and expires the order (its stock goes back);
- **paid but unconfirmed** groups (a crash after capture) are confirmed;
- **pending refunds** are executed at the provider again (idempotent by refund id).

The loop never dies: a failing round is logged and retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from gateway.checkout import SYSTEM, Checkout
from gateway.market_service import Actor, MarketService
from models.errors import AppError
from store import market_store as ms

log = logging.getLogger("hyperlocal.market.sweeper")

_BATCH = 100


class Sweeper:
    def __init__(self, market: MarketService, checkout: Checkout) -> None:
        self.market = market
        self.checkout = checkout
        self.db = market.db
        self.rounds = 0

    async def run(self) -> None:
        period = self.market.settings.market_sweep_s
        delay = period
        while True:
            await asyncio.sleep(delay)
            try:
                await self.round()
                delay = period
            except (asyncpg.PostgresError, OSError, AppError) as exc:
                delay = min(60.0, delay * 2)
                log.warning("sweep round failed (next in %.1f s): %r", delay, exc)
            except Exception:  # the loop must not die; log with context and back off
                delay = min(60.0, delay * 2)
                log.exception("unexpected error in a sweep round (next in %.1f s)", delay)

    async def round(self) -> None:
        for row in await ms.expired_orders(self.db, _BATCH):
            await self._guard(self.expire(row["id"], row["group_id"]), f"expire {row['id']}")
        for group_id in await self.db.fetch(
            "SELECT DISTINCT o.group_id FROM orders o JOIN payments p ON p.group_id = o.group_id"
            " WHERE o.status = 'pending_payment' AND p.status = 'captured'"
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
        who = Actor(SYSTEM, f"expire:{order_id}")
        await self.market.act(who, order_id, "expire", SYSTEM, "reservation expired")

    async def _ask_provider(self, payment: asyncpg.Record) -> str:
        if not payment["provider_ref"]:
            return "cancelled"
        provider = self.market.provider(payment["provider"])
        state = await provider.status(payment["provider_ref"])
        if state == "captured":
            await self.db.execute(
                "UPDATE payments SET status = 'captured', updated_at = now() WHERE id = $1",
                payment["id"],
            )
            return state
        await provider.cancel(payment["provider_ref"])
        await self.db.execute(
            "UPDATE payments SET status = 'cancelled', updated_at = now()"
            " WHERE id = $1 AND status IN ('pending', 'requires_action')",
            payment["id"],
        )
        return "cancelled"
