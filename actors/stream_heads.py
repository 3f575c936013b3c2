"""Offsets of the streams a shard writes alone, handed out in memory on the fast path.

Rule 2 makes the owner of a cell the only writer of its feed stream and of its rooms' streams,
so the owner can number their events itself instead of reserving each offset with a row lock
and a round trip. Postgres stays the truth: the batch's one write moves every head with a
compare-and-set, which fails if a head is not where this shard believed (another writer after a
placement change, a stale cache). Then the batch runs carefully, reserving offsets in SQL, and
the heads are forgotten and reloaded on next use.
"""

from __future__ import annotations

from store import events as event_log
from store.batch_write import HeadChange
from store.db import Conn


class StreamHeads:
    """Owns, per single-writer stream this shard has written, the last committed (epoch, offset)
    and the offsets handed out by the batch in progress (one batch at a time: the committer's).

    Guarantees: a batch's offsets of a stream are consecutive after its committed head; they
    become the head only through ``settle(True)`` after the batch committed, and any other
    outcome forgets every head (the next use reads it from Postgres again).
    """

    def __init__(self, max_streams: int = 100_000) -> None:
        self._committed: dict[str, tuple[str, int]] = {}
        self._taken: dict[str, int] = {}
        self._max = max_streams
        self._forget = False

    async def take(self, conn: Conn, stream: str, count: int) -> tuple[str, int]:
        """The next ``count`` offsets of ``stream`` in this batch: (epoch, first offset)."""
        head = self._committed.get(stream)
        if head is None:
            position = await event_log.position(conn, stream)
            head = self._committed[stream] = (position.epoch, position.offset)
        epoch, last = head
        first = self._taken.get(stream, last) + 1
        self._taken[stream] = first + count - 1
        return epoch, first

    def changes(self) -> list[HeadChange]:
        """Every head this batch moves, for the compare-and-set write."""
        return [(s, *self._committed[s], new) for s, new in self._taken.items()]

    def settle(self, committed: bool) -> None:
        """The batch's outcome: committed (its offsets are the heads now) or not (forget all)."""
        if committed and not self._forget and len(self._committed) <= self._max:
            for stream, last in self._taken.items():
                self._committed[stream] = (self._committed[stream][0], last)
        else:
            self._committed.clear()
        self._taken.clear()
        self._forget = False

    def forget(self) -> None:
        """The placement changed: what this shard knows of any head may be stale (a stream it
        wrote may have had another writer meanwhile). Forgotten now if no batch holds offsets,
        else when that batch settles; either way the next use reads Postgres again."""
        if self._taken:
            self._forget = True
        else:
            self._committed.clear()

    def __len__(self) -> int:
        return len(self._committed)
