"""The per-batch view of the stock a batch's reservations took (actors/listing_memory.py), without
Ray or Postgres: one compare-and-set row per listing per batch, from the stock believed to the
stock after every take; a write from SQL of a listing taken in memory refuses the fast path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from actors import listing_memory
from actors.group_commit import Batch, RunCarefully, Tx
from store import order_writes


class _Host:
    def __init__(self) -> None:
        self.ext: dict[str, Any] = {}
        self.pool = None  # every listing of these tests is remembered already


def _remembered(host: _Host, listing_id: str, stock: int) -> dict[str, Any]:
    row = {"id": listing_id, "vendor_id": "v1", "stock": stock, "price": 300, "currency": "EUR",
           "active": True, "deleted_at": None, "vendor_suspended": False,
           "updated_at": datetime(2026, 1, 1, tzinfo=UTC)}  # fmt: skip
    host.ext.setdefault("market.listing_rows", {})[listing_id] = row
    return row


def _tx(batch: Batch | None) -> Tx:
    return Tx(cast(Any, None), careful=batch is None, batch=batch)


def _rows(host: _Host, tx: Tx, *ids: str) -> dict[str, Any] | None:
    return asyncio.run(listing_memory.rows(cast(Any, host), tx, ids))


def _commit(*txs: Tx) -> None:
    for tx in txs:
        for step in tx.after_commit:
            step()


def test_two_takes_of_a_listing_in_a_batch_are_one_compare_and_set_row() -> None:
    host, batch = _Host(), Batch()
    _remembered(host, "a", 10)
    at = datetime(2026, 12, 2, tzinfo=UTC)
    first, second = _tx(batch), _tx(batch)
    row = (_rows(host, first, "a") or {})["a"]
    listing_memory.take(cast(Any, host), first, row, 3, at)
    seen = (_rows(host, second, "a") or {})["a"]
    assert seen["stock"] == 7  # the second sees what the first left
    listing_memory.take(cast(Any, host), second, seen, 2, at)
    rows = [r for close in batch.closing for r in close()]
    assert len(rows) == 1 and rows[0].table is order_writes.TAKEN
    assert rows[0].values == ("a", 10, 5, at, 300, "EUR")
    assert host.ext["market.listing_rows"]["a"]["stock"] == 10  # not before the commit
    _commit(first, second)
    assert host.ext["market.listing_rows"]["a"]["stock"] == 5


def test_a_give_back_is_a_negative_take() -> None:
    host, batch = _Host(), Batch()
    row = _remembered(host, "b", 0)
    tx = _tx(batch)
    after = listing_memory.take(cast(Any, host), tx, row, -2, datetime.now(UTC))
    assert after["stock"] == 2
    assert [r.values[:3] for close in batch.closing for r in close()] == [("b", 0, 2)]


def test_a_write_from_sql_after_a_take_runs_the_batch_carefully() -> None:
    host, batch = _Host(), Batch()
    row = _remembered(host, "c", 4)
    listing_memory.take(cast(Any, host), _tx(batch), row, 1, datetime.now(UTC))
    with pytest.raises(RunCarefully):
        listing_memory.from_sql(cast(Any, host), _tx(batch), ["c"])


def test_a_listing_written_from_sql_is_not_decided_from_memory_in_that_batch() -> None:
    host, batch = _Host(), Batch()
    _remembered(host, "d", 4)
    sql = _tx(batch)
    listing_memory.from_sql(cast(Any, host), sql, ["d"])
    assert _rows(host, _tx(batch), "d") is None  # its row in this transaction is not memory's
    _commit(sql)
    assert "d" not in host.ext["market.listing_rows"]  # forgotten once committed


def test_the_careful_path_never_decides_from_memory_and_forgets_at_once() -> None:
    host = _Host()
    _remembered(host, "e", 4)
    careful = _tx(None)
    assert _rows(host, careful, "e") is None
    listing_memory.from_sql(cast(Any, host), careful, ["e"])
    assert "e" not in host.ext["market.listing_rows"]


def test_a_rolled_back_batch_leaves_memory_as_it_was() -> None:
    host, batch = _Host(), Batch()
    row = _remembered(host, "f", 6)
    listing_memory.take(cast(Any, host), _tx(batch), row, 6, datetime.now(UTC))
    # no commit: the after-commit steps never run
    assert host.ext["market.listing_rows"]["f"]["stock"] == 6
