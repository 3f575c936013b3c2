"""The hub fills a stream's gap from the log in its own task: other streams keep flowing, and the
filled stream's listeners still see every event once, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import hub as hub_module
from gateway.hub import Hub
from models.streams import Event


class FakeLog:
    """Stands in for the Postgres pool: stream positions and ``stream_events`` reads, where the
    read of one stream can be held back until the test lets it go."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.fail_reads = 0

    def publish(self, stream: str, offset: int) -> Event:
        event = Event(stream, "e", offset, "chat.message", {"n": offset})
        self.events.setdefault(stream, []).append(event)
        return event

    async def fetchrow(self, query: str, stream: str, *args: Any) -> dict[str, Any]:
        return {"epoch": "e", "last_offset": 0}

    async def fetch(self, query: str, stream: str, after: int, upto: int | None) -> list[Any]:
        gate = self.gates.get(stream)
        if gate is not None:
            await gate.wait()
        if self.fail_reads:
            self.fail_reads -= 1
            raise OSError("connection refused")
        return [
            {"offset": e.offset, "ev": e.ev, "data": e.data}
            for e in self.events.get(stream, [])
            if e.offset > after and (upto is None or e.offset <= upto)
        ]


class Collect:
    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = {}

    def on_event(self, stream: str, out: Event) -> None:
        self.seen.setdefault(stream, []).append(out.offset)

    def on_ephemeral(self, stream: str, out: Any) -> None:
        pass


async def make_hub(log: FakeLog) -> tuple[Hub, Collect]:
    hub = Hub(
        None,  # type: ignore[arg-type]
        log,  # type: ignore[arg-type]
        lambda event, text: event,
        lambda frame, text: frame,
        lambda message: None,
    )
    listener = Collect()
    for stream in ("room:a", "room:b"):
        await hub.join(stream, listener)
    return hub, listener


async def until(check: Any) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_a_slow_fill_holds_only_its_own_stream() -> None:
    log = FakeLog()
    hub, listener = await make_hub(log)
    log.gates["room:a"] = asyncio.Event()
    one, two, three = (log.publish("room:a", n) for n in (1, 2, 3))
    hub._accept("room:a", two, None)  # 1 was lost: a gap, filled from the log
    hub._accept("room:a", three, None)  # held behind the fill
    for n in (1, 2):
        hub._accept("room:b", log.publish("room:b", n), None)
    assert listener.seen == {"room:b": [1, 2]}  # b flows while a's read waits
    log.gates["room:a"].set()
    await until(lambda: listener.seen.get("room:a") == [1, 2, 3])
    hub._accept("room:a", one, None)  # a late copy: a duplicate now
    hub._accept("room:a", log.publish("room:a", 4), None)
    assert listener.seen["room:a"] == [1, 2, 3, 4]
    assert hub.gap_fills == 1
    await hub.stop()


async def test_a_failing_read_is_retried_and_overflowing_holds_are_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "HELD_MAX", 2)
    log = FakeLog()
    hub, listener = await make_hub(log)
    log.fail_reads = 1
    log.gates["room:a"] = asyncio.Event()
    events = [log.publish("room:a", n) for n in range(1, 8)]
    for event in events[2:]:  # 1 and 2 lost; 3..7 arrive while the fill waits (more than held)
        hub._accept("room:a", event, None)
    log.gates["room:a"].set()
    await until(lambda: listener.seen.get("room:a") == list(range(1, 8)))
    await hub.stop()


async def test_one_message_carries_a_batch_of_a_streams_events_in_order() -> None:
    """store/fanout.py publishes a batch's events of one stream as one message, a frame per line;
    the hub delivers each of them, in order (texts with newlines stay one line each)."""
    log = FakeLog()
    hub, listener = await make_hub(log)
    events = [Event("room:a", "e", n, "chat.message", {"text": f"line\n{n}"}) for n in (1, 2, 3)]
    text = "\n".join(e.frame_json for e in events)
    assert text.count("\n") == 2
    await hub._dispatch("hl:s:room:a", text.encode())
    typing = '{"ev":"chat.typing","stream":"room:a","data":{}}'
    await hub._dispatch("hl:s:room:a", typing.encode())
    assert listener.seen == {"room:a": [1, 2, 3]}
    await hub.stop()


async def test_listeners_come_and_go_one_or_many() -> None:
    """A stream with one listener keeps it without a set; a second makes it a set; the last to
    leave ends the stream (and its subscription); each listener joins once however often."""
    log = FakeLog()
    hub, first = await make_hub(log)
    second = Collect()
    await hub.join("room:a", first)  # again: still once
    hub._accept("room:a", log.publish("room:a", 1), None)
    await hub.join("room:a", second)
    hub._accept("room:a", log.publish("room:a", 2), None)
    assert first.seen["room:a"] == [1, 2] and second.seen["room:a"] == [2]
    await hub.leave("room:a", first)
    hub._accept("room:a", log.publish("room:a", 3), None)
    assert first.seen["room:a"] == [1, 2] and second.seen["room:a"] == [2, 3]
    await hub.leave("room:a", second)
    assert hub.streams == 1  # room:b is still followed
    await hub.leave("room:b", first)
    assert hub.streams == 0
    await hub.stop()
