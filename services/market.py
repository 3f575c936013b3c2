"""The marketplace service: one function per use case, shared by the websocket ops
(gateway/market_ops.py) and the vendor REST API (gateway/vendor_api.py).

Mutations of cell state (vendors, listings, stock, orders) and of a buyer's cart go to their
owner shard as commands (actors/market_ops.py), keyed by the caller's idempotency key. Reads go
to Postgres with the caller's identity in the query (rule 7): a buyer reads only their own cart
and orders, a vendor only its own listings and orders; anything else is ``not_found``.
Checkout orchestration lives in services/checkout.py; refunds are executed here.

Refunds: a ``refunds`` row belongs to its order, so only the order's owner shard writes it
(rule 2): ``order.act`` records the refund a step owes, ``refund.record`` one owed for an
orphaned capture (services/checkout.py), and ``refund.settle`` the provider's answer.
``run_refund`` calls the provider here, outside any transaction (an awaited HTTP call, never
blocking the loop), then sends that answer as ``refund.settle`` keyed by the refund id.
``payments.refunded_amount`` stays a gateway write (``ms.sync_refunded``): a payment belongs to
a checkout group whose orders live in several cells, so no single shard owns it; the value is
derived, never added to (the largest of the done refunds' sum and the provider's cumulative
figure), so any writer may set it any number of times in any order without counting a refund
twice, and the sweeper derives it again should a crash come between a settle and its sync.

Relevance (``listings.nearby`` with ``sort: "relevance"``, the default where a model covers the
cell) ranks the nearest matching listings inside the shard owning the caller's cell, through its
``recommend.rank`` reader. A buyer's ``listing.get`` records a ``view`` interaction straight
from here: interactions are append-only analytics rows, not cell state (nothing reads them to
decide a mutation, no stream carries them), so they need no owner, and routing a read through a
shard's group commit to log it would cost a Ray hop and a commit slot per page view.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from cluster.config import Settings
from models.cells import Geo
from models.chat import direct_room_id
from models.commands import ShardCommand, route_of
from models.errors import AppError, BadRequest, NotFound
from models.market import (
    ActorKind,
    CartAdd,
    CartRemove,
    ListingCommand,
    ListingCreate,
    ListingDelete,
    ListingStock,
    ListingUpdate,
    NearbyCursor,
    OrderAct,
    OrderRefund,
    PageCursor,
    RefundSettle,
    VendorCreate,
    cart_totals,
)
from models.recommend import listings as rec_listings
from models.recommend.serving import parse_relevance_cursor, relevance_cursor
from payments import PaymentProvider
from payments.base import RefundRefused
from services.media import MediaService
from services.ranking import CellRanker
from services.router import ShardRouter
from store import market_store as ms
from store import recommend_store, social_store

log = logging.getLogger("hyperlocal.market")

SYSTEM: Final = "system"
"""The user id of commands the system sends (checkout, sweeper, refunds): their key space."""


@dataclass(frozen=True)
class Actor:
    """Who is asking: the user (idempotency namespace) and, for vendor calls, their vendor."""

    user_id: str
    key: str
    vendor: dict[str, Any] | None = None

    @property
    def vendor_id(self) -> str:
        assert self.vendor is not None
        return str(self.vendor["id"])


def fresh_key() -> str:
    """A key for a REST mutation sent without ``Idempotency-Key`` (no retry protection)."""
    return f"auto-{uuid.uuid4().hex}"


class MarketService:
    def __init__(
        self,
        settings: Settings,
        db: asyncpg.Pool,
        router: ShardRouter,
        geo: Geo,
        providers: dict[str, PaymentProvider],
        ranker: CellRanker,
        media: MediaService | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.media = media
        """Listing ``images`` are media ids of the vendor's user (services/media.py)."""
        self.router = router
        self.geo = geo
        self.providers = providers
        self.ranker = ranker
        """Shared with the feed (one memory of cells without a model)."""
        self.listing_changed: list[Callable[[str], None]] = []
        """Told of every listing a vendor's command through this gateway changed, once its
        owner answered (the checkout's memory of lines: services/checkout_reads.py)."""

    async def mutate(self, command: ShardCommand) -> dict[str, Any]:
        try:
            return await self.router.call(command)
        finally:  # even a refusal or a timeout: the listing may have changed meanwhile
            if isinstance(command, ListingCommand):
                for told in self.listing_changed:
                    told(command.listing_id)

    async def with_vendors(
        self, items: list[dict[str, Any]], known: dict[str, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Listings and orders as clients get them: each with ``vendor: {id, name, user_id}``
        (one query for the page, for the vendors not ``known`` already: a checkout knows its
        vendors from its reservations), an order also with ``room_id``, the direct room of its
        buyer and its vendor's user (``chat.open {order_id}`` opens it)."""
        refs = dict(known or {})
        ids = sorted({str(x["vendor_id"]) for x in items if x.get("vendor_id")} - set(refs))
        if ids:
            refs.update(await social_store.vendor_refs(self.db, ids))
        resolution = self.settings.h3_resolution
        for item in items:
            ref = refs.get(str(item.get("vendor_id")))
            if ref is None:
                continue
            item["vendor"] = ref
            buyer = item.get("buyer_id")
            if buyer and buyer != ref["user_id"]:
                item["room_id"] = direct_room_id(str(buyer), ref["user_id"], resolution)
        return items

    async def with_vendor(self, item: dict[str, Any]) -> dict[str, Any]:
        return (await self.with_vendors([item]))[0]

    def provider(self, name: str) -> PaymentProvider:
        provider = self.providers.get(name)
        if provider is None:
            offered = ", ".join(sorted(self.providers)) or "none"
            raise BadRequest(f"payment.provider: {name!r} is not offered here ({offered})")
        return provider

    # -- vendors --------------------------------------------------------------------------------
    async def create_vendor(self, who: Actor, body: dict[str, Any]) -> dict[str, Any]:
        cell = self.geo.cell_of(body["lat"], body["lng"])
        command = VendorCreate(user_id=who.user_id, key=who.key, cell=cell, fields=dict(body))
        return dict((await self.mutate(command))["vendor"])

    async def vendor_of(self, user_id: str) -> dict[str, Any] | None:
        return await ms.vendor_of_user(self.db, user_id)

    # -- listings (vendor side) -----------------------------------------------------------------
    async def _attach_images(self, who: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        """``images`` checked to be uploads of the vendor's user, and marked used."""
        images = fields.get("images")
        if not images:
            return fields
        if self.media is None:
            raise BadRequest("images: photo uploads are not available here")
        owner = str(who.vendor["user_id"]) if who.vendor else who.user_id
        return {**fields, "images": await self.media.attach(owner, images)}

    async def create_listing(self, who: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        fields = await self._attach_images(who, fields)
        command = ListingCreate(
            user_id=who.user_id, key=who.key, vendor_id=who.vendor_id, fields=dict(fields)
        )
        return await self.with_vendor(dict((await self.mutate(command))["listing"]))

    async def _on_listing(
        self, kind: type[ListingCommand], who: Actor, listing_id: str, **fields: Any
    ) -> dict[str, Any]:
        """A vendor's change to one of its listings (the owner checks the listing is theirs)."""
        command = kind(
            user_id=who.user_id, key=who.key, vendor_id=who.vendor_id, listing_id=listing_id,
            **fields,
        )  # fmt: skip
        return await self.with_vendor(dict((await self.mutate(command))["listing"]))

    async def update_listing(
        self, who: Actor, listing_id: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        fields = await self._attach_images(who, fields)
        return await self._on_listing(ListingUpdate, who, listing_id, fields=dict(fields))

    async def delete_listing(self, who: Actor, listing_id: str) -> dict[str, Any]:
        return await self._on_listing(ListingDelete, who, listing_id)

    async def adjust_stock(
        self, who: Actor, listing_id: str, delta: int | None, set_to: int | None
    ) -> dict[str, Any]:
        return await self._on_listing(ListingStock, who, listing_id, delta=delta, set_to=set_to)

    async def vendor_listing(self, vendor_id: str, listing_id: str) -> dict[str, Any]:
        row = await ms.listing_row(self.db, listing_id)
        if row is None or row["vendor_id"] != vendor_id or row["deleted_at"] is not None:
            raise NotFound("no such listing")
        return await self.with_vendor(ms.listing_public(row))

    async def vendor_listings(
        self, vendor_id: str, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        items, next_cursor = await ms.vendor_listings(
            self.db, vendor_id, PageCursor.decode(cursor), limit
        )
        return {"items": await self.with_vendors(items), "next_cursor": next_cursor}

    # -- browsing (buyer side) ------------------------------------------------------------------
    async def nearby(
        self, user_id: str, lat: float, lng: float, filters: dict[str, Any], sort: str | None,
        cursor: str | None, limit: int,
    ) -> dict[str, Any]:  # fmt: skip
        """A page of listings on sale around ``lat,lng``. ``sort`` None: by relevance where a
        model covers the cell, else by distance; the reply's ``sort`` says which was used."""
        page = await self._nearby(user_id, lat, lng, filters, sort, cursor, limit)
        page["items"] = await self.with_vendors(page["items"])
        return page

    async def _nearby(
        self, user_id: str, lat: float, lng: float, filters: dict[str, Any], sort: str | None,
        cursor: str | None, limit: int,
    ) -> dict[str, Any]:  # fmt: skip
        cell = self.geo.cell_of(lat, lng)
        cells = self.geo.neighbourhood(cell)
        offset = parse_relevance_cursor(cursor)
        known_plain = sort is None and self.ranker.known_unranked(cell)
        wants_rank = sort in (None, "relevance") and (cursor is None or offset is not None)
        if wants_rank:
            ranked = None
            if known_plain:
                self.ranker.unranked("listings")
            else:
                ranked = await self._ranked(
                    user_id, lat, lng, cell, cells, filters, offset or 0, limit
                )
            if ranked is not None:
                return ranked
            if offset is not None:  # the model went away between pages: start again
                return {"items": [], "next_cursor": None, "sort": "distance"}
        plain = "distance" if sort in (None, "relevance") else sort
        after = NearbyCursor.decode(cursor, plain) if cursor else None
        items, next_cursor = await ms.nearby(self.db, cells, lat, lng, filters, plain, after, limit)
        return {"items": items, "next_cursor": next_cursor, "sort": plain}

    async def _ranked(
        self, user_id: str, lat: float, lng: float, cell: str, cells: list[str],
        filters: dict[str, Any], offset: int, limit: int,
    ) -> dict[str, Any] | None:  # fmt: skip
        """The nearest ``recommend_candidates`` matching listings, ranked by the model of the
        caller's cell inside the shard that owns it; None (and the cell remembered as
        unranked) when no model covers the cell."""
        pool = self.settings.recommend_candidates
        listings, _ = await ms.nearby(self.db, cells, lat, lng, filters, "distance", None, pool)
        items = [rec_listings.rank_item(x) for x in listings]
        ranked = await self.ranker.order(user_id, lat, lng, cell, items, "listings")
        if ranked is None:
            return None
        order, model = ranked
        page, after = rec_listings.relevance_page(order, offset, limit)
        return {
            "items": [listings[i] for i in page],
            "next_cursor": relevance_cursor(after) if after is not None else None,
            "sort": "relevance",
            "model": model,
        }

    async def listing(self, listing_id: str, viewer: str | None = None) -> dict[str, Any]:
        """A listing on sale; a ``viewer`` (a buyer's ``listing.get``) records a view."""
        row = await ms.listing_row(self.db, listing_id)
        listing = ms.listing_public(row) if row is not None else None
        if listing is None or not listing["active"]:  # deleted, off sale, or its vendor suspended
            raise NotFound("no such listing")
        if viewer is not None:
            await self._record_view(viewer, listing)
        return await self.with_vendor(listing)

    async def _record_view(self, viewer: str, listing: dict[str, Any]) -> None:
        """Best effort: a view that cannot be logged never fails the read it belongs to."""
        try:
            dedupe_s = self.settings.recommend_view_dedupe_s
            await recommend_store.record_view(self.db, viewer, listing, dedupe_s)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("view of %s by %s not recorded: %s", listing["id"], viewer, exc)

    # -- carts ----------------------------------------------------------------------------------
    async def cart_add(self, who: Actor, listing_id: str, qty: int) -> dict[str, Any]:
        route_of(listing_id, "listing")  # a made-up id is not_found before any shard
        await self.mutate(CartAdd(user_id=who.user_id, key=who.key, listing_id=listing_id, qty=qty))
        return await self.cart(who.user_id)

    async def cart_remove(self, who: Actor, listing_ids: list[str]) -> dict[str, Any]:
        ids = tuple(listing_ids)
        await self.mutate(CartRemove(user_id=who.user_id, key=who.key, listing_ids=ids))
        return await self.cart(who.user_id)

    async def cart(self, user_id: str) -> dict[str, Any]:
        items = await ms.cart(self.db, user_id)
        return {"items": items, "totals": cart_totals(items)}

    # -- orders ---------------------------------------------------------------------------------
    async def buyer_order(self, user_id: str, order_id: str) -> dict[str, Any]:
        order = await ms.order(self.db, order_id)
        if order is None or order["buyer_id"] != user_id:
            raise NotFound("no such order")
        return await self.with_vendor(order)

    async def vendor_order(self, vendor_id: str, order_id: str) -> dict[str, Any]:
        order = await ms.order(self.db, order_id)
        if order is None or order["vendor_id"] != vendor_id:
            raise NotFound("no such order")
        return await self.with_vendor(order)

    async def orders(
        self, column: str, owner: str, status: str | None, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        items, next_cursor = await ms.orders_where(
            self.db, column, owner, status, PageCursor.decode(cursor), limit
        )
        return {"items": await self.with_vendors(items), "next_cursor": next_cursor}

    async def act(
        self, who: Actor, order_id: str, action: str, actor: ActorKind, reason: str | None = None
    ) -> dict[str, Any]:
        """One order step (models/market.py decides if it is legal); runs a refund it owes;
        the order as clients get it (``with_vendor``)."""
        result = await self.step(who, order_id, action, actor, reason)
        if isinstance(result.get("order"), dict):
            result["order"] = await self.with_vendor(dict(result["order"]))
        return result

    async def step(
        self, who: Actor, order_id: str, action: str, actor: ActorKind, reason: str | None = None
    ) -> dict[str, Any]:
        """``act`` without the vendor reference read (the checkout adds its vendors itself)."""
        command = OrderAct(
            user_id=who.user_id,
            key=who.key,
            order_id=order_id,
            action=action,
            actor=actor,
            vendor_id=who.vendor_id if actor == "vendor" else None,
            reason=reason or None,
        )
        result = dict(await self.mutate(command))
        if result.get("refund_id"):
            await self.run_refund(str(result["refund_id"]))
        return result

    async def refund(
        self,
        who: Actor,
        order_id: str,
        actor: ActorKind,
        amount: int | None = None,
        currency: str | None = None,
        reason: str | None = None,
        audit: dict[str, Any] | None = None,
        provider_ref: str | None = None,
    ) -> dict[str, Any]:
        """A whole or partial refund of an order at its owner shard (``order.refund``: the
        amount is checked there against what is left), then at the provider (unless it was
        made there: ``actor`` ``provider``, with its ``provider_ref``)."""
        command = OrderRefund(
            user_id=who.user_id,
            key=who.key,
            order_id=order_id,
            actor=actor,
            amount=amount,
            currency=currency,
            vendor_id=who.vendor_id if actor == "vendor" else None,
            reason=reason or None,
            audit=audit,
            provider_ref=provider_ref,
        )
        result = await self.mutate(command)
        await self.run_refund(str(result["refund_id"]))
        return result

    async def run_refund(self, refund_id: str) -> bool:
        """Execute a pending refund at the provider (idempotent by its id); True when done.

        The provider is called here, outside any transaction; its answer goes to the order's
        owner shard as ``refund.settle`` (the refund row is the order's: rule 2). A temporary
        failure leaves it pending (one more attempt counted): the sweeper
        (services/market_jobs.py) tries again; a permanent refusal by the provider marks it
        ``failed`` (terminal, logged as an error for an admin to settle).
        """
        row = await self.db.fetchrow(
            "SELECT r.id, r.amount, r.status, r.payment_id, r.attempts, o.cell, p.provider,"
            " p.provider_ref FROM refunds r JOIN payments p ON p.id = r.payment_id"
            " JOIN orders o ON o.id = r.order_id WHERE r.id = $1",
            refund_id,
        )
        if row is None:
            return False
        if row["status"] != "pending":
            if row["status"] == "succeeded":  # a crash may have come before the sync: redo it
                await ms.sync_refunded(self.db, row["payment_id"])
            return True
        try:
            provider = self.provider(row["provider"])
            ref = await provider.refund(row["provider_ref"], row["amount"], f"refund-{row['id']}")
        except RefundRefused as err:  # terminal: never retried; an admin must settle it
            log.error("refund %s refused by %s for good: %s", refund_id, row["provider"], err)
            await self._settle_refund(row, "failed", reason=err.message)
            return False
        except AppError as err:
            log.warning("refund %s not executed yet: %s", refund_id, err.message)
            await self._settle_refund(row, "retry", reason=err.message)
            return False
        settled = await self._settle_refund(row, "succeeded", provider_ref=ref)
        if settled["status"] == "succeeded":  # derived, not added: the webhook may be first
            await ms.sync_refunded(self.db, row["payment_id"])
        return True

    async def _settle_refund(
        self,
        row: asyncpg.Record,
        outcome: str,
        *,
        provider_ref: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Send the provider's answer to the order's owner shard as ``refund.settle``. Keyed by
        the refund id (and, for a temporary failure, the attempt it was), as the system."""
        key = f"refund:{row['id']}"
        if outcome == "retry":
            key += f"#{row['attempts']}"
        command = RefundSettle(
            user_id=SYSTEM,
            key=key,
            refund_id=row["id"],
            cell=row["cell"],
            outcome=outcome,
            provider_ref=provider_ref,
            reason=reason,
        )
        return await self.mutate(command)
