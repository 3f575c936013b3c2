"""services/checkout_reads.py ``Lines`` without Postgres: a line is read once and then kept
for its TTL, concurrent misses of one listing share one read (and its failure, not its reader's
cancellation), a listing
not on sale is never kept, ``forget`` and a TTL of 0 make the next checkout read again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.checkout_reads import FACTS, FACTS_MANY, Lines, Scarce


class FakeDb:
    """Answers the listings read with a row per id in ``on_sale``, after ``delay``; records
    the ids of each read; ``fail`` makes the next read raise."""

    def __init__(self, on_sale: set[str], delay: float = 0.01) -> None:
        self.on_sale, self.delay = on_sale, delay
        self.calls: list[list[str]] = []
        self.fail = False

    async def fetch(self, sql: str, ids: list[str]) -> list[dict[str, Any]]:
        self.calls.append(list(ids))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("the database went away")
        return [{"listing_id": i, "price": 100} for i in ids if i in self.on_sale]


def _lines(db: FakeDb, ttl_s: float = 60.0) -> Lines:
    return Lines(db, ttl_s)  # type: ignore[arg-type]


async def test_a_line_is_read_once_then_answered_from_memory() -> None:
    db = FakeDb({"a", "b"})
    lines = _lines(db)
    assert set(await lines.of(["a", "b"])) == {"a", "b"}
    assert set(await lines.of(["b"])) == {"b"}
    assert db.calls == [["a", "b"]] and lines.reads == 1 and lines.hits == 1


async def test_concurrent_misses_of_one_listing_share_one_read() -> None:
    db = FakeDb({"a", "b"})
    lines = _lines(db)
    answers = await asyncio.gather(lines.of(["a"]), lines.of(["a", "b"]), lines.of(["a"]))
    assert [set(a) for a in answers] == [{"a"}, {"a", "b"}, {"a"}]
    assert db.calls == [["a"], ["b"]]  # "a" once, for all three callers


async def test_a_failed_read_fails_its_waiters_and_keeps_nothing() -> None:
    db = FakeDb({"a"})
    db.fail = True
    lines = _lines(db)
    answers = await asyncio.gather(lines.of(["a"]), lines.of(["a"]), return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in answers)
    db.fail = False
    assert set(await lines.of(["a"])) == {"a"} and len(db.calls) == 2


async def test_a_cancelled_reader_does_not_cancel_those_waiting_on_its_read() -> None:
    db = FakeDb({"a"}, delay=0.05)
    lines = _lines(db)
    reader = asyncio.create_task(lines.of(["a"]))
    await asyncio.sleep(0.01)  # its read is in flight
    waiter = asyncio.create_task(lines.of(["a"]))
    await asyncio.sleep(0.01)  # waiting on that read
    reader.cancel()  # e.g. its client went away
    assert set(await waiter) == {"a"}  # read again by the waiter, not cancelled with it
    assert reader.cancelled() and db.calls == [["a"], ["a"]]


async def test_a_listing_not_on_sale_is_missing_and_never_kept() -> None:
    db = FakeDb({"a"})
    lines = _lines(db)
    assert set(await lines.of(["a", "gone"])) == {"a"}
    assert set(await lines.of(["a", "gone"])) == {"a"}
    assert db.calls == [["a", "gone"], ["gone"]]


@pytest.mark.parametrize("ttl_s", [0.0, 60.0])
async def test_forget_and_a_zero_ttl_read_again(ttl_s: float) -> None:
    db = FakeDb({"a"})
    lines = _lines(db, ttl_s)
    await lines.of(["a"])
    lines.forget(["a"])
    await lines.of(["a"])
    if ttl_s == 0:
        await lines.of(["a"])
        assert len(db.calls) == 3
    else:
        assert len(db.calls) == 2


def test_the_facts_of_many_are_those_of_one_per_row() -> None:
    """The coalesced facts read is the one-checkout read with each row's values in place of
    the parameters (the same counts, caps and windows)."""
    one = FACTS.replace("$1", "v.buyer_id").replace("$2", "v.card_fp")
    one = one.replace("$3", "v.client_addr").replace("$4", "v.device")
    assert one in FACTS_MANY and "$" not in one


def test_a_scarce_listing_is_kept_for_its_ttl_and_forgotten(monkeypatch: Any) -> None:
    now = [1000.0]
    monkeypatch.setattr("services.checkout_reads.time.monotonic", lambda: now[0])
    scarce = Scarce(10.0)
    scarce.mark("l1")
    assert "l1" in scarce and "l2" not in scarce
    now[0] += 9.9
    assert "l1" in scarce
    now[0] += 0.2
    assert "l1" not in scarce  # its time is up
    scarce.mark("l1")
    scarce.forget(["l1"])  # a vendor's change through this gateway
    assert "l1" not in scarce
    off = Scarce(0.0)
    off.mark("l1")
    assert "l1" not in off
