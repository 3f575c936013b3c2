"""models/webhook_shapes.py: nested provider JSON read by path; missing or null parts read as
empty, parts of the wrong type are a typed bad_request naming the path. Pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from models import webhook_shapes as shape
from models.errors import BadRequest

EVENT: dict[str, Any] = {
    "payload": {"payment": {"entity": {"order_id": "order_1", "amount": 24900}}, "order": None},
    "links": [{"rel": "up", "href": "https://x/captures/C1"}, None],
}


def test_paths_read_what_is_there_and_empty_where_nothing_is() -> None:
    paid = shape.obj(EVENT, "payload", "payment", "entity")
    assert shape.text(paid, "order_id") == "order_1" and shape.whole(paid, "amount") == 24900
    assert shape.obj(EVENT, "payload", "order", "entity") == {}  # a null on the way
    assert shape.obj(EVENT, "payload", "refund", "entity") == {}  # a key gone
    assert shape.obj(None, "payload") == {}
    assert shape.text(paid, "missing") is None and shape.whole(paid, "missing") is None
    assert [link["rel"] for link in shape.objects(EVENT, "links")] == ["up"]  # nulls skipped
    assert shape.first(EVENT, "links")["href"].endswith("C1")
    assert shape.first(EVENT, "absent") == {} and shape.objects({"x": None}, "x") == []


@pytest.mark.parametrize(
    "read",
    [
        lambda: shape.obj({"payload": "payment"}, "payload", "payment"),
        lambda: shape.obj({"payload": [1]}, "payload"),
        lambda: shape.obj("an event", "payload"),
        lambda: shape.text({"id": 5}, "id"),
        lambda: shape.text({"id": {"x": None}}, "id"),
        lambda: shape.text({}, "id", required=True),
        lambda: shape.text({"id": ""}, "id", required=True),
        lambda: shape.whole({"amount": "249"}, "amount"),
        lambda: shape.whole({"amount": True}, "amount"),
        lambda: shape.whole({"amount": 1.5}, "amount"),
        lambda: shape.objects({"links": {"rel": "up"}}, "links"),
        lambda: shape.objects({"links": [1]}, "links"),
        lambda: shape.first({"units": "unit"}, "units"),
    ],
)
def test_a_part_of_the_wrong_type_is_a_bad_request(read: Any) -> None:
    with pytest.raises(BadRequest):
        read()


def test_the_error_names_the_path() -> None:
    with pytest.raises(BadRequest, match=r"payload\.payment: an object expected"):
        shape.obj({"payload": {"payment": "x"}}, "payload", "payment", "entity")
