"""A session follows streams through the hub with little state of its own (gateway/sessions.py):
a replay's live events are buffered and merged, a session in step with the hub keeps only the
stream's epoch, one answered ahead of the hub keeps a cursor until the hub catches up, and an
epoch change still asks the client to recover. An idle session holds no queue, no writer and
no batch, and what it follows costs little per stream."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

from gateway.hub import Cursor
from gateway.sessions import (
    CLOSE_SERVER_RESTART,
    OutEphemeral,
    OutEvent,
    Session,
    WriteBatch,
    ws_frame,
)
from models.auth import Principal
from models.streams import Event


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


class FakeWs:
    closed = False
    close_code = None

    async def close(self, code: int, message: bytes) -> None:
        pass


def session() -> tuple[Session, FakeTransport]:
    transport = FakeTransport()
    principal = Principal("u1", frozenset(), "sid")
    s = Session(FakeWs(), principal, "s1", False, 8, transport)  # type: ignore[arg-type]
    return s, transport


def out(offset: int, epoch: str = "e") -> OutEvent:
    event = Event("room:a", epoch, offset, "chat.message", {"n": offset})
    return OutEvent(event, event.frame_json)


def offsets(transport: FakeTransport) -> list[int]:
    return [int(w.rsplit(b'"n":', 1)[1].split(b"}")[0]) for w in transport.writes]


def test_a_replay_merges_its_buffered_live_events_then_follows_in_step() -> None:
    s, transport = session()
    s.begin_follow("room:a")
    for n in (3, 4):  # live events arriving while the subscribe reads the log up to 3
        s.on_event("room:a", out(n))
    assert transport.writes == []
    s.finish_follow("room:a", "e", 3, hub_offset=2)  # the hub had delivered 2 when it joined
    assert offsets(transport) == [4]  # 3 came with the replay: not twice
    assert s.followed["room:a"] == "e"  # in step with the hub: nothing but the epoch
    s.on_event("room:a", out(5))
    assert offsets(transport) == [4, 5]


def test_a_session_answered_ahead_of_the_hub_skips_until_it_catches_up() -> None:
    s, transport = session()
    s.begin_follow("room:a")
    s.finish_follow("room:a", "e", 7, hub_offset=5)  # committed 7, the hub has delivered 5
    assert isinstance(s.followed["room:a"], Cursor)
    for n in (6, 7, 8, 9):
        s.on_event("room:a", out(n))
    assert offsets(transport) == [8, 9]
    assert s.followed.get("room:a") == "e"  # delivered what the hub did: in step from then on


def test_an_epoch_change_asks_the_client_to_recover() -> None:
    async def run() -> Session:
        s, _ = session()
        s.begin_follow("room:a")
        s.finish_follow("room:a", "e", 1, hub_offset=1)
        s.on_event("room:a", out(1, epoch="f"))
        await asyncio.sleep(0)
        return s

    s = asyncio.run(run())
    assert s.closing and s.closed_with == CLOSE_SERVER_RESTART


def test_ephemeral_events_reach_only_live_streams() -> None:
    s, transport = session()
    s.begin_follow("room:a")
    frame = {"ev": "chat.typing", "stream": "room:a", "data": {}}
    typing = OutEphemeral(frame, '{"ev":"chat.typing"}')
    s.on_ephemeral("room:a", typing)  # replaying: dropped
    s.on_ephemeral("room:b", typing)  # not followed: dropped
    assert transport.writes == []
    s.finish_follow("room:a", "e", 0, hub_offset=0)
    s.on_ephemeral("room:a", typing)
    assert transport.writes == [ws_frame('{"ev":"chat.typing"}')]


def test_an_idle_followed_session_holds_little() -> None:
    """What 9 live followed streams cost per session, besides the objects every socket shares:
    no queue, writer or batch until needed, no per-stream object once in step."""
    streams = [f"feed:{i}" for i in range(8)] + ["user:u1"]
    transport: Any = FakeTransport()
    batch = WriteBatch()
    principal = Principal("u1", frozenset(), "sid")
    ws: Any = FakeWs()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        sessions = []
        for i in range(200):
            s = Session(ws, principal, f"s{i}", False, 1024, transport, batch)
            for stream in streams:
                s.begin_follow(stream)
                s.finish_follow(stream, "e", 0, hub_offset=0)
            sessions.append(s)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    per_session = sum(d.size_diff for d in after.compare_to(before, "filename")) / len(sessions)
    assert all(s.queued == 0 and s._queue is None and s._writer is None for s in sessions)
    assert per_session < 700, f"an idle session holds {per_session:.0f} B"
