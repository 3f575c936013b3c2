import pytest

from models.errors import BadRequest
from models.feed import CellFeed, FeedCursor, merge_pages


def post(i: int, cell: str = "c") -> dict:
    return {"id": f"{cell}.{i:016d}", "created_ms": 1000 + i, "like_count": 0}


def test_add_keeps_newest_first_and_evicts_beyond_capacity() -> None:
    feed = CellFeed.loaded("c", 3, [])
    for i in (1, 3, 2, 4):
        feed.add(post(i))
    assert [p["created_ms"] for p in feed.posts] == [1004, 1003, 1002]
    assert feed.complete is False


def test_page_from_memory_is_final_only_when_enough_or_complete() -> None:
    feed = CellFeed.loaded("c", 10, [post(i) for i in (5, 4, 3)])
    assert feed.complete
    items, final = feed.page(None, 2)
    assert [p["created_ms"] for p in items] == [1005, 1004] and final
    items, final = feed.page(FeedCursor.after(items[-1]), 5)
    assert [p["created_ms"] for p in items] == [1003] and final
    partial = CellFeed.loaded("c", 3, [post(i) for i in (9, 8, 7)])
    assert partial.complete is False
    items, final = partial.page(FeedCursor.after(post(8)), 5)
    assert [p["created_ms"] for p in items] == [1007] and not final


def test_cursor_round_trip_and_garbage() -> None:
    cursor = FeedCursor(123456, "8a2a.abc")
    assert FeedCursor.decode(cursor.encode()) == cursor
    for junk in ("!!!", "bm90LWEtY3Vyc29y", ""):
        with pytest.raises(BadRequest):
            FeedCursor.decode(junk)


def test_merge_pages_orders_across_cells_and_sets_cursor() -> None:
    a = [post(9, "a"), post(5, "a")]
    b = [post(8, "b"), post(7, "b"), post(1, "b")]
    items, cursor = merge_pages([a, b], 3)
    assert [p["created_ms"] for p in items] == [1009, 1008, 1007]
    assert cursor == FeedCursor.after(items[-1]).encode()
    items, cursor = merge_pages([a, b], 10)
    assert len(items) == 5 and cursor is None


def test_update_and_remove() -> None:
    feed = CellFeed.loaded("c", 5, [post(1)])
    feed.update(post(1)["id"], like_count=3)
    assert feed.get(post(1)["id"])["like_count"] == 3
    feed.remove(post(1)["id"])
    assert feed.get(post(1)["id"]) is None
