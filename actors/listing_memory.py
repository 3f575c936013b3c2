"""The listings a shard remembers, so a reservation is decided from memory (issue 20).

Only the owner of a listing's cell moves its stock (rule 2), so the owner can know the stock
without asking Postgres: it keeps each listing's row as last committed, and a reservation on the
batch's fast path checks its lines against that (on sale, enough stock, the price and currency
the group saw) and takes the stock in a **per-batch view** (``StockView``: what the batch's
reservations took so far, so the second reservation of a listing in a batch sees what the first
left). When every command of the batch has run, the view defers **one compare-and-set row per
listing** (store/order_writes.py ``TAKEN``, a checked table of the batch statement): from the
stock believed to the stock after the batch. Postgres stays the truth: a listing not as believed
fails the whole statement (nothing of it is written) and the batch runs carefully, every
reservation from SQL; ``CHECK (stock >= 0)`` stays behind it all.

Owns, in ``host.ext`` (cleared with it when the placement changes): each remembered listing's
row (``store.market_store.LISTING_COLUMNS``), at most ``MAX_LISTINGS``, read once without a lock
(committed state: this shard is its only stock writer, and a write it has not committed is
never read here, see ``dirty``) and kept as each batch commits (``Tx.then``). Every other write
of a listing in its owner (a vendor's change, a release's restock, a moderator's removal) goes
through ``from_sql``: it refuses the fast path if the batch already took from that listing in
memory (``RunCarefully``), keeps the batch's later reservations of it on the SQL path (its row
in this transaction is not what was committed), and forgets the listing once committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from actors.group_commit import RunCarefully
from store import order_writes
from store.market_store import LISTING_COLUMNS

if TYPE_CHECKING:
    from actors.cell_host import CellHost
    from actors.group_commit import Tx

MAX_LISTINGS = 20_000
"""Remembered listings at most (past it, a listing not remembered is reserved from SQL): a row
with its description and image list is about a kilobyte, so some 20 MB a shard at most."""

_LISTINGS = "market.listing_rows"
_VIEW = "market.stock_view"

Row = dict[str, Any]
"""A listing's row as committed (the columns of ``LISTING_COLUMNS``)."""


def _rows(host: CellHost) -> dict[str, Row]:
    rows: dict[str, Row] = host.ext.setdefault(_LISTINGS, {})
    return rows


class StockView:
    """One fast-path batch's view of its listings: the row each reservation started from
    (``believed``, as committed), the row as the batch has taken it so far (``now``), and the
    listings this batch wrote from SQL (``dirty``: their committed row is not this
    transaction's, so they are not decided from memory in it)."""

    __slots__ = ("believed", "dirty", "now")

    def __init__(self) -> None:
        self.believed: dict[str, Row] = {}
        self.now: dict[str, Row] = {}
        self.dirty: set[str] = set()

    def rows(self) -> list[Any]:
        """The batch's compare-and-set rows: one per listing it took from."""
        return [
            order_writes.TAKEN.row(listing_id, self.believed[listing_id]["stock"], row["stock"],
                                   row["updated_at"], row["price"], row["currency"])
            for listing_id, row in self.now.items()
        ]  # fmt: skip


def view(tx: Tx) -> StockView | None:
    """The batch's ``StockView`` (made, and its rows' closing step registered, on first use);
    None on the careful path (every command alone, from SQL)."""
    if tx.batch is None:
        return None
    found = tx.batch.state.get(_VIEW)
    if found is None:
        found = tx.batch.state[_VIEW] = StockView()
        tx.batch.closing.append(found.rows)
    assert isinstance(found, StockView)
    return found


VENDOR_READ = 200
"""Listings of a vendor read along with the first of them a reservation asks for (one read per
vendor, not per listing, as a sale starts)."""


async def rows(
    host: CellHost, tx: Tx, ids: Iterable[str], vendor_id: str | None = None
) -> dict[str, Row] | None:
    """The listings ``ids`` as this batch sees them (its takes so far included), those not
    remembered read once (no lock: committed state; with ``vendor_id``, up to ``VENDOR_READ`` of
    that vendor's other listings with them) and remembered; None when the command must go to
    SQL: the careful path, a listing this batch wrote from SQL, or memory full."""
    batch = view(tx)
    if batch is None:
        return None
    wanted = list(ids)
    if batch.dirty.intersection(wanted):
        return None
    known = _rows(host)
    missing = [i for i in wanted if i not in batch.now and i not in known]
    if missing:
        if len(known) + len(missing) > MAX_LISTINGS:
            return None
        assert host.pool is not None  # outside the batch's transaction: it began no write
        found = await host.pool.fetch(_READ, missing, vendor_id, VENDOR_READ)
        for record in found:
            if record["id"] not in known and len(known) < MAX_LISTINGS:
                known[record["id"]] = dict(record)
    out: dict[str, Row] = {}
    for listing_id in wanted:
        row = batch.now.get(listing_id) or known.get(listing_id)
        if row is not None:
            out[listing_id] = row
    return out


_READ = (
    f"SELECT {LISTING_COLUMNS} FROM listings WHERE id = ANY($1::text[])"
    f" UNION ALL (SELECT {LISTING_COLUMNS} FROM listings WHERE vendor_id = $2"
    " AND deleted_at IS NULL AND NOT id = ANY($1::text[]) LIMIT $3)"
)


def committed(host: CellHost, listing_id: str) -> Row | None:
    """The listing as the last committed batch left it, if remembered (no batch's view: a
    read outside any batch, ``order.reserve``'s own check is in its batch)."""
    return _rows(host).get(listing_id)


def take(host: CellHost, tx: Tx, row: Row, qty: int, at: datetime) -> Row:
    """Take ``qty`` of the listing ``row`` (as ``rows`` gave it, checked by the caller) in the
    batch's view at ``at``; the row after. Remembered as the batch commits."""
    batch = view(tx)
    assert batch is not None, "a take from memory is the fast path's"
    listing_id = row["id"]
    batch.believed.setdefault(listing_id, _rows(host).get(listing_id, row))
    after = {**row, "stock": row["stock"] - qty, "updated_at": at}
    batch.now[listing_id] = after

    def keep() -> None:
        known = _rows(host)
        if listing_id in known or len(known) < MAX_LISTINGS:
            known[listing_id] = after

    tx.then(keep)  # the batch's commands keep their rows in order: the last one's stays
    return after


def from_sql(host: CellHost, tx: Tx, listing_ids: Iterable[str]) -> None:
    """Before a command writes ``listing_ids`` from SQL: on the fast path, run the batch
    carefully if it already took from one of them in memory (its compare-and-set would not
    find the stock it believed), and keep the batch's later reservations of them on SQL;
    forget them (now on the careful path, and once committed: what is remembered goes stale)."""
    ids = list(listing_ids)
    batch = view(tx)
    if batch is not None:
        if batch.believed.keys() & set(ids):
            raise RunCarefully
        batch.dirty.update(ids)
    else:
        forget(host, ids)
    tx.then(lambda: forget(host, ids))


def forget(host: CellHost, listing_ids: Iterable[str]) -> None:
    """Drop what is remembered of ``listing_ids`` (read again on their next reservation)."""
    known = _rows(host)
    for listing_id in listing_ids:
        known.pop(listing_id, None)


def forget_vendor(host: CellHost, tx: Tx, vendor_id: str) -> None:
    """Before a write of every listing of ``vendor_id`` (its suspension): ``from_sql`` of the
    ones remembered."""
    from_sql(host, tx, [i for i, row in _rows(host).items() if row["vendor_id"] == vendor_id])


_COLUMNS = tuple(c.strip() for c in LISTING_COLUMNS.split(","))


def remember(host: CellHost, tx: Tx, taken: Iterable[Row]) -> None:
    """Once the batch commits, remember the listings a reservation from SQL ``taken`` (their
    rows after it), as the next reservation of them starts from."""
    kept = [{c: row[c] for c in _COLUMNS} for row in taken]

    def keep() -> None:
        known = _rows(host)
        for row in kept:
            if row["id"] in known or len(known) < MAX_LISTINGS:
                known[row["id"]] = row

    tx.then(keep)
