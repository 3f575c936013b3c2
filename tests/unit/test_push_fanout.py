"""Events pushed by shards on the direct channel (``shard_push``): the hub takes them as it
takes Redis messages, catches up from the log after a shard's channel was down, and keeps the
live events that arrive while a stream's first follower reads its position; the shard's
channel writes each batch's events once to every gateway that asked, and cuts off one that
stopped reading."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from actors import channel as channel_module
from actors.channel import PUSH, ChannelServer
from models.streams import Event
from store.fanout import by_stream
from tests.unit.test_hub_fill import FakeLog, make_hub, until


def push_items(events: list[Event]) -> list[list[str]]:
    return [list(kv) for kv in by_stream(events).items()]


async def test_pushed_events_reach_followers_in_order_and_others_are_dropped() -> None:
    log = FakeLog()
    hub, listener = await make_hub(log)
    events = [log.publish("room:a", n) for n in (1, 2)] + [log.publish("room:z", 1)]
    hub.pushed("shard-0", push_items(events))  # room:z: nobody here follows it
    assert listener.seen == {"room:a": [1, 2]}
    assert hub.pushed_events == 2
    hub.pushed("shard-0", [["room:a", "not json"]])  # malformed: logged, the rest from the log
    hub.pushed("shard-0", push_items([log.publish("room:a", 3)]))
    assert listener.seen == {"room:a": [1, 2, 3]}
    await hub.stop()


async def test_a_resync_reads_what_a_down_channel_missed_from_the_log() -> None:
    log = FakeLog()
    hub, listener = await make_hub(log)
    log.publish("room:a", 1)  # committed while the shard's channel was down: never pushed
    log.publish("room:b", 1)
    hub.resync("shard-1")
    await until(lambda: listener.seen == {"room:a": [1], "room:b": [1]})
    assert hub.resyncs == 1
    await hub.stop()


async def test_events_arriving_while_the_first_follower_reads_the_position_are_kept() -> None:
    """Before, an event that arrived while the position was being read was dropped: if it
    committed after the read, the follower missed it until the stream's next event."""
    log = FakeLog()
    hub, listener = await make_hub(log)
    gate = asyncio.Event()
    real = log.fetchrow

    async def slow_position(query: str, stream: str, *args: Any) -> dict[str, Any]:
        row = await real(query, stream, *args)  # read: offset 0
        await gate.wait()
        return row

    log.fetchrow = slow_position  # type: ignore[method-assign]
    joining = asyncio.create_task(hub.join("room:c", listener))
    await asyncio.sleep(0.01)
    hub.pushed("shard-0", push_items([log.publish("room:c", 1)]))  # committed after the read
    gate.set()
    position = await joining
    assert position.offset == 0
    assert listener.seen.get("room:c") == [1]
    await hub.stop()


class FakeTransport:
    def __init__(self, buffered: int = 0) -> None:
        self.buffered = buffered

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeWriter:
    def __init__(self, buffered: int = 0) -> None:
        self.transport = FakeTransport(buffered)
        self.data: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class FakeHost:
    name = "shard-0"


async def test_the_shard_pushes_a_batch_once_to_each_gateway_and_cuts_off_a_stuck_one(
    monkeypatch: Any,
) -> None:
    server = ChannelServer(FakeHost(), "127.0.0.1")  # type: ignore[arg-type]
    reading, stuck = FakeWriter(), FakeWriter(buffered=10_000)
    monkeypatch.setattr(channel_module, "PUSH_BUFFER_MAX", 1_000)
    server._pushed_to.update({reading, stuck})  # type: ignore[arg-type]
    events = [Event("room:a", "e", n, "chat.message", {"n": n}) for n in (1, 2)]
    server.push(events)
    server.push([])  # nothing committed: nothing written
    server._send(reading, b"the answers")  # type: ignore[arg-type]  # released in the same turn
    assert not reading.data  # written at the end of the turn...
    await asyncio.sleep(0)
    assert len(reading.data) == 1 and stuck.closed and not stuck.data  # ...in one write
    pushed = reading.data[0][: -len(b"the answers")]
    body = msgpack.unpackb(pushed[4:], raw=False)
    assert body == [PUSH, "events", [["room:a", "\n".join(e.frame_json for e in events)]]]
    assert reading.data[0].endswith(b"the answers")
    assert (server.pushes, server.push_cutoffs, server.push_gateways) == (1, 1, 1)
