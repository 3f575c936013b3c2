"""Frames pushed to a socket in one loop turn leave in one write, in order (gateway/sessions)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.sessions import DIRECT_WRITE_MAX, Session, WriteBatch, ws_frame
from models.auth import Principal


class FakeTransport:
    """Records writes; holds ``unsent`` bytes as if the peer were not reading."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.unsent = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True


class FakeWs:
    closed = False
    close_code = None

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, message: bytes) -> None:
        self.sent.append(("close", code))


def session(batch: WriteBatch | None) -> tuple[Session, FakeTransport, FakeWs]:
    transport, ws = FakeTransport(), FakeWs()
    principal = Principal("u1", frozenset(), "sid")
    s = Session(ws, principal, "s1", False, 8, transport, batch)  # type: ignore[arg-type]
    return s, transport, ws


async def test_one_turn_of_frames_is_one_write_in_push_order() -> None:
    batch = WriteBatch()
    a, ta, _ = session(batch)
    b, tb, _ = session(batch)
    for i in range(3):
        a.push(f"a{i}")
    b.push("b0")
    assert ta.writes == [] and tb.writes == []  # nothing before the turn ends
    await asyncio.sleep(0)
    assert ta.writes == [ws_frame("a0") + ws_frame("a1") + ws_frame("a2")]
    assert tb.writes == [ws_frame("b0")]
    assert (batch.writes, batch.frames) == (2, 4)
    a.push("a3")  # a later turn: a write of its own
    await asyncio.sleep(0)
    assert ta.writes[1:] == [ws_frame("a3")]


async def test_batched_frames_go_before_a_queued_one_and_before_close() -> None:
    batch = WriteBatch()
    s, transport, ws = session(batch)
    s.push("first")
    transport.unsent = DIRECT_WRITE_MAX + 1  # the peer stopped reading: the next frame queues
    s.push("second")
    assert transport.writes == [ws_frame("first")]  # written before "second" was queued
    assert s.queued == 1
    await asyncio.sleep(0)
    assert ws.sent == ["second"]  # the writer took the queued frame after it

    t, transport2, ws2 = session(batch)
    t.push("last words")
    t.close(4100, "slow consumer")
    assert transport2.writes == [ws_frame("last words")]
    for _ in range(5):  # the close runs in a task of its own
        await asyncio.sleep(0)
    assert ws2.sent == [("close", 4100)]
    assert transport2.writes == [ws_frame("last words")]  # the flush found nothing left


async def test_without_a_batch_frames_are_written_at_once() -> None:
    s, transport, _ = session(None)
    s.push("now")
    assert transport.writes == [ws_frame("now")]


async def test_a_failing_socket_does_not_hold_back_the_others() -> None:
    batch = WriteBatch()
    broken, bad_transport, _ = session(batch)
    fine, good_transport, _ = session(batch)

    def refuse(data: bytes) -> None:
        raise RuntimeError("transport gone")

    bad_transport.write = refuse  # type: ignore[method-assign]
    broken.push("lost")
    fine.push("kept")
    await asyncio.sleep(0)
    assert good_transport.writes == [ws_frame("kept")]
    bad_transport.write = good_transport.write  # type: ignore[method-assign]
    broken.push("next turn")  # not stuck behind the failed write: batched and written again
    await asyncio.sleep(0)
    assert good_transport.writes[-1] == ws_frame("next turn")
