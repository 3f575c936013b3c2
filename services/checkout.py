"""Checkout: the cart becomes one order per vendor under one order group, paid once.

Steps, each durable before the next, each safe to repeat (a retry with the same key resumes):

1. **Group**: the cart is snapshotted into ``order_groups`` (unique per buyer and key), split
   per vendor (models/market.py). A retry finds it, and its stored answer once finished.
2. **Reserve**: one ``order.reserve`` command per vendor, to the shard owning that vendor's
   cell (idempotency key ``<key>#r:<vendor>``): stock is taken and a ``pending_payment`` order
   opened with ``reserved_until``, not announced yet. If any part fails, the reserved parts are
   released (and never announced: the checkout's error is the answer).
3. **Pay**: the ``payments`` row (its id is the provider idempotency key) was written with the
   group, in step 1's statement, so *before* the provider is called: a crash here leaves a
   pending payment the sweeper can reconcile; a group that fails before paying cancels it.
4. **Settle**: captured: each order is confirmed (reservation becomes a sale) and the bought
   items leave the cart; declined: every order is released; customer action needed: the orders
   are announced (``order.announce``) and stay reserved until a provider webhook settles them
   or the reservation expires. So a checkout's orders reach the inboxes once per outcome:
   ``paid`` (or ``held``) for a payment that settles at once, ``pending_payment`` then its
   outcome for one that waits for the buyer.
   The provider's answer is stored with the group's status it implies (captured: completed,
   authorised: held) in one statement, and that first attempt stores no answer: a retry with
   the key finds the group final without one, runs the steps again (each answers from its own
   idempotency record: nothing is taken, charged or confirmed twice) and stores what it derived.

**Risk** (models/risk.py): step 1's cart statement also reads the facts the fraud rules need
(velocity per account, card, address and device, declines, history, the last located point:
one round trip, no more; a buy-now's are read with those of concurrent buy-nows, and its lines
come from the gateway's memory: services/checkout_reads.py), and its insert stores the score
with the group. A checkout at or
over ``risk_hold_score`` is **held**: step 3 only authorises the payment, step 4 moves the
orders to ``held`` (the buyer's and the vendor's inboxes hear it) and takes the items out of
the cart; an admin's review (services/risk.py) captures and confirms, or voids and releases.
One that needs customer action first is held once the provider reports the authorisation
(``hold``: Stripe's ``payment_intent.amount_capturable_updated``, or the sweeper).

Steps 2 and 4 send their commands together (one per vendor, and the cart's), so a checkout
waits for about one group commit of each owning shard per step, and concurrent checkouts share
those commits; step 1's rows are one statement with ``RETURNING`` (no read back).

A crash between steps loses nothing and oversells nothing: reservations not confirmed expire
and give their stock back (services/market_jobs.py), and a payment captured for an order that
expired meanwhile is refunded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import asyncpg

from models import ledger as lg
from models import risk as rk
from models.errors import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    OutOfStock,
    PaymentFailed,
    Unavailable,
    error_from_dict,
)
from models.ids import cell_of, new_id
from models.market import (
    CART_MAX_QTY,
    HELD,
    PENDING,
    CartRemove,
    Line,
    OrderAnnounce,
    OrderReserve,
    RefundRecord,
    StockProbe,
    reserve_waves,
    split_by_vendor,
)
from models.streams import compact_json
from payments import Charge, PaymentProvider
from services.checkout_reads import FACTS, FACTS_MANY, LINE_COLUMNS, Lines, Scarce
from services.market import SYSTEM, Actor, MarketService
from store import market_store as ms
from store.coalesce import Coalescer
from store.db import one

log = logging.getLogger("hyperlocal.checkout")

__all__ = ["SYSTEM", "Checkout", "payment_public"]


def payment_public(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "provider": row["provider"],
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "refunded_amount": row["refunded_amount"],
    }
    if row["status"] == "requires_action" and row["client_secret"]:
        out["client_secret"] = row["client_secret"]
    if row["status"] == "requires_action" and row.get("action"):  # approve_url; upi_uri, qr_svg
        out.update(row["action"])
    return out


class Checkout:
    """Checkouts of this gateway: the group, reservations, payment and confirmation of each,
    at most ``checkout_max_in_flight`` at once (the rest are refused before they begin)."""

    COALESCED = 5
    """The coalesced statements below: one connection each is all ``batches`` needs (a
    Coalescer has one statement in flight at a time)."""

    def __init__(self, market: MarketService, batches: asyncpg.Pool) -> None:
        self.market = market
        self.db = market.db
        self.batches = batches
        """The pool of generic plans (store/db.py) the coalesced statements run on."""
        # the statements every checkout runs alone, coalesced across concurrent checkouts:
        # one statement and one commit for all that arrive while one is in flight
        self._paid = Coalescer(batches, "payment", _PAID, lambda row: row["id"])
        self._opened = Coalescer(batches, "group", _OPENED, lambda row: row["id"])
        self._finished = Coalescer(batches, "group-final", _FINISHED, lambda row: row["id"])
        self._facts_read = Coalescer(batches, "facts", FACTS_MANY, lambda row: row["token"])
        self._groups_read = Coalescer(batches, "group-find", _GROUPS_OF, lambda row: row["token"])
        self._coalescers = (self._facts_read, self._groups_read, self._opened, self._paid,
                            self._finished)  # fmt: skip
        self.lines = Lines(self.db, market.settings.checkout_lines_ttl_s)
        """A buy-now's lines, kept by this gateway (services/checkout_reads.py: the rule)."""
        self.scarce = Scarce(market.settings.checkout_scarce_s)
        """Listings just found sold out: a line of one is probed at its owner first (``_probe``)
        and its part reserved before the others (``_reserve``)."""
        market.listing_changed.append(self._changed)
        self.in_flight = 0
        self.probe_refused = 0
        """Checkouts answered ``out_of_stock`` by a probe, before any group or reservation."""
        self.refused = 0
        """Checkouts answered ``unavailable`` because ``checkout_max_in_flight`` were running."""

    def _changed(self, listing_id: str) -> None:
        """A vendor changed the listing (through this gateway): what is kept of it is stale."""
        self.lines.forget((listing_id,))
        self.scarce.forget((listing_id,))

    def coalesced(self) -> list[tuple[tuple[str, str], float]]:
        """Rows and statements so far of each coalesced write (rows / statements: how many
        checkouts shared one), for /metrics."""
        return [
            ((co.name, what), float(count))
            for co in self._coalescers
            for what, count in (("rows", co.rows), ("statements", co.statements))
        ]

    async def checkout(
        self,
        user_id: str,
        key: str,
        payment: dict[str, Any],
        ctx: rk.RiskContext | None = None,
        lines: list[tuple[str, int]] | None = None,
    ) -> dict[str, Any]:
        """Check out the buyer's cart under ``key`` (or, given ``lines``, buy those
        ``(listing_id, qty)`` at once: the cart is neither read nor cleared); ``ctx`` is what
        the connection knows of the buyer (address, device, located points) for the fraud
        rules."""
        limit = self.market.settings.checkout_max_in_flight
        if limit and self.in_flight >= limit:
            self.refused += 1
            raise Unavailable("too many checkouts in progress: retry with the same key",
                              retry_after_s=1)  # fmt: skip
        self.in_flight += 1
        try:
            return await self._checkout(user_id, key, payment, ctx, lines)
        finally:
            self.in_flight -= 1

    async def _checkout(
        self,
        user_id: str,
        key: str,
        payment: dict[str, Any],
        ctx: rk.RiskContext | None,
        lines: list[tuple[str, int]] | None,
    ) -> dict[str, Any]:
        provider = self.market.provider(str(payment.get("provider", "sandbox")))
        provider.check(payment)
        wanted = _buying(lines)
        asked = payment if wanted is None else {**payment, "#lines": sorted(wanted.items())}
        paying = _Paying(
            provider.name,
            rk.instrument_fp(provider.name, provider.instrument(payment)),
            rk.request_fp(asked),  # a retry of the key must ask for the same lines too
            ctx or rk.RiskContext(),
        )
        group = await self._group(user_id, key, paying, wanted)
        if group["request_fp"] is not None and group["request_fp"] != paying.request_fp:
            raise Conflict("this idempotency key was used with other payment details")
        if group["result"] is not None:
            return await self._with_vendors(_replay(group["result"]), {})
        refs: dict[str, dict[str, Any]] = {}  # the vendors, as their shards answered
        try:
            result = await self._run(group, provider, payment, refs)
        except AppError as err:
            if not err.temporary:
                await self._finish(group["id"], "failed", {"error": err.to_dict()})
            raise
        return await self._with_vendors(result, refs)  # decorating never fails the checkout

    async def _with_vendors(
        self, result: dict[str, Any], refs: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """The reply's orders as every order reaches a client: with their vendor and room (the
        vendors the reservations named: read only for a replay)."""
        if isinstance(result.get("orders"), list):
            orders = await self.market.with_vendors(list(result["orders"]), refs)
            result = {**result, "orders": orders}
        return result

    # -- 1. group -------------------------------------------------------------------------------
    async def _group(
        self, user_id: str, key: str, paying: _Paying, wanted: dict[str, int] | None
    ) -> asyncpg.Record:
        """The group of ``(user_id, key)``: made from the cart, or from the ``wanted``
        listings of a buy-now (with its risk), or the one a first attempt made (then its answer,
        once finished, is replayed; the cart is not looked at again)."""
        ctx = paying.ctx
        address, device = rk.address_key(ctx.address), ctx.device
        facts = (user_id, paying.card_fp, address, device)
        rows: list[Any]
        if wanted is None:  # the cart's lines and the fraud rules' facts: one round trip
            rows = await self.db.fetch(_CART_LINES, *facts)
            known = rows[0] if rows else None
            await self._probe(user_id, key, rows)
        elif any(listing_id in self.scarce for listing_id in wanted):  # probed before facts
            kept = await self.lines.of(wanted)
            rows = [{**kept[i], "qty": qty} for i, qty in wanted.items() if i in kept]
            await self._probe(user_id, key, rows)
            known = await self._facts(*facts)
        else:  # the lines from this gateway's memory, the facts shared with concurrent ones
            found, known = await asyncio.gather(self.lines.of(wanted), self._facts(*facts))
            rows = [{**found[i], "qty": qty} for i, qty in wanted.items() if i in found]
        lines = [
            Line(r["listing_id"], r["vendor_id"], r["cell"], r["title"], r["qty"], r["price"],
                 r["currency"])
            for r in rows
        ]  # fmt: skip
        missing = set(wanted or ()) - {line.listing_id for line in lines}
        if not lines or missing:  # a retry of a finished checkout: the cart it emptied, or a
            found = await self._find(user_id, key)  # listing sold out and taken off sale since
            if found is not None:
                return found
        if missing:
            raise NotFound("no such listing on sale", listing_id=sorted(missing)[0])
        parts, total, currency = split_by_vendor(lines)
        settings = self.market.settings  # each part's commission: posted when it is captured
        categories = {r["listing_id"]: r["category"] for r in rows}
        parts = lg.with_commission(parts, categories, settings.commission_bps_by_category,
                                   settings.commission_bps)  # fmt: skip
        vendors = tuple({(float(r["lat"]), float(r["lng"])) for r in rows})
        context = rk.RiskContext(address, device, ctx.here, ctx.before)
        if known is None:
            raise NotFound("no such account")
        risk = rk.score(rk.RiskFacts.from_row(known), context, rk.Order(total, vendors))
        here = ctx.here
        group_id = new_id()
        created = await self._opened.run(
            group_id,
            group_id,
            user_id,
            key,
            compact_json(parts),
            total,
            currency,
            new_id(),
            paying.provider,
            compact_json(risk.stored()),
            paying.card_fp,
            paying.request_fp,
            address,
            device,
            here.lat if here else None,
            here.lng if here else None,
            wanted is None,
        )  # the group (with its risk) and its payment row (before any provider call): one
        # statement. None: a concurrent request with the same key made it first; that one is it
        return created or one(await self._find(user_id, key))

    async def _probe(self, user_id: str, key: str, rows: list[Any]) -> None:
        """Before a group is opened for lines holding a scarce listing: ask those vendors'
        owners (``listing.stock_probe``, together; no writes) whether they know a line cannot
        be taken now, and refuse the checkout ``out_of_stock`` then, with nothing written
        anywhere (unless the key's group exists: a retry of a checkout made before, which
        resumes). A probe answered with a typed error (its shard away, moving) says nothing:
        the reservation decides; anything else is a fault and is raised."""
        by_vendor: dict[str, list[tuple[str, int]]] = {}
        titles: dict[str, str] = {}
        for row in rows:
            if row["listing_id"] in self.scarce:
                by_vendor.setdefault(str(row["vendor_id"]), []).append(
                    (str(row["listing_id"]), int(row["qty"]))
                )
                titles[str(row["listing_id"])] = str(row["title"])
        if not by_vendor:
            return
        probes = [StockProbe(vendor_id=v, items=tuple(items)) for v, items in by_vendor.items()]
        answers = await asyncio.gather(
            *(self.market.router.read(probe) for probe in probes), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, AppError):
                raise answer
            short = answer.get("short") if isinstance(answer, dict) else None
            if not short:
                continue
            if await self._find(user_id, key) is not None:
                return  # a retry: its group goes on as it was
            self.probe_refused += 1
            listing_id, available = str(short["listing_id"]), int(short["available"])
            raise OutOfStock(f"only {available} left of {titles[listing_id]}",
                             listing_id=listing_id, available=available)  # fmt: skip

    async def _facts(
        self, user_id: str, card_fp: str | None, address: str | None, device: str | None
    ) -> asyncpg.Record | None:
        """The fraud rules' facts of a buy-now (None: no such buyer), read with those of every
        buy-now that arrives while one such read is in flight (services/checkout_reads.py)."""
        token = new_id()
        return await self._facts_read.run(token, token, user_id, card_fp, address, device)

    async def _find(self, user_id: str, key: str) -> asyncpg.Record | None:
        """The group of ``(user_id, key)`` if a checkout made it (a retry's), read with every
        such lookup that arrives while one is in flight: a sale's probe refuses hundreds of
        checkouts a second, and each must first know it is not a retry (``_probe``)."""
        token = new_id()
        return await self._groups_read.run(token, token, user_id, key)

    async def _finish(self, group_id: str, status: str, result: dict[str, Any] | None) -> None:
        """Move the group to ``status`` only from a non-final one (``open``,
        ``awaiting_payment``, ``held``), so a late writer (the checkout call finishing after a
        webhook settled it, a late failure after success) never regresses it; a final group without
        a stored answer yet gets ``result`` (a retry then replays it)."""
        await self._finished.run(group_id, group_id, status, _json(result))

    # -- 2-4 ------------------------------------------------------------------------------------
    async def _run(
        self,
        group: asyncpg.Record,
        provider: PaymentProvider,
        details: dict[str, Any],
        refs: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        key = group["idem_key"]
        orders = await self._reserve(group, refs)
        # made with the group on a first attempt; a retry finds the first attempt's
        if _has_payment(group):
            payment = group["payment"]
        else:
            payment = await self._payment(group, provider.name)
        folded = False  # did the payment's outcome just move the group too (no answer yet)?
        if payment["status"] == "pending":
            held = rk.holds(group["risk"], self.market.settings.risk_hold_score)
            payment, folded = await self._charge(payment, provider, details, group["id"], held)
        if payment["status"] in ("declined", "cancelled"):
            await self._apply(group, orders, "declined", f"{key}#")
            raise PaymentFailed("the payment was declined", payment_id=payment["id"])
        result = {"orders": orders, "payment": payment_public(payment)}
        if payment["status"] == "authorized":  # held for review: nothing captured
            result["orders"] = await self._hold(group, orders, f"{key}#")
            if not folded:  # no stored answer: it will change
                await self._finish(group["id"], "held", None)
            log.info("checkout %s held for review (risk %s)", group["id"], group["risk"])
            return result
        if payment["status"] == "captured":
            # the orders just reserved are the group's: no need to read them back first
            result["orders"] = await self._apply(group, orders, "captured", f"{key}#", done=False)
            if not folded:  # a retry (or a webhook captured it first): its answer is stored
                await self._finish(group["id"], "completed", result)
        else:  # no stored answer while awaiting: a retry with the key reads the state afresh
            await _all([self._announce(order, f"{key}#") for order in orders])
            result["orders"] = await ms.orders_of_group(self.db, group["id"])
            await self._finish(group["id"], "awaiting_payment", None)
        log.info("checkout %s: %d orders, payment %s", group["id"], len(orders), payment["status"])
        return result

    async def _reserve(
        self, group: asyncpg.Record, refs: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """One ``order.reserve`` per owning cell, sent together (the parts holding a listing
        just found sold out first: ``reserve_waves``); all or none stay reserved. ``refs``
        gains each vendor as its shard named it."""
        buyer, key = group["buyer_id"], group["idem_key"]
        ttl = self.market.settings.reservation_ttl_s

        risk = rk.public_of(group["risk"])

        async def reserve(part: dict[str, Any]) -> dict[str, Any]:
            command = OrderReserve(
                user_id=buyer,
                key=f"{key}#r:{part['vendor_id']}",
                vendor_id=part["vendor_id"],
                group_id=group["id"],
                items=tuple(part["items"]),
                total=part["total"],
                currency=group["currency"],
                ttl_s=ttl,
                risk=risk,
                announce=False,  # announced at its payment's outcome (_run)
            )
            reply = await self.market.mutate(command)
            if isinstance(reply.get("vendor"), dict):  # a reply recorded before it: read later
                refs[str(part["vendor_id"])] = dict(reply["vendor"])
            return dict(reply["order"])

        orders: list[dict[str, Any]] = []
        failures: list[BaseException] = []
        for wave in reserve_waves(group["parts"], self.scarce):
            done = await asyncio.gather(*(reserve(part) for part in wave), return_exceptions=True)
            orders.extend(r for r in done if isinstance(r, dict))
            failures.extend(r for r in done if isinstance(r, BaseException))
            if failures:  # the next wave is not sent
                break
        if not failures:
            return orders
        for failure in failures:
            if isinstance(failure, OutOfStock) and "listing_id" in failure.details:
                self.scarce.mark(str(failure.details["listing_id"]))
        temporary = [f for f in failures if isinstance(f, AppError) and f.temporary]
        if temporary:  # keep what is reserved: a retry with the key reuses it, else it expires
            raise temporary[0]
        if any(isinstance(f, (Conflict, NotFound)) for f in failures):  # a listing changed
            self.lines.forget(i["listing_id"] for part in group["parts"] for i in part["items"])
        await _all([self._release_one(order, f"{key}#", "checkout failed") for order in orders])
        raise failures[0]

    async def _hold(
        self, group: asyncpg.Record, orders: list[dict[str, Any]], key_base: str
    ) -> list[dict[str, Any]]:
        """Move the just reserved ``orders`` to ``held`` (their reservation no longer expires:
        the review decides) and take the items out of the cart, all together; the orders as
        their owners answered."""

        async def hold(order: dict[str, Any]) -> dict[str, Any] | None:
            who = Actor(SYSTEM, f"{key_base}h:{order['id']}")
            reply = await self.market.step(who, order["id"], "hold", SYSTEM, "held for review")
            return dict(reply["order"])

        held = await _gather([hold(order) for order in orders], self._clear_cart(group))
        return sorted((o for o in held if o is not None), key=lambda o: str(o["vendor_id"]))

    async def hold(self, group_id: str, key_base: str) -> list[dict[str, Any]]:
        """Hold the group's pending orders for review, now that its payment is authorised
        (a held checkout that needed customer action first: the provider's webhook, or the
        sweeper asking the provider); the orders afterwards. Idempotent by ``key_base``."""
        group = await self.db.fetchrow("SELECT * FROM order_groups WHERE id = $1", group_id)
        if group is None:
            return []
        rows = await self.db.fetch(
            "SELECT id, vendor_id, status FROM orders WHERE group_id = $1", group_id
        )
        pending = [dict(r) for r in rows if r["status"] == PENDING]
        if pending:
            await self._hold(group, pending, key_base)
        await self._finish(group_id, "held", None)
        return await ms.orders_of_group(self.db, group_id)

    async def _announce(self, order: dict[str, Any], key_base: str) -> None:
        """The payment waits for the buyer: the pending order goes on its inboxes now."""
        key = f"{key_base}a:{order['id']}"
        await self.market.mutate(OrderAnnounce(user_id=SYSTEM, key=key, order_id=order["id"]))

    async def _release_one(self, order: dict[str, Any], key_base: str, reason: str) -> None:
        who = Actor(SYSTEM, f"{key_base}x:{order['id']}")
        await self.market.step(who, order["id"], "release", SYSTEM, reason)

    async def _payment(self, group: asyncpg.Record, provider: str) -> asyncpg.Record:
        """On a retry: the group's payment row, made with it by the first attempt (or, for a
        group from before payments were made with their group, made now)."""
        created = await self.db.fetchrow(
            "INSERT INTO payments (id, group_id, provider, amount, currency, status)"
            " SELECT $1, id, $2, amount, currency, 'pending' FROM order_groups WHERE id = $3"
            " ON CONFLICT (group_id) DO NOTHING RETURNING *",
            new_id(),
            provider,
            group["id"],
        )
        return created or one(
            await self.db.fetchrow("SELECT * FROM payments WHERE group_id = $1", group["id"])
        )

    async def _charge(
        self,
        payment: asyncpg.Record,
        provider: PaymentProvider,
        details: dict[str, Any],
        group_id: str,
        hold: bool = False,
    ) -> tuple[asyncpg.Record, bool]:
        """Charge the payment (``hold``: authorise only) and store the provider's answer, with
        the group's status it implies (captured: ``completed``; authorised: ``held``) in the same
        statement; the payment row, and whether that statement moved the group (then the caller
        stores no answer: a retry with the key derives it again, from the steps' own records,
        and stores it)."""
        charge = Charge(
            payment["id"],
            payment["amount"],
            payment["currency"],
            details,
            {"group_id": group_id},
            capture=not hold,
        )
        result = await provider.charge(charge)
        updated = await self._paid.run(
            payment["id"],
            payment["id"],
            result.status,
            result.provider_ref,
            result.client_secret,
            _json(result.action),
            _GROUP_AFTER.get(result.status),
        )  # None: a webhook settled it first; its row is the answer
        if updated is not None:
            return updated, result.status in _GROUP_AFTER
        row = await self.db.fetchrow("SELECT * FROM payments WHERE id = $1", payment["id"])
        return one(row), False

    # -- settling (also from provider webhooks and the sweeper) ---------------------------------
    async def settle(
        self, group_id: str, outcome: str, key_base: str, reason: str = "payment declined"
    ) -> list[dict[str, Any]]:
        """Apply a payment outcome to the group's pending (or held) orders; the orders
        afterwards.

        ``captured`` confirms them (an order that expired meanwhile gets its money back);
        ``declined`` releases them (for ``reason``), unless the payment is captured (then it
        is ignored).
        Idempotent: keys derive from ``key_base``, and repeating a system step that already
        took effect changes nothing.
        """
        group = await self.db.fetchrow("SELECT * FROM order_groups WHERE id = $1", group_id)
        if outcome == "declined" and await self.db.fetchval(
            "SELECT 1 FROM payments WHERE group_id = $1 AND status = 'captured'", group_id
        ):  # a late failure report after the money was captured changes nothing
            log.warning("group %s: decline ignored, its payment is captured", group_id)
            return await ms.orders_of_group(self.db, group_id)
        if group is None:
            return []
        rows = await self.db.fetch(
            "SELECT id, status FROM orders WHERE group_id = $1 ORDER BY vendor_id", group_id
        )
        return await self._apply(group, [dict(r) for r in rows], outcome, key_base, reason=reason)

    async def _apply(
        self,
        group: asyncpg.Record,
        orders: list[dict[str, Any]],
        outcome: str,
        key_base: str,
        *,
        done: bool = True,
        reason: str = "payment declined",
    ) -> list[dict[str, Any]]:
        """Confirm (``captured``) or release (``declined``, for ``reason``) ``orders`` of
        ``group`` (pending or held ones): one command
        per order, all sent together (they share their shards' group commits), the cart
        cleared alongside; then the group is final (unless ``done`` is False: the caller stores
        its answer with it). The orders afterwards: as the confirmations answered, else (an
        order refunded, a release) read back."""
        if outcome == "captured":
            confirmed = await _gather([self._confirm_one(o, key_base) for o in orders],
                                      self._clear_cart(group))  # fmt: skip
            if done:
                await self._finish(group["id"], "completed", None)
            answered = [order for order in confirmed if order is not None]
            if len(answered) == len(orders):  # each reply is its order now: no read back
                return sorted(answered, key=lambda order: str(order["vendor_id"]))
            return await ms.orders_of_group(self.db, group["id"])
        else:
            steps = [
                self._release_one(order, key_base, reason)
                for order in orders
                if order["status"] in (PENDING, HELD)
            ]
            status = "failed"
        await _all(steps)
        if done:
            await self._finish(group["id"], status, None)
        return await ms.orders_of_group(self.db, group["id"])

    async def _confirm_one(self, order: dict[str, Any], key_base: str) -> dict[str, Any] | None:
        """Confirm a paid order; the order as the owner answered, or None if it had ended
        before the money came (then the money goes back)."""
        who = Actor(SYSTEM, f"{key_base}c:{order['id']}")
        try:
            reply = await self.market.step(who, order["id"], "confirm", SYSTEM, "payment captured")
        except AppError as err:
            if err.temporary:
                raise
            # Expired and released before the money arrived: give the money back.
            log.warning("order %s paid after it ended (%s): refunding", order["id"], err.message)
            await self._refund_orphan(order["id"])
            return None
        return dict(reply["order"])

    async def _refund_orphan(self, order_id: str) -> None:
        """Refund a payment captured after its order ended. The refund row is recorded by the
        order's owner shard (``refund.record``, key ``orphan:<order>``: the order's existing
        refund if there is one), then run at the provider (a no-op once done)."""
        if cell_of(order_id) is None:
            return
        command = RefundRecord(user_id=SYSTEM, key=f"orphan:{order_id}", order_id=order_id)
        try:
            reply = await self.market.mutate(command)
        except AppError as err:
            if err.temporary:
                raise
            log.warning("order %s: no refund recorded: %s", order_id, err.message)
            return
        await self.market.run_refund(str(reply["refund_id"]))

    async def _clear_cart(self, group: asyncpg.Record) -> None:
        if not group.get("from_cart", True):  # a buy-now never touched the cart
            return
        ids = tuple(item["listing_id"] for part in group["parts"] for item in part["items"])
        key = f"{group['idem_key']}#clear"
        await self.market.mutate(CartRemove(user_id=group["buyer_id"], key=key, listing_ids=ids))


async def _gather(
    steps: list[Coroutine[Any, Any, dict[str, Any] | None]], also: Coroutine[Any, Any, None]
) -> list[dict[str, Any] | None]:
    """Run ``steps`` and ``also`` together; the steps' results, or (once all have ended) the
    first failure, a temporary one first, as ``_all``."""
    outcomes = await asyncio.gather(*steps, also, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        temporary = [f for f in failures if isinstance(f, AppError) and f.temporary]
        raise (temporary or failures)[0]
    return [o for o in outcomes[:-1] if not isinstance(o, BaseException)]


async def _all(steps: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``steps`` together; once all have ended, raise the first failure (a temporary one
    first: the caller's retry with its key redoes what did not happen)."""
    outcomes = await asyncio.gather(*steps, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        temporary = [f for f in failures if isinstance(f, AppError) and f.temporary]
        raise (temporary or failures)[0]


class _Paying:
    """How a checkout pays: the provider, digests of the instrument and of the whole details,
    and what the connection knows of the buyer."""

    __slots__ = ("card_fp", "ctx", "provider", "request_fp")

    def __init__(
        self, provider: str, card_fp: str | None, request_fp: str, ctx: rk.RiskContext
    ) -> None:
        self.provider = provider
        self.card_fp = card_fp
        self.request_fp = request_fp
        self.ctx = ctx


_OPENED = (
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::text[], $13::text[], $14::float8[], $15::float8[], $16::bool[]) AS v(id, buyer_id,"
    " idem_key, parts, amount, currency, payment_id, provider, risk, card_fp, request_fp,"
    " client_addr, device, buyer_lat, buyer_lng, from_cart)),"
    " g AS (INSERT INTO order_groups (id, buyer_id, idem_key, status, parts, amount, currency,"
    " risk, card_fp, request_fp, client_addr, device, buyer_lat, buyer_lng, from_cart)"
    " SELECT id, buyer_id, idem_key, 'open', parts::jsonb, amount, currency, risk::jsonb, card_fp,"
    " request_fp, client_addr, device, buyer_lat, buyer_lng, from_cart FROM v"
    " ON CONFLICT (buyer_id, idem_key) DO NOTHING RETURNING *),"
    " p AS (INSERT INTO payments (id, group_id, provider, amount, currency, status)"
    " SELECT v.payment_id, g.id, v.provider, g.amount, g.currency, 'pending'"
    " FROM g JOIN v ON v.id = g.id RETURNING *)"
    " SELECT g.*, (SELECT to_jsonb(p) FROM p WHERE p.group_id = g.id) AS payment FROM g"
)
"""Open groups, each with its payment row (before any provider call); a group whose
``(buyer_id, idem_key)`` is taken (a concurrent request with the same key, even in the same
statement) is not returned: that one is it."""
_GROUPS_OF = (
    "SELECT g.*, v.token FROM unnest($1::text[], $2::text[], $3::text[])"
    " AS v(token, buyer_id, idem_key)"
    " JOIN order_groups g ON g.buyer_id = v.buyer_id AND g.idem_key = v.idem_key"
)
"""The groups of many ``(buyer_id, idem_key)`` at once: one row per ``token`` whose group
exists (``token`` last, so the group's own columns read as they do from the table)."""
_PAID = (
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::text[]) AS v(id, status, ref, secret, action, group_status)),"
    " p AS (UPDATE payments p SET status = v.status, provider_ref = COALESCE(v.ref,"
    " p.provider_ref), client_secret = v.secret, action = v.action::jsonb, updated_at = now()"
    " FROM v WHERE p.id = v.id AND p.status = 'pending' RETURNING p.*),"
    " g AS (UPDATE order_groups g SET status = v.group_status, updated_at = now()"
    " FROM p JOIN v ON v.id = p.id WHERE g.id = p.group_id AND v.group_status IS NOT NULL"
    " AND g.status IN ('open', 'awaiting_payment', 'held'))"
    " SELECT * FROM p"
)
"""Store the provider's answers to pending payments (the ledger's capture trigger posts with
it) and move each one's group to what its answer implies (``group_status``, NULL: no move; only
from a non-final status, as ``_FINISHED``); a payment a webhook settled first is not returned
(its row is the answer) and moves nothing."""
_GROUP_AFTER = {"captured": "completed", "authorized": "held"}
"""The group's status a payment's answer implies at once: its orders are confirmed (or held)
next, and a crash before that is finished by the sweeper or a retry with the key, as before."""
_FINISHED = (
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
    " AS v(id, status, result)),"
    " g AS (UPDATE order_groups g SET status = v.status,"
    " result = COALESCE(g.result, v.result::jsonb),"
    " updated_at = now() FROM v WHERE g.id = v.id"
    " AND (g.status IN ('open', 'awaiting_payment', 'held')"
    " OR (g.status = v.status AND g.result IS NULL)) RETURNING g.id, g.status),"
    # failed before any provider call: the payment row made with the group never ran
    " c AS (UPDATE payments SET status = 'cancelled', updated_at = now()"
    " WHERE group_id IN (SELECT id FROM g WHERE status = 'failed') AND status = 'pending'"
    " AND provider_ref IS NULL)"
    " SELECT id FROM g"
)
"""Groups to their final (or waiting) status: only from a non-final one, so a late writer never
regresses it; ``result`` stored once."""

_CART_LINES = (
    f"WITH f AS ({FACTS}) SELECT c.listing_id, c.qty, {LINE_COLUMNS}, f.*"
    " FROM cart_items c JOIN listings l ON l.id = c.listing_id CROSS JOIN f"
    " WHERE c.user_id = $1 AND l.active AND l.deleted_at IS NULL"  # on sale only
)
"""The buyer's cart, as lines of listings on sale, with the fraud rules' facts."""

BUY_NOW_MAX_LINES = 50
"""The most lines one buy-now takes (a cart's checkout has its own bound: the cart)."""


def _buying(lines: list[tuple[str, int]] | None) -> dict[str, int] | None:
    """A buy-now's lines as ``{listing_id: qty}``; None for a checkout of the cart."""
    if lines is None:
        return None
    if not 1 <= len(lines) <= BUY_NOW_MAX_LINES:
        raise BadRequest(f"lines: 1-{BUY_NOW_MAX_LINES} of them")
    wanted: dict[str, int] = {}
    for listing_id, qty in lines:
        if listing_id in wanted:
            raise BadRequest("lines: a listing appears twice", listing_id=listing_id)
        if not 1 <= qty <= CART_MAX_QTY:
            raise BadRequest(f"lines: qty must be 1-{CART_MAX_QTY}", listing_id=listing_id)
        wanted[listing_id] = qty
    return wanted


def _json(value: Any) -> str | None:
    """A jsonb value for a coalesced statement (its arrays go as ``text[]``, cast there: a
    ``jsonb[]`` parameter would read a JSON array as one more array dimension)."""
    return None if value is None else compact_json(value)


def _has_payment(group: asyncpg.Record) -> bool:
    """Was the group just made, with its payment row (``_group``'s RETURNING)?"""
    return bool(group.get("payment"))


def _replay(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        raise error_from_dict(result["error"])
    return result
