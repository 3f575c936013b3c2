"""The router's per-shard batcher: calls in flight are capped, and what waits travels together."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from models.errors import Unavailable
from services.router import _Batcher


class FakeShard:
    """Records every call; each call waits until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.waited: list[float] = []
        self.gates: list[asyncio.Event] = []
        self.fail_next: Exception | None = None

    async def send(self, commands: list[dict[str, Any]], waited_s: float) -> list[dict[str, Any]]:
        self.calls.append([c["n"] for c in commands])
        self.waited.append(waited_s)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        return [{"ok": True, "data": {"n": c["n"]}} for c in commands]

    def release(self, index: int) -> None:
        self.gates[index].set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_commands_wait_for_a_free_slot_and_then_leave_together() -> None:
    shard = FakeShard()
    batcher = _Batcher(shard.send, 0.0, max_batch=100, max_in_flight=1)
    first = batcher.submit({"n": 0})
    await asyncio.sleep(0.01)
    assert shard.calls == [[0]] and batcher.in_flight == 1
    waiting = [batcher.submit({"n": n}) for n in range(1, 6)]
    await asyncio.sleep(0.01)
    assert shard.calls == [[0]], "no second call while the only slot is out"
    shard.release(0)
    assert (await first)["data"] == {"n": 0}
    await settle()
    assert shard.calls == [[0], [1, 2, 3, 4, 5]]
    shard.release(1)
    replies = await asyncio.gather(*waiting)
    assert [r["data"]["n"] for r in replies] == [1, 2, 3, 4, 5]
    await settle()
    assert batcher.in_flight == 0 and len(shard.calls) == 2


async def test_two_slots_and_the_batch_size_cap() -> None:
    shard = FakeShard()
    batcher = _Batcher(shard.send, 0.0, max_batch=3, max_in_flight=2)
    futures = [batcher.submit({"n": n}) for n in range(8)]
    await settle()
    # A full batch leaves at once; two calls at most; the rest waits for a slot.
    assert shard.calls == [[0, 1, 2], [3, 4, 5]]
    shard.release(0)
    await settle()
    assert shard.calls[2] == [6, 7]
    shard.release(1)
    shard.release(2)
    assert [f["data"]["n"] for f in await asyncio.gather(*futures)] == list(range(8))


async def test_a_failed_call_answers_its_batch_and_frees_its_slot() -> None:
    shard = FakeShard()
    batcher = _Batcher(shard.send, 0.0, max_batch=10, max_in_flight=1)
    shard.fail_next = RuntimeError("actor died")
    doomed = batcher.submit({"n": 1})
    await settle()
    later = batcher.submit({"n": 2})
    shard.release(0)
    with pytest.raises(Unavailable):
        await doomed
    await settle()
    shard.release(1)
    assert (await later)["data"] == {"n": 2}
    assert batcher.in_flight == 0


async def test_a_batch_says_how_long_its_oldest_command_waited_here() -> None:
    """The shard's group-commit window counts it (actors/group_commit.py ``enqueue``)."""
    shard = FakeShard()
    batcher = _Batcher(shard.send, 0.02, max_batch=100, max_in_flight=1)
    first = batcher.submit({"n": 0})  # waits the 20 ms flush window alone
    await asyncio.sleep(0.04)
    assert shard.calls == [[0]] and 0.015 <= shard.waited[0] < 0.04
    behind = [batcher.submit({"n": 1})]
    await asyncio.sleep(0.05)  # the slot is out: it waits for the first call to return
    behind.append(batcher.submit({"n": 2}))
    shard.release(0)
    await first
    await settle()
    assert shard.calls == [[0], [1, 2]]
    assert shard.waited[1] >= 0.05  # counted from the older of the two
    shard.release(1)
    await asyncio.gather(*behind)
