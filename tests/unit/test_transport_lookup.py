"""services/transport.py ``RayTransport``: a shard not known yet is looked up by name off the
event loop (``ray.get_actor`` blocks on Ray's control server: rule 6), kept once found, and
an unknown one is ``ShardGone`` and looked up again next time. No Ray runs: the lookup is
replaced by a slow stand-in."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import ray

from services.transport import RayTransport, ShardGone


async def test_a_shard_is_looked_up_off_the_event_loop_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on_loop_thread: list[bool] = []
    found = object()

    def slow_lookup(name: str, namespace: str | None = None) -> Any:
        on_loop_thread.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.2)  # Ray's control server, slow
        if name == "gone":
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return found

    monkeypatch.setattr(ray, "get_actor", slow_lookup)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # connected, as a gateway is
    transport = RayTransport({}, 5.0, "hyperlocal")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert await transport._handle("shard-0") is found
    finally:
        ticker.cancel()
    assert on_loop_thread == [False]
    assert ticks >= 5  # the loop went on serving while the lookup waited
    assert await transport._handle("shard-0") is found
    assert len(on_loop_thread) == 1  # kept: no second lookup
    for _ in range(2):  # unknown: not kept, asked again
        with pytest.raises(ShardGone):
            await transport._handle("gone")
    assert len(on_loop_thread) == 3
