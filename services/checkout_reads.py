"""What a checkout reads before its group exists: its lines' listings and the fraud rules'
facts (issue 20), for a buy-now without a statement of its own per checkout.

**Lines** (``Lines``): what a line needs of its listing (vendor, cell, title, price, currency,
place, category) is kept by the gateway for ``checkout_lines_ttl_s``. Not the stock: the owning
shard decides that from its own memory (rule 2). The owner also checks every line against the
listing as it knows it (on sale, the price and currency the group was made with:
actors/market_ops.py ``_check_lines``), so a remembered line can never sell at a price the
listing does not have: a vendor's change the gateway has not seen yet costs a checkout of that
listing a ``conflict`` (changed price or currency, suspended vendor) or ``not_found`` (taken off
sale), the answers the same race gives without the cache, and that refusal makes the gateway
forget the checkout's listings (``forget``), so the next one reads them afresh. What the owner
does not check, a line's title and the category its commission is computed from, is at most
``checkout_lines_ttl_s`` old. A listing's vendor, cell and place never change.

**Scarce** (``Scarce``): a listing a reservation just found out of stock is remembered for
``checkout_scarce_s``, so a checkout with a line of it asks the listing's owner first (a stock
probe, no writes: known short, nothing is written anywhere) and reserves the part holding it
before the others (a sell-out refuses such checkouts at one shard, with nothing reserved and
released at the others). A hint for the order of the work, never for the answer.

**Facts** (``FACTS_MANY``): the facts of every buy-now that arrives while one such read is in
flight are read by one statement (store/coalesce.py), each checkout's as fresh as a statement
of its own would read them (read when its checkout begins, never kept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import asyncpg

MAX_LINES = 50_000
"""Listings a gateway remembers at most (past it, it forgets them all and reads again)."""

FACTS_CAP = 100
"""Counts stop here: above every rule's highest tier (models/risk.py), and what bounds each
count's index scan however busy its key (one test card in a load test, an address a whole
campus shares)."""


def _capped(where: str, distinct: bool = False) -> str:
    """A count of ``order_groups`` matching ``where``, at most ``FACTS_CAP``."""
    what = "DISTINCT buyer_id" if distinct else "1"
    rows = f"SELECT {what} FROM order_groups WHERE {where} LIMIT {FACTS_CAP}"
    return f"(SELECT count(*) FROM ({rows}) c)"


_HOUR = "created_at > now() - interval '1 hour'"
_MONTH = "created_at > now() - interval '30 days'"


def facts_sql(buyer: str, card: str, addr: str, device: str) -> str:
    """The fraud rules' facts (models/risk.py ``RiskFacts``) of one buyer, card, address and
    device (SQL expressions), counted before this checkout: every count is an index range scan
    of the last hour (30 days for accounts sharing a card or a device) of one key, stopped at
    ``FACTS_CAP``; the history looks at the buyer's last 100 completed checkouts."""
    b, c, a, d = buyer, card, addr, device
    return (
        "SELECT extract(epoch FROM now() - u.created_at) AS r_age_s,"
        f" {_capped(f'buyer_id = {b} AND {_HOUR}')} AS r_account_1h,"
        f" {_capped(f'card_fp = {c} AND {_HOUR}')} AS r_card_1h,"
        f" {_capped(f'card_fp = {c} AND buyer_id <> {b} AND {_MONTH}', True)} AS r_card_accounts,"
        f" {_capped(f'client_addr = {a} AND {_HOUR}')} AS r_addr_1h,"
        f" {_capped(f'client_addr = {a} AND buyer_id <> {b} AND {_HOUR}', True)}"
        " AS r_addr_accounts,"
        f" {_capped(f'device = {d} AND {_HOUR}')} AS r_device_1h,"
        f" {_capped(f'device = {d} AND buyer_id <> {b} AND {_MONTH}', True)}"
        " AS r_device_accounts,"
        " (SELECT count(*) FROM (SELECT 1 FROM order_groups g JOIN payments p"
        f"  ON p.group_id = g.id WHERE (g.buyer_id = {b} OR (g.card_fp = {c}"
        f"  AND g.buyer_id <> {b})) AND g.created_at > now() - interval '1 hour'"
        f"  AND p.status = 'declined' LIMIT {FACTS_CAP}) d) AS r_declines,"
        " h.n AS r_paid, h.top AS r_paid_max, lg.buyer_lat AS r_last_lat,"
        " lg.buyer_lng AS r_last_lng, extract(epoch FROM lg.created_at) AS r_last_at"
        " FROM users u"
        " CROSS JOIN LATERAL (SELECT count(*) AS n, max(amount) AS top FROM (SELECT amount"
        f"  FROM order_groups WHERE buyer_id = {b} AND status = 'completed'"
        "  ORDER BY created_at DESC LIMIT 100) x) h"
        " LEFT JOIN LATERAL (SELECT buyer_lat, buyer_lng, created_at FROM order_groups"
        f"  WHERE buyer_id = {b} ORDER BY created_at DESC LIMIT 1) lg ON true"
        f" WHERE u.id = {b}"
    )


FACTS = facts_sql("$1", "$2", "$3", "$4")
"""One checkout's facts: ``$1`` buyer, ``$2`` card digest, ``$3`` address key, ``$4`` device."""

FACTS_MANY = (
    "SELECT v.token, f.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[]) AS v(token, buyer_id, card_fp, client_addr, device) CROSS JOIN LATERAL ("
    + facts_sql("v.buyer_id", "v.card_fp", "v.client_addr", "v.device")
    + ") f"
)
"""The facts of many checkouts in one statement (a ``Coalescer``'s): one row per ``token``
whose buyer exists."""

LINE_COLUMNS = "l.vendor_id, l.cell, l.title, l.price, l.currency, l.lat, l.lng, l.category"
"""What a checkout's line takes of its listing."""

_LISTINGS = (
    f"SELECT l.id AS listing_id, {LINE_COLUMNS} FROM listings l"
    " WHERE l.id = ANY($1::text[]) AND l.active AND l.deleted_at IS NULL"  # on sale only
)


class Lines:
    """Owns this gateway's memory of listings' line columns (``LINE_COLUMNS``, never the
    stock), each kept ``ttl_s`` from its read, at most ``MAX_LINES``; and the reads in flight,
    so concurrent checkouts missing one listing read it once (a sale's first second).
    ``ttl_s`` 0: nothing is kept, every checkout reads its lines."""

    def __init__(self, db: asyncpg.Pool, ttl_s: float) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._rows: dict[str, tuple[float, dict[str, Any]]] = {}
        self._reading: dict[str, asyncio.Future[dict[str, dict[str, Any]]]] = {}
        self.reads = 0
        """Statements sent so far (one per checkout that missed a listing no one was reading)."""
        self.hits = 0
        """Lines answered from memory so far."""

    async def of(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The listings of ``ids`` on sale, by id (``listing_id`` and ``LINE_COLUMNS``): from
        memory, else read (once for every caller that needs them now); a listing not on sale
        is missing from the answer."""
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        for listing_id in ids:
            kept = self._rows.get(listing_id)
            if kept is not None and now - kept[0] < self.ttl_s:
                out[listing_id] = kept[1]
                self.hits += 1
            else:
                missing.append(listing_id)
        if not missing:
            return out
        theirs = {i: self._reading[i] for i in missing if i in self._reading}
        mine = [i for i in missing if i not in theirs]
        if mine:
            out.update(await self._read(mine))
        for listing_id, reading in theirs.items():
            await asyncio.wait([reading])  # its reader's cancellation is not this caller's
            if reading.cancelled():  # that reader's checkout was cancelled: read it here
                out.update(await self._read([listing_id]))
                continue
            found = reading.result()  # the shared read's error, if it failed, is ours too
            if listing_id in found:
                out[listing_id] = found[listing_id]
        return out

    async def _read(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        reading: asyncio.Future[dict[str, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        reading.add_done_callback(_retrieved)  # no one else may wait for it
        for listing_id in ids:
            self._reading[listing_id] = reading
        try:
            self.reads += 1
            rows = await self.db.fetch(_LISTINGS, ids)
            found = {r["listing_id"]: dict(r) for r in rows}
            reading.set_result(found)
        except asyncio.CancelledError:
            reading.cancel()
            raise
        except Exception as err:  # its waiters get the same error
            reading.set_exception(err)
            raise
        finally:
            for listing_id in ids:
                if self._reading.get(listing_id) is reading:
                    del self._reading[listing_id]
        if self.ttl_s > 0:
            if len(self._rows) + len(found) > MAX_LINES:
                self._rows.clear()
            at = time.monotonic()
            for listing_id, row in found.items():
                self._rows[listing_id] = (at, row)
        return found

    def forget(self, ids: Iterable[str]) -> None:
        """Drop what is kept of ``ids`` (a reservation refused one: the listing changed)."""
        for listing_id in ids:
            self._rows.pop(listing_id, None)


class Scarce:
    """Owns this gateway's memory of listings a reservation found out of stock, each for
    ``ttl_s`` from that answer (a vendor's change through this gateway forgets it), at most
    ``MAX_LINES``. A hint for what a checkout asks first (the owner's stock probe, and the
    order of its reservations: models/market.py ``reserve_waves``), never an answer: the owning
    shard decides every line."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._until: dict[str, float] = {}

    def mark(self, listing_id: str) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._until) >= MAX_LINES:
            self._until.clear()
        self._until[listing_id] = time.monotonic() + self.ttl_s

    def forget(self, ids: Iterable[str]) -> None:
        for listing_id in ids:
            self._until.pop(listing_id, None)

    def __contains__(self, listing_id: object) -> bool:
        until = self._until.get(listing_id) if isinstance(listing_id, str) else None
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._until[listing_id]  # type: ignore[arg-type]
        return False


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
