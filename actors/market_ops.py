"""Marketplace mutations, run by the shard that owns the cell (or buyer key) they route to.

Owned here, per cell: the vendor profiles, listings (and so their stock) and orders homed in
the cell. Owned per buyer key (``user:<id>``): the buyer's cart. Every handler runs inside the
shard's group commit: it validates against committed state, writes rows, declares its stream
events and queues its REST hook deliveries (the outbox) in that same transaction, so an acked
reservation, sale or refund is durable, and its events and hooks exist if and only if it is.

Stock moves only here: ``order.reserve`` takes it (a conditional UPDATE; ``CHECK (stock >= 0)``
backs it up), ``order.act`` gives it back when an unpaid or not yet handed-over order ends,
``listing.stock`` sets it for the vendor. Idempotent: all by the caller's (user, key) record.
Refund rows are the order's, so they are written only by its owner too (rule 2): ``order.act``
records the refund a step into ``refunded`` owes (what partial refunds left), ``order.refund`` a
whole or partial refund (actors/refund_ops.py has the rows, ``refund.record`` and
``refund.settle``). ``vendor.suspend`` flags a suspended vendor's listings out of every read op.
An order's move to ``paid`` also records one ``purchase`` interaction per line (the
recommender's training data) in the same transaction, so a sale is counted exactly once.
Each handler gets its typed command (models/market.py). The services say who is acting
(``actor``, ``vendor_id``: the caller's own vendor, never taken from a request); the handlers
check it against the row (rule 7), so a vendor reaches only its own listings and orders, a
buyer only their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors import listing_memory, order_memory
from actors.cell_host import Tick
from actors.group_commit import Refused
from actors.refund_ops import record_refund
from models import market
from models.admin import target_ref
from models.commands import ShardCommand, ShardRead
from models.errors import AppError, BadRequest, Conflict, Forbidden, NotFound, OutOfStock
from models.ids import cell_of, cell_scoped_id
from models.market import TERMINAL
from models.placement import cell_key
from models.streams import compact_json, feed_stream, listing_stream, user_stream
from store import admin_store, hooks_store, order_writes
from store import market_store as ms

if TYPE_CHECKING:
    import asyncpg

    from actors.cell_host import CellHost, Emitted, Handler, Reader
    from actors.group_commit import Tx, Work


_PENDING = "market.listing_updates"
"""``host.ext`` key: listing id -> its latest committed state, not yet sent (conflation)."""
_PENDING_FEED = "market.listing_availability"
"""``host.ext`` key: ids of pending listings whose availability (in stock or sold out) changed
since their feed stream last heard of them."""


def _pending(host: CellHost) -> dict[str, dict[str, Any]]:
    pending: dict[str, dict[str, Any]] = host.ext.setdefault(_PENDING, {})
    return pending


def _pending_feed(host: CellHost) -> set[str]:
    flagged: set[str] = host.ext.setdefault(_PENDING_FEED, set())
    return flagged


def _listing_changed(host: CellHost, tx: Tx, out: Emitted, listing: dict[str, Any]) -> None:
    """A vendor's change: ``listing.updated`` at once, to the neighbourhood (``feed:<cell>``)
    and to the listing's watchers (``listing:<id>``); a stock state still pending from sales is
    older than this one and is dropped once it commits."""
    event = {"listing": listing}
    out.add(feed_stream(listing["cell"]), "listing.updated", event)
    out.add(listing_stream(listing["id"]), "listing.updated", event)
    pending, flagged = _pending(host), _pending_feed(host)

    def forget() -> None:
        pending.pop(listing["id"], None)
        flagged.discard(listing["id"])

    tx.then(forget)


def _stock_moved(
    host: CellHost, tx: Tx, out: Emitted, listing: dict[str, Any], before: int
) -> None:
    """A sale or a release moved the stock from ``before``: the listing's watchers hear of it
    (``listing:<id>``), its neighbourhood only when it sold out or came back in stock. Both
    conflated: once committed, the listing's latest state waits in ``host.ext`` for the next
    ``flush_listing_updates`` (every ``listing_update_ms``), which sends one event per listing
    and stream, whatever moved it meanwhile."""
    availability = (before > 0) != (listing["stock"] > 0)
    if host.settings.listing_update_ms <= 0:
        event = {"listing": listing}
        out.add(listing_stream(listing["id"]), "listing.updated", event)
        if availability:
            out.add(feed_stream(listing["cell"]), "listing.updated", event)
        return
    pending, flagged = _pending(host), _pending_feed(host)

    def remember() -> None:
        pending[listing["id"]] = listing
        if availability:
            flagged.add(listing["id"])

    tx.then(remember)


def flush_listing_updates(host: CellHost) -> Work | None:
    """The tick's work: one ``listing.updated`` per pending listing on its ``listing:<id>``
    stream, and on its cell's feed stream if its availability changed (cells no longer owned
    here are dropped: their new owner speaks for them). A pending state is forgotten only once
    its event committed, and only if nothing newer replaced it."""
    pending = host.ext.get(_PENDING)
    if not pending:
        return None
    snapshot = dict(pending)
    flagged = _pending_feed(host)
    to_feed = {listing_id for listing_id in snapshot if listing_id in flagged}

    async def work(tx: Tx) -> dict[str, Any]:
        by_stream: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for listing in snapshot.values():
            if host.owns(cell_key(listing["cell"])):
                event = ("listing.updated", {"listing": listing})
                by_stream[listing_stream(listing["id"])] = [event]
                if listing["id"] in to_feed:
                    by_stream.setdefault(feed_stream(listing["cell"]), []).append(event)
        for stream, items in by_stream.items():
            tx.emit(await host.append(tx, stream, items))

        def forget() -> None:
            for listing_id, sent in snapshot.items():
                if pending.get(listing_id) is sent:
                    del pending[listing_id]
                    flagged.discard(listing_id)

        tx.then(forget)
        return {}

    return work


Hooks = list[tuple[str, dict[str, Any]]]
"""REST hook events a command queues, in order (``_queue_hooks``)."""


def _queue_hooks(tx: Tx, vendor_id: str, hooks: Hooks) -> None:
    """The vendor's REST hook deliveries of ``hooks``, written with the batch: the outbox in
    the transaction of the events, with no query of its own (store/hooks_store.py)."""
    for row in hooks_store.delivery_rows(vendor_id, hooks):
        tx.defer(row)


_VENDORS = "market.vendors"
"""``host.ext`` key: vendor id -> its row as read once. A vendor's id, user, cell and place
never change (no op edits them), so the owner reads each vendor once, not per order."""


async def _vendor(host: CellHost, tx: Tx, vendor_id: str) -> dict[str, Any] | None:
    cache: dict[str, dict[str, Any]] = host.ext.setdefault(_VENDORS, {})
    vendor = cache.get(vendor_id)
    if vendor is None:
        vendor = await ms.vendor_by_id(tx.conn, vendor_id)
        if vendor is not None:
            cache[vendor_id] = vendor
    return vendor


def _stock_hooks(host: CellHost, before: int | None, listing: dict[str, Any]) -> Hooks:
    threshold = host.settings.low_stock_threshold
    hooks: Hooks = []
    if listing["stock"] <= threshold and (before is None or before > threshold):
        hooks.append(("listing.low_stock", listing))
    hooks.append(("listing.updated", listing))
    return hooks


async def _own_listing(host: CellHost, tx: Tx, cmd: market.ListingCommand) -> asyncpg.Record:
    listing_memory.from_sql(host, tx, [cmd.listing_id])  # a vendor's change: from SQL
    row = await ms.listing_row(tx.conn, cmd.listing_id, lock=True)
    if row is None or row["vendor_id"] != cmd.vendor_id or row["deleted_at"]:
        raise NotFound("no such listing")
    return row


# -- vendors and listings -----------------------------------------------------------------------
async def vendor_create(
    host: CellHost, tx: Tx, cmd: market.VendorCreate, out: Emitted
) -> dict[str, Any]:
    vendor = {
        **cmd.fields,
        "cell": cmd.cell,
        "id": cell_scoped_id(cmd.cell),
        "user_id": cmd.user_id,
    }
    created = await ms.insert_vendor(tx.conn, vendor)
    # the `vendor` role comes with the profile (models/rbac.py); roles are read on every request
    await tx.conn.execute(
        "UPDATE users SET roles = array_append(roles, 'vendor')"
        " WHERE id = $1 AND NOT 'vendor' = ANY(roles)",
        cmd.user_id,
    )
    return {"vendor": created}


async def listing_create(
    host: CellHost, tx: Tx, cmd: market.ListingCreate, out: Emitted
) -> dict[str, Any]:
    vendor = await _vendor(host, tx, cmd.vendor_id)
    if vendor is None:
        raise NotFound("no such vendor")
    if await tx.conn.fetchval("SELECT suspended_at FROM vendors WHERE id = $1", vendor["id"]):
        raise Forbidden("this vendor is suspended", reason="suspended")
    row = {
        **cmd.fields,
        "id": cell_scoped_id(vendor["cell"]),
        "vendor_id": vendor["id"],
        "cell": vendor["cell"],
        "lat": vendor["lat"],
        "lng": vendor["lng"],
    }
    listing = await ms.insert_listing(tx.conn, row)
    _listing_changed(host, tx, out, listing)
    _queue_hooks(tx, vendor["id"], _stock_hooks(host, None, listing))
    return {"listing": listing}


async def listing_update(
    host: CellHost, tx: Tx, cmd: market.ListingUpdate, out: Emitted
) -> dict[str, Any]:
    await _own_listing(host, tx, cmd)
    if await tx.conn.fetchval("SELECT removed_at FROM listings WHERE id = $1", cmd.listing_id):
        raise Forbidden("a moderator removed this listing: appeal the removal to change it")
    listing = await ms.update_listing(tx.conn, cmd.listing_id, cmd.fields)
    _listing_changed(host, tx, out, listing)
    _queue_hooks(tx, listing["vendor_id"], [("listing.updated", listing)])
    return {"listing": listing}


async def listing_delete(
    host: CellHost, tx: Tx, cmd: market.ListingDelete, out: Emitted
) -> dict[str, Any]:
    await _own_listing(host, tx, cmd)
    listing = await ms.delete_listing(tx.conn, cmd.listing_id)
    _listing_changed(host, tx, out, listing)
    return {"listing": listing}


async def listing_stock(
    host: CellHost, tx: Tx, cmd: market.ListingStock, out: Emitted
) -> dict[str, Any]:
    row = await _own_listing(host, tx, cmd)
    if cmd.set_to is not None:
        stock = cmd.set_to
    elif cmd.delta is not None:
        stock = row["stock"] + cmd.delta
    else:
        raise BadRequest("give delta or set")
    if stock < 0:
        raise Conflict(f"stock is {row['stock']}; it cannot go below zero")
    listing = await ms.set_stock(tx.conn, row["id"], stock)
    _listing_changed(host, tx, out, listing)
    _queue_hooks(tx, listing["vendor_id"], _stock_hooks(host, row["stock"], listing))
    return {"listing": listing}


# -- carts (routed to the buyer's key) ----------------------------------------------------------
async def cart_add(host: CellHost, tx: Tx, cmd: market.CartAdd, out: Emitted) -> dict[str, Any]:
    """Add to the buyer's cart a listing on sale: one statement on the way that succeeds."""
    if not 1 <= cmd.qty <= _CART_MAX:
        raise Refused(BadRequest(f"qty must be 1-{_CART_MAX}"))
    qty = await ms.cart_add(tx.conn, cmd.user_id, cmd.listing_id, cmd.qty, _CART_MAX)
    if qty is None:  # nothing written: say why
        row = await ms.listing_row(tx.conn, cmd.listing_id)
        if row is None or not row["active"] or row["deleted_at"] is not None:
            raise Refused(NotFound("no such listing"))
        if row["vendor_suspended"]:
            raise Refused(_vendor_suspended(row))
        raise Refused(BadRequest(f"at most {_CART_MAX} of one listing in a cart"))
    return {"item": {"listing_id": cmd.listing_id, "qty": qty}}


_CART_MAX = market.CART_MAX_QTY


def _vendor_suspended(row: Any) -> Conflict:
    return Conflict(
        "this listing's vendor is suspended: it cannot be bought now",
        reason="vendor_suspended", listing_id=row["id"], vendor_id=row["vendor_id"],
    )  # fmt: skip


async def cart_remove(
    host: CellHost, tx: Tx, cmd: market.CartRemove, out: Emitted
) -> dict[str, Any]:
    removed = await ms.cart_remove(tx.conn, cmd.user_id, list(cmd.listing_ids))
    return {"removed": removed}


# -- orders (routed to the vendor's cell) -------------------------------------------------------
def _order_events(
    out: Emitted,
    order: dict[str, Any],
    vendor_user_id: str,
    hooks: Hooks,
    created: bool = False,
    announce: bool = True,
) -> dict[str, Any]:
    """``order.updated`` to the buyer's and the vendor's inboxes (unless not ``announce``: a
    checkout's reservation, or its release before it was announced), and its hooks (always:
    a vendor's hooks hear every step)."""
    if announce:
        _announce(out, order, vendor_user_id)
    if created:
        hooks.append(("order.created", order))
    hooks.append(("order.updated", order))
    return order


def _announce(out: Emitted, order: dict[str, Any], vendor_user_id: str) -> None:
    for user in {order["buyer_id"], vendor_user_id}:
        out.add(user_stream(user), "order.updated", {"order": order})


def _check_lines(rows: Mapping[str, Any], items: tuple[dict[str, Any], ...], currency: str) -> None:
    """Every line can be taken: on sale, enough stock, the price and currency the cart saw.
    Checked on the rows locked (or remembered) before anything is written, so a refusal is clean
    (``Refused``: in a sell-out most batches hold one, and the others need not re-run)."""
    for item in items:
        row = rows.get(item["listing_id"])
        if row is None or not row["active"] or row["deleted_at"] is not None:
            error: AppError = NotFound(
                f"{item['title']} is no longer on sale", listing_id=item["listing_id"]
            )
        elif row["vendor_suspended"]:
            error = _vendor_suspended(row)
        elif row["stock"] < item["qty"]:
            error = OutOfStock(
                f"only {row['stock']} left of {item['title']}",
                listing_id=item["listing_id"],
                available=row["stock"],
            )
        elif row["price"] != item["unit_price"] or row["currency"] != currency:
            error = Conflict(f"the price or currency of {item['title']} changed; review the cart")
        else:
            continue
        raise Refused(error)


def _taken(host: CellHost, tx: Tx, out: Emitted, rows: list[dict[str, Any]],
           items: tuple[dict[str, Any], ...], hooks: Hooks) -> None:  # fmt: skip
    """The events and hooks of the stock ``rows`` a reservation just took for ``items``."""
    qty = {item["listing_id"]: item["qty"] for item in items}
    for row in rows:
        listing = ms.listing_public(row)
        before = row["stock"] + qty[row["id"]]
        _stock_moved(host, tx, out, listing, before)
        hooks.extend(_stock_hooks(host, before, listing))


async def order_reserve(
    host: CellHost, tx: Tx, cmd: market.OrderReserve, out: Emitted
) -> dict[str, Any]:
    """Take the stock of one vendor's part of a checkout and open its pending order."""
    vendor_id = cmd.vendor_id
    cell = cell_of(vendor_id)
    vendor = await _vendor(host, tx, vendor_id)
    if vendor is None or cell is None:
        raise Refused(NotFound("no such vendor"))
    if any(cell_of(item["listing_id"]) != cell for item in cmd.items):
        raise Refused(BadRequest("a part must hold only its vendor's listings"))
    ids = [item["listing_id"] for item in cmd.items]
    known = await listing_memory.rows(host, tx, ids, vendor_id)
    if known is not None:  # the fast path: decided from memory, rows of the batch statement
        return _reserve_in_memory(host, tx, out, cmd, vendor, cell, known)
    listing_memory.from_sql(host, tx, ids)
    order = {
        "id": cell_scoped_id(cell),
        "group_id": cmd.group_id,
        "buyer_id": cmd.user_id,
        "vendor_id": vendor_id,
        "vendor_user_id": vendor["user_id"],
        "cell": cell,
        "total": cmd.total,
        "currency": cmd.currency,
        "reservation_s": cmd.ttl_s,  # from the database clock: the one expiry is decided by
        "risk": cmd.risk,
        "announced": cmd.announce,
    }
    # the listings locked and checked, the stock taken and the order written: one statement,
    # which writes nothing unless every line can be taken
    done = await order_writes.reserve(tx.conn, order, list(cmd.items))
    if done.order is None:
        _check_lines(done.locked, cmd.items, cmd.currency)  # raises the line's refusal
        raise AssertionError("a reservation refused with every line takeable")
    assert len(done.taken) == len(cmd.items), "all or none: the statement checked each line"
    listing_memory.remember(host, tx, done.taken)
    return _reserved(host, tx, out, cmd, vendor, done.order, done.taken)


def _reserve_in_memory(host: CellHost, tx: Tx, out: Emitted, cmd: market.OrderReserve,
                       vendor: dict[str, Any], cell: str,
                       known: dict[str, listing_memory.Row]) -> dict[str, Any]:  # fmt: skip
    """``order.reserve`` from the owner's memory of its listings: every line checked against
    them (a refusal before anything is taken), the stock taken in the batch's view (one
    compare-and-set row per listing: actors/listing_memory.py) and the order with its lines
    deferred as rows of the batch statement, stamped by this host's clock (its reservation's
    end too; expiry is still decided by the database clock, the sweeper's)."""
    _check_lines(known, cmd.items, cmd.currency)  # raises the first line's refusal
    at = datetime.now(UTC)
    taken = [listing_memory.take(host, tx, known[item["listing_id"]], item["qty"], at)
             for item in cmd.items]  # fmt: skip
    order = {
        "id": cell_scoped_id(cell),
        "group_id": cmd.group_id,
        "buyer_id": cmd.user_id,
        "vendor_id": cmd.vendor_id,
        "vendor_user_id": vendor["user_id"],
        "cell": cell,
        "status": market.PENDING,
        "total": cmd.total,
        "currency": cmd.currency,
        "reserved_until": at + timedelta(seconds=cmd.ttl_s),
        "reason": None,
        "created_at": at,
        "updated_at": at,
        "risk": cmd.risk,
        "refunded": 0,
    }
    risk = None if cmd.risk is None else compact_json(cmd.risk)
    tx.defer(order_writes.ORDERS.row(order["id"], cmd.group_id, cmd.user_id, cmd.vendor_id,
                                     vendor["user_id"], cell, cmd.total, cmd.currency,
                                     order["reserved_until"], at, risk,
                                     cmd.announce))  # fmt: skip
    for item in cmd.items:
        tx.defer(order_writes.ORDER_LINES.row(order["id"], item["listing_id"], item["title"],
                                              item["qty"], item["unit_price"]))  # fmt: skip
    return _reserved(host, tx, out, cmd, vendor, order, taken)


def _reserved(host: CellHost, tx: Tx, out: Emitted, cmd: market.OrderReserve,
              vendor: dict[str, Any], order: dict[str, Any],
              taken: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """A reservation's events, hooks and reply once its stock is ``taken`` (rows after) and its
    ``order`` written (or deferred)."""
    vendor_id = cmd.vendor_id
    hooks: Hooks = []
    _taken(host, tx, out, taken, cmd.items, hooks)
    placed = ms.order_public(order, list(cmd.items))
    _order_events(out, placed, vendor["user_id"], hooks, created=True, announce=cmd.announce)
    _queue_hooks(tx, vendor_id, hooks)
    # its confirm (or release, or announcement) is decided from memory
    order_memory.remember(host, tx, placed, vendor["user_id"], cmd.announce)
    # who sold it, as every order reaches a client (services/market.py ``with_vendors``), from
    # this shard's memory: the checkout then reads no vendor row for its answer
    ref = {"id": vendor["id"], "name": vendor["name"], "user_id": vendor["user_id"]}
    return {"order": placed, "vendor": ref}


def _may_see(row: asyncpg.Record, cmd: market.OrderAct | market.OrderRefund) -> bool:
    if cmd.actor == "buyer":
        return bool(row["buyer_id"] == cmd.user_id)
    if cmd.actor == "vendor":
        return cmd.vendor_id is not None and bool(row["vendor_id"] == cmd.vendor_id)
    return True


async def order_act(host: CellHost, tx: Tx, cmd: market.OrderAct, out: Emitted) -> dict[str, Any]:
    """One step of the order state machine (models/market.py), with its stock and refund."""
    released = await _released_in_memory(host, tx, out, cmd)
    if released is not None:
        return released
    plain = _plain_step(cmd)
    if plain is not None:
        sources, target = plain
        reason = cmd.reason or f"{cmd.action} by {cmd.actor}"
        known = None if tx.careful else order_memory.recall(host, cmd.order_id)
        if known is not None and known["status"] in sources:  # no statement of its own
            return _stepped_in_memory(host, tx, out, known, target, reason)
        order_memory.from_sql(host, tx, cmd.order_id)
        moved = await order_writes.step(tx.conn, cmd.order_id, target, reason, sources)
        if moved is not None:  # one statement; None: the order is not where the step starts
            return _stepped(tx, out, *moved)  # confirm, hold: an outcome, announced
    order_memory.from_sql(host, tx, cmd.order_id)
    found = await ms.order_locked(tx.conn, cmd.order_id)
    if found is None or not _may_see(found[0], cmd):
        raise NotFound("no such order")
    row, lines = found
    quiet = row["status"] == market.PENDING and not row["announced"]  # if it ends now: never
    action, actor = cmd.action, cmd.actor  # announced (the column outlives the owner's memory)
    if action == "expire" and not await ms.reservation_over(tx.conn, row["id"]):
        # Decided by the database clock (the sweeper's), never this host's; an error, not a
        # no-op, so nothing is recorded under the caller's key and a later sweep can expire it.
        raise Conflict("the order is not an expired reservation", order_id=row["id"])
    if actor in ("system", "provider") and _already(row["status"], action):
        return {"order": ms.order_public(row, lines), "changed": False}
    step = market.transition(row["status"], action, actor)
    if step.restock:
        await _restock(host, tx, out, lines)
    refund_id, left = None, row["total"] - row["refunded"]
    if step.target == market.REFUNDED and left > 0:  # what partial refunds left, all of it
        refund_id = await record_refund(tx, row, left, external=not step.refund_owed)
    reason = cmd.reason or f"{action} by {actor}"
    refunded = left if refund_id is not None else 0
    updated = await ms.set_order_status(tx.conn, row["id"], step.target, reason, refunded)
    result = _stepped(tx, out, updated, lines, announce=not (quiet and step.target in TERMINAL))
    if refund_id is not None:
        result["refund_id"] = refund_id
    return result


async def _released_in_memory(
    host: CellHost, tx: Tx, out: Emitted, cmd: market.OrderAct
) -> dict[str, Any] | None:
    """The system's ``release`` of an order this host remembers (pending or held: no money
    taken), on the fast path: its units given back in the batch's view of its listings and its
    row moved by a checked row of the batch statement, as a remembered confirmation is; None
    when it must go to SQL (another step, the careful path, an order not remembered)."""
    if cmd.action != "release" or cmd.actor not in ("system", "provider") or tx.careful:
        return None
    known = order_memory.recall(host, cmd.order_id)
    if known is None or known["status"] not in order_memory.WAITING:
        return None
    step = market.transition(known["status"], cmd.action, cmd.actor)
    if not step.restock or step.refund_owed:
        return None
    await _restock(host, tx, out, list(known["items"]))
    reason = cmd.reason or f"{cmd.action} by {cmd.actor}"
    return _stepped_in_memory(host, tx, out, known, step.target, reason)


async def _restock(host: CellHost, tx: Tx, out: Emitted, lines: list[dict[str, Any]]) -> None:
    """Give an ended order's units back: in the batch's view of a remembered listing on sale
    (its compare-and-set row), else from SQL."""
    known = await listing_memory.rows(host, tx, [item["listing_id"] for item in lines]) or {}
    at = datetime.now(UTC)
    for item in lines:
        row = known.get(item["listing_id"])
        if row is not None and _on_sale(row):
            listing = ms.listing_public(listing_memory.take(host, tx, row, -item["qty"], at))
        else:
            listing_memory.from_sql(host, tx, [item["listing_id"]])
            listing = await ms.put_back(tx.conn, item["listing_id"], item["qty"])
        _stock_moved(host, tx, out, listing, listing["stock"] - item["qty"])


def _on_sale(row: Mapping[str, Any]) -> bool:
    return bool(row["active"] and row["deleted_at"] is None and not row["vendor_suspended"])


def _plain_step(cmd: market.OrderAct) -> tuple[frozenset[str], str] | None:
    """A step of the system (or the provider) that only moves the status (``confirm``,
    ``hold``): one conditional write, no read first (they may step any order: rule 7 has
    nothing to check). None for the others."""
    if cmd.actor not in ("system", "provider"):
        return None
    return market.plain_step(cmd.action, cmd.actor)


def _stepped_in_memory(
    host: CellHost, tx: Tx, out: Emitted, known: dict[str, Any], target: str, reason: str
) -> dict[str, Any]:
    """A plain step of a remembered order: its row moves in the batch statement (checked:
    from the status remembered), its reply and events carry the time this host gave it."""
    at = datetime.now(UTC)
    tx.defer(order_writes.STEPS.row(known["id"], known["status"], target, reason, at))
    order_memory.stepping(host, tx).add(known["id"])
    changed = order_memory.public(known)
    changed.update(status=target, reason=reason, updated_at=at.isoformat())
    if target != market.PENDING:
        changed["reserved_until"] = None
    if target == market.PAID:  # a sale: the buyer's purchases train the rankers
        tx.defer(order_writes.purchases(known["buyer_id"], known["id"], known["currency"]))
    hooks: Hooks = []
    announce = known["announced"] or target not in TERMINAL  # ended unannounced: stays so
    _order_events(out, changed, known["vendor_user_id"], hooks, announce=announce)
    _queue_hooks(tx, known["vendor_id"], hooks)
    order_memory.remember(host, tx, changed, known["vendor_user_id"])
    return {"order": changed, "changed": True}


def _stepped(
    tx: Tx,
    out: Emitted,
    updated: asyncpg.Record,
    lines: list[dict[str, Any]],
    announce: bool = True,
) -> dict[str, Any]:
    """An order step's events (unless not ``announce``), hooks and (a sale) purchases, once
    its row is ``updated``."""
    if updated["status"] == market.PAID:  # a sale: the buyer's purchases train the rankers
        tx.defer(order_writes.purchases(updated["buyer_id"], updated["id"], updated["currency"]))
    hooks: Hooks = []
    changed = ms.order_public(updated, lines)  # a step changes no line
    _order_events(out, changed, updated["vendor_user_id"], hooks, announce=announce)
    _queue_hooks(tx, updated["vendor_id"], hooks)
    return {"order": changed, "changed": True}


async def stock_probe(host: CellHost, read: market.StockProbe) -> dict[str, Any]:
    """The first of the probe's lines this owner knows it cannot take now (a remembered
    listing on sale with less stock than asked), or ``{"short": None}``. From memory only: a
    listing not remembered, or off sale (the reservation answers that one), passes."""
    for listing_id, qty in read.items:
        if cell_of(listing_id) != cell_of(read.vendor_id):
            raise BadRequest("a probe must hold only its vendor's listings")
        row = listing_memory.committed(host, listing_id)
        if row is not None and _on_sale(row) and row["stock"] < qty:
            return {"short": {"listing_id": listing_id, "available": row["stock"]}}
    return {"short": None}


async def order_announce(
    host: CellHost, tx: Tx, cmd: market.OrderAnnounce, out: Emitted
) -> dict[str, Any]:
    """Put a pending order reserved unannounced on its inboxes (its payment waits for the
    buyer now), once: the order's ``announced`` column says whether it was (the owner's memory
    of it does not survive a restart). An order announced before, or past ``pending_payment``
    (announced by the step that moved it), is answered as it is."""
    known = None if tx.careful else order_memory.recall(host, cmd.order_id)
    if known is not None:  # remembered: no read, but the column still decides
        order = order_memory.public(known)
        now = not known["announced"] and await ms.mark_announced(tx.conn, cmd.order_id)
        if now:
            _announce(out, order, known["vendor_user_id"])
            order_memory.remember(host, tx, order, known["vendor_user_id"])
        return {"order": order, "announced": now}
    order_memory.from_sql(host, tx, cmd.order_id)
    found = await ms.order_locked(tx.conn, cmd.order_id)
    if found is None:
        raise NotFound("no such order")
    row, lines = found
    order = ms.order_public(row, lines)
    now = row["status"] == market.PENDING and await ms.mark_announced(tx.conn, row["id"])
    if now:
        _announce(out, order, row["vendor_user_id"])
    return {"order": order, "announced": now}


async def order_refund(
    host: CellHost, tx: Tx, cmd: market.OrderRefund, out: Emitted
) -> dict[str, Any]:
    """A refund, whole or partial (models/market.py ``refund_amount``): its refund row and
    the order's ``refunded`` amount; the one that leaves nothing to refund is the order's
    ``refund`` step (restock included). An admin's carries its audit entry, written here."""
    order_memory.from_sql(host, tx, cmd.order_id)
    found = await ms.order_locked(tx.conn, cmd.order_id)
    if found is None or not _may_see(found[0], cmd):
        raise NotFound("no such order")
    row, lines = found
    status, total, done = row["status"], row["total"], row["refunded"]
    amount = market.refund_amount(
        status, cmd.actor, total, done, row["currency"], cmd.amount, cmd.currency
    )
    if amount == total - done:
        step = market.transition(status, "refund", cmd.actor)
        if step.restock:
            await _restock(host, tx, out, lines)
        status = step.target
    refund_id = await record_refund(
        tx, row, amount, external=cmd.actor == "provider", provider_ref=cmd.provider_ref
    )
    if refund_id is None:  # nothing written: nothing recorded under the key either
        raise Conflict("the order's payment is not captured", order_id=row["id"])
    reason = cmd.reason or f"refund by {cmd.actor}"
    updated = await ms.set_order_status(tx.conn, row["id"], status, reason, amount)
    if cmd.audit is not None:
        result = {"refund_id": refund_id, "amount": amount, "refunded": updated["refunded"]}
        await admin_store.audit(tx.conn, cmd.audit.get("actor_id"), str(cmd.audit["action"]),
                                target_ref("order", row["id"]), cmd.audit.get("reason"),
                                result)  # fmt: skip
    hooks: Hooks = []
    changed = ms.order_public(updated, lines)
    _order_events(out, changed, row["vendor_user_id"], hooks)
    _queue_hooks(tx, row["vendor_id"], hooks)
    return {"order": changed, "changed": True, "refund_id": refund_id, "amount": amount}


# -- a vendor's suspension (routed to the vendor's cell) ----------------------------------------
async def vendor_suspend(
    host: CellHost, tx: Tx, cmd: market.VendorSuspend, out: Emitted
) -> dict[str, Any]:
    """Flag (or unflag) every listing of the vendor, with the vendor row, in one transaction;
    each listing on sale is announced (``listing.updated``, ``active`` false while the vendor
    is suspended). A vendor already in that state: nothing changes."""
    listing_memory.forget_vendor(host, tx, cmd.vendor_id)
    flagged = await tx.conn.fetchval(
        "UPDATE vendors SET suspended_at = CASE WHEN $2 THEN now() END WHERE id = $1"
        " AND (suspended_at IS NOT NULL) <> $2 RETURNING id",
        cmd.vendor_id,
        cmd.suspended,
    )
    if flagged is None:
        if await _vendor(host, tx, cmd.vendor_id) is None:
            raise NotFound("no such vendor")
        return {"vendor_id": cmd.vendor_id, "listings": 0, "changed": False}
    rows = await tx.conn.fetch(
        f"UPDATE listings SET vendor_suspended = $2, updated_at = now() WHERE vendor_id = $1"
        f" AND deleted_at IS NULL AND vendor_suspended <> $2 RETURNING {ms.LISTING_COLUMNS}",
        cmd.vendor_id,
        cmd.suspended,
    )
    for row in rows:
        if row["active"]:  # a listing off sale anyway (the vendor's, or removed) says nothing
            _listing_changed(host, tx, out, ms.listing_public(row))
    return {"vendor_id": cmd.vendor_id, "listings": len(rows), "changed": True}


def _already(status: str, action: str) -> bool:
    """A system step repeated after it (or an equivalent) took effect: answer, change nothing."""
    done = {
        # refunded too: an order is refunded only once paid, so its confirmation took effect
        "confirm": (
            market.PAID,
            market.ACCEPTED,
            market.FULFILLED,
            market.COMPLETED,
            market.REFUNDED,
        ),
        "release": (market.CANCELLED,),
        "refund": (market.REFUNDED,),
        "hold": (market.HELD,),
    }
    return status in done.get(action, ())


TICKS = (Tick("listing-updates", lambda s: s.listing_update_ms / 1000, flush_listing_updates),)

HANDLERS: dict[type[ShardCommand], Handler] = {
    market.VendorCreate: vendor_create,
    market.ListingCreate: listing_create,
    market.ListingUpdate: listing_update,
    market.ListingDelete: listing_delete,
    market.ListingStock: listing_stock,
    market.CartAdd: cart_add,
    market.CartRemove: cart_remove,
    market.OrderReserve: order_reserve,
    market.OrderAct: order_act,
    market.OrderAnnounce: order_announce,
    market.OrderRefund: order_refund,
    market.VendorSuspend: vendor_suspend,
}
READERS: dict[type[ShardRead], Reader] = {market.StockProbe: stock_probe}
