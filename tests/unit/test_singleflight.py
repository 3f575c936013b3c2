"""SingleFlight: one load per key for concurrent callers; errors shared, nothing cached."""

from __future__ import annotations

import asyncio

import pytest

from actors.singleflight import SingleFlight


async def test_concurrent_callers_share_one_load() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.create_task(flight.run("k", load)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [42] * 10
    assert calls == 1
    assert await flight.run("k", load) == 42 and calls == 2  # nothing cached afterwards


async def test_errors_reach_every_waiter_and_the_next_call_retries() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def broken() -> int:
        await gate.wait()
        raise ValueError("db down")

    waiters = [asyncio.create_task(flight.run("k", broken)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)

    async def fine() -> int:
        return 1

    assert await flight.run("k", fine) == 1


async def test_cancelling_the_loader_cancels_the_waiters() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    async def forever() -> int:
        await asyncio.Event().wait()
        return 0

    first = asyncio.create_task(flight.run("k", forever))
    await asyncio.sleep(0)
    second = asyncio.create_task(flight.run("k", forever))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
