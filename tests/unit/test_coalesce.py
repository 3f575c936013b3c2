"""store/coalesce.py without Postgres: a lone row goes at once, rows that arrive while a
statement is in flight go together in the next, a failed batch retries each row alone so only
the bad row's caller fails, and a caller gone still has its row written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from store.coalesce import Coalescer


class FakeDb:
    """Records each statement's arrays; answers one row per id, after ``delay``; ids in
    ``bad`` make the statement fail, as a constraint would."""

    def __init__(self, delay: float = 0.01, bad: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[list[Any]]] = []
        self.delay, self.bad = delay, bad

    async def fetch(self, sql: str, *columns: list[Any]) -> list[dict[str, Any]]:
        self.calls.append(list(columns))
        await asyncio.sleep(self.delay)
        ids = columns[0]
        if self.bad & set(ids):
            raise ValueError(f"bad row in {ids}")
        return [{"id": i, "value": v} for i, v in zip(ids, columns[1], strict=True)]


def _coalescer(db: FakeDb, max_rows: int = 256) -> Coalescer:
    return Coalescer(db, "test", "SQL", lambda row: row["id"], max_rows=max_rows)  # type: ignore[arg-type]


async def test_a_lone_row_is_sent_at_once_and_answered_with_its_row() -> None:
    db = FakeDb()
    row = await _coalescer(db).run("a", "a", 1)
    assert row == {"id": "a", "value": 1} and db.calls == [[["a"], [1]]]


async def test_rows_arriving_while_one_is_in_flight_share_the_next_statement() -> None:
    db = FakeDb(delay=0.05)
    co = _coalescer(db)
    first = asyncio.create_task(co.run("a", "a", 1))
    await asyncio.sleep(0.01)  # "a" is in flight now
    rest = [asyncio.create_task(co.run(k, k, n)) for n, k in enumerate("bcd")]
    answers = await asyncio.gather(first, *rest)
    assert [a["id"] for a in answers] == ["a", "b", "c", "d"]
    assert [call[0] for call in db.calls] == [["a"], ["b", "c", "d"]]
    assert (co.statements, co.rows) == (2, 4)


async def test_at_most_max_rows_per_statement() -> None:
    db = FakeDb(delay=0.02)
    co = _coalescer(db, max_rows=2)
    first = asyncio.create_task(co.run("a", "a", 0))
    await asyncio.sleep(0.005)
    rest = [asyncio.create_task(co.run(k, k, 0)) for k in "bcde"]
    await asyncio.gather(first, *rest)
    assert [call[0] for call in db.calls] == [["a"], ["b", "c"], ["d", "e"]]


async def test_a_bad_row_fails_only_its_caller() -> None:
    db = FakeDb(delay=0.02, bad=frozenset({"c"}))
    co = _coalescer(db)
    first = asyncio.create_task(co.run("a", "a", 0))
    await asyncio.sleep(0.005)
    rest = [asyncio.create_task(co.run(k, k, 0)) for k in "bcd"]
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert [r["id"] for r in results if isinstance(r, dict)] == ["a", "b", "d"]
    assert isinstance(results[2], ValueError)
    assert [call[0] for call in db.calls] == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]


async def test_a_row_the_statement_did_not_return_answers_none() -> None:
    class Filtered(FakeDb):
        async def fetch(self, sql: str, *columns: list[Any]) -> list[dict[str, Any]]:
            rows = await super().fetch(sql, *columns)
            return [r for r in rows if r["id"] != "gone"]

    co = _coalescer(Filtered())
    assert await co.run("gone", "gone", 1) is None


async def test_a_caller_gone_still_has_its_row_written() -> None:
    db = FakeDb(delay=0.05)
    co = _coalescer(db)
    task = asyncio.create_task(co.run("a", "a", 1))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await co.run("b", "b", 2) == {"id": "b", "value": 2}
    assert [call[0] for call in db.calls] == [["a"], ["b"]]


async def test_two_rows_of_one_key_go_in_order_in_separate_statements() -> None:
    db = FakeDb(delay=0.02)
    co = _coalescer(db)
    first = asyncio.create_task(co.run("a", "a", 0))
    await asyncio.sleep(0.005)
    rest = [asyncio.create_task(co.run(k, k, n)) for n, k in enumerate("bbc", start=1)]
    answers = await asyncio.gather(first, *rest)
    assert [call[0] for call in db.calls] == [["a"], ["b", "c"], ["b"]]
    assert [call[1] for call in db.calls][1:] == [[1, 3], [2]]  # b's first row, then its second
    assert [a["value"] for a in answers] == [0, 1, 2, 3]
    assert (co.statements, co.rows) == (3, 4)
