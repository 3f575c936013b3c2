"""The load generator's per-phase bookkeeping (bench/loadgen.py): every delivery counted once."""

from __future__ import annotations

import asyncio
import time

from bench.loadgen import LoopStalls, Phase


def _phase() -> Phase:
    return Phase(
        "t", rate=10.0, duration_s=1.0, receivers={1: frozenset({2, 3}), 2: frozenset({1})}
    )


def test_a_duplicate_is_counted_not_matched() -> None:
    phase = _phase()
    phase.first_ns = 0
    phase.on_delivery(2, 1, 0, 0)
    phase.on_delivery(3, 1, 0, 0)
    phase.on_delivery(2, 1, 0, 0)  # the same (receiver, sender, seq) again
    assert (phase.matched, phase.duplicates, phase.unexpected) == (2, 1, 0)


def test_keys_do_not_collide_across_senders_and_sequences() -> None:
    phase = _phase()
    phase.first_ns = 0
    phase.on_delivery(1, 2, 1, 0)  # receiver 1 from sender 2, seq 1
    phase.on_delivery(2, 1, 2, 0)  # receiver 2 from sender 1, seq 2: a different delivery
    phase.on_delivery(3, 1, 2**31, 0)  # a large seq stays apart from the sender bits
    phase.on_delivery(3, 1, 0, 0)
    assert (phase.matched, phase.duplicates) == (4, 0)


def test_a_delivery_to_a_non_member_is_unexpected() -> None:
    phase = _phase()
    phase.first_ns = 0
    phase.on_delivery(9, 1, 0, 0)
    assert (phase.matched, phase.unexpected) == (0, 1)


def test_loop_stalls_sees_the_loop_held() -> None:
    async def run() -> float:
        stalls = LoopStalls(tick_s=0.001)
        watch = asyncio.create_task(stalls.watch())
        await asyncio.sleep(0.01)
        time.sleep(0.03)  # noqa: ASYNC251 (the point: the loop held, as a long step would)
        await asyncio.sleep(0.01)
        watch.cancel()
        return stalls.worst_s

    assert asyncio.run(run()) >= 0.025
