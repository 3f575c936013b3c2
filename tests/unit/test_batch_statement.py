"""The batch statement's text for each shape of batch (store/batch_write.py): a part with no rows
is left out, and the parameters are numbered as ``write`` gives them."""

from __future__ import annotations

import itertools
import re

import pytest

from store.batch_write import Table, statement

ROWS = Table("messages", (("id", "text"), ("n", "bigint")))
CHECKED = Table(
    "orders",
    (("id", "text"), ("status", "text")),
    statement="UPDATE orders o SET status = u.status FROM {rows} WHERE o.id = u.id RETURNING 1",
    checked=True,
)
CORE = {"h": 4, "e": 4, "i": 5, "r": 3, "p": 4}


def _numbers(sql: str) -> list[int]:
    return sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})


@pytest.mark.parametrize("shape", list(itertools.product((False, True), repeat=4)))
def test_each_part_is_there_only_with_rows_and_the_parameters_run_from_one(
    shape: tuple[bool, bool, bool, bool],
) -> None:
    heads, events, records, pending = shape
    sql = statement(shape, (CHECKED, ROWS))
    wanted = {"h": heads, "e": events, "i": records, "r": pending, "p": pending}
    for name, present in wanted.items():
        assert (f", {name} AS (" in sql) is present, name
    count = 2 + sum(CORE[n] for n, present in wanted.items() if present) + 2 + 2 + 1
    assert _numbers(sql) == list(range(1, count + 1))  # fence, parts, tables, checked count
    assert ("heads_checked" in sql) is heads
    assert ("array_agg(last_offset)" in sql) is pending
    assert "FOR SHARE" in sql and "hl_fence($1::text, $2::bigint)" in sql
    assert "checked1" not in sql and "checked0" in sql  # the checked table's own count


def test_a_chat_batch_is_the_fence_heads_events_records_and_its_table() -> None:
    sql = statement((True, True, True, False), (ROWS,))
    ctes = re.findall(r"(?:WITH|,) (\w+) AS \(", sql)
    assert ctes == ["f", "h", "e", "i", "t0"]
    assert "INSERT INTO streams" not in sql  # no stream row to take offsets from


def test_statements_are_built_once_per_shape() -> None:
    one = statement((True, False, False, False), ())
    assert statement((True, False, False, False), ()) is one
    assert statement((False, False, False, True), ()) != one
