"""The orders a shard remembers: those it reserved that still wait for a system step.

A checkout's order is reserved and then, once paid, confirmed (or held, or released) by the same
owner shard (rule 2). The owner keeps the order as it committed it, so a plain system step
(``confirm``, ``hold``: models/market.py ``plain_step``) is decided from memory and written as a
checked row of the batch's one statement (store/order_writes.py ``STEPS``: a compare-and-set on
the status it remembered) instead of a statement of its own, and the batch needs no
``BEGIN``/``COMMIT``. Postgres stays the truth: a row that was not as remembered fails the
compare-and-set, the batch runs again carefully (every step from SQL) and nothing is lost.

Owns, in ``host.ext`` (cleared with it when the placement changes): each remembered order
(its public shape, its vendor's user, and whether its inboxes heard of it yet: a checkout's
reservation is announced at its payment's outcome, actors/market_ops.py), set only once a batch
committed (``Tx.then``), at
most ``MAX_ORDERS``; and the orders whose step the batch in progress holds as a deferred row,
so another command of that batch that would read such an order from SQL (where it has not
moved yet) refuses the fast path instead (``RunCarefully``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.group_commit import RunCarefully
from models import market

if TYPE_CHECKING:
    from actors.cell_host import CellHost
    from actors.group_commit import Tx

MAX_ORDERS = 100_000
"""Remembered orders at most (a checkout's order is forgotten once it leaves
``pending_payment`` and ``held``; one never paid, once its reservation is settled)."""

_ORDERS = "market.orders"
_STEPPING = "market.stepping"
WAITING = (market.PENDING, market.HELD)
"""The states a remembered order is in: what a system step starts from."""


def _orders(host: CellHost) -> dict[str, dict[str, Any]]:
    orders: dict[str, dict[str, Any]] = host.ext.setdefault(_ORDERS, {})
    return orders


_INTERNAL = ("vendor_user_id", "announced")
"""What a remembered order holds beyond its public shape."""


def recall(host: CellHost, order_id: str) -> dict[str, Any] | None:
    """The order as this host last committed it (with ``vendor_user_id`` and ``announced``),
    if remembered."""
    return _orders(host).get(order_id)


def public(known: dict[str, Any]) -> dict[str, Any]:
    """A remembered order's public shape (a copy: the caller may change it)."""
    return {key: value for key, value in known.items() if key not in _INTERNAL}


def remember(
    host: CellHost, tx: Tx, order: dict[str, Any], vendor_user_id: str, announced: bool = True
) -> None:
    """Once the batch commits, remember ``order`` (public shape) while it waits for a system
    step (``announced``: its inboxes heard of it); forget it otherwise."""
    kept = {**order, "vendor_user_id": vendor_user_id, "announced": announced,
            "items": sorted(order["items"], key=lambda i: str(i["listing_id"]))}  # fmt: skip

    def keep() -> None:
        orders = _orders(host)
        if kept["status"] not in WAITING:
            orders.pop(kept["id"], None)
        elif kept["id"] in orders or len(orders) < MAX_ORDERS:
            orders[kept["id"]] = kept

    tx.then(keep)


def forget(host: CellHost, tx: Tx, order_id: str) -> None:
    """A step taken from SQL: once the batch commits, what this host remembered is stale."""
    tx.then(lambda: _orders(host).pop(order_id, None))


def stepping(host: CellHost, tx: Tx) -> set[str]:
    """The orders whose step the batch in progress (``tx``'s) holds as a deferred row."""
    held = host.ext.get(_STEPPING)
    if held is None or held[0] is not tx.conn:  # a new batch: the last one's rows are gone
        held = host.ext[_STEPPING] = (tx.conn, set())
    found: set[str] = held[1]
    return found


def from_sql(host: CellHost, tx: Tx, order_id: str) -> None:
    """Before a command reads ``order_id`` from SQL: on the fast path, if this batch holds a
    deferred step of it (not written yet), run the batch carefully; and forget the order once
    the batch commits (its step from SQL changes it)."""
    if not tx.careful and order_id in stepping(host, tx):
        raise RunCarefully
    forget(host, tx, order_id)
