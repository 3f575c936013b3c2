"""StreamHeads: offsets handed out in memory, kept only when the batch commits."""

from __future__ import annotations

from typing import Any

from actors.stream_heads import StreamHeads


class FakeConn:
    """Answers ``store.events.position``'s read with a fixed head; counts the reads."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.reads = 0

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        self.reads += 1
        return {"epoch": "e1", "last_offset": self.last}


async def test_offsets_continue_within_a_batch_and_after_a_commit() -> None:
    heads, conn = StreamHeads(), FakeConn(last=10)
    assert await heads.take(conn, "room:r", 1) == ("e1", 11)  # type: ignore[arg-type]
    assert await heads.take(conn, "room:r", 3) == ("e1", 12)  # type: ignore[arg-type]
    assert heads.changes() == [("room:r", "e1", 10, 14)]
    heads.settle(True)
    assert heads.changes() == []
    assert await heads.take(conn, "room:r", 1) == ("e1", 15)  # type: ignore[arg-type]
    assert conn.reads == 1  # read from Postgres once


async def test_a_batch_that_did_not_commit_forgets_every_head() -> None:
    heads, conn = StreamHeads(), FakeConn(last=3)
    await heads.take(conn, "feed:c", 2)  # type: ignore[arg-type]
    heads.settle(False)
    assert len(heads) == 0 and heads.changes() == []
    conn.last = 7  # what Postgres holds now
    assert await heads.take(conn, "feed:c", 1) == ("e1", 8)  # type: ignore[arg-type]


async def test_the_cache_is_bounded() -> None:
    heads, conn = StreamHeads(max_streams=2), FakeConn(last=0)
    for name in ("room:a", "room:b", "room:c"):
        await heads.take(conn, name, 1)  # type: ignore[arg-type]
    heads.settle(True)
    assert len(heads) == 0  # over the bound: dropped, reloaded on next use
