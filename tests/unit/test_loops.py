"""services/loops.py: a supervised loop survives failures (logged with its name, counted, backed
off, capped), waits what its step answers, wakes early on its event and ends cleanly when
cancelled; ``beside`` stops the loop with its main coroutine. No Ray, no I/O."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.loops import Backoff, LoopFailures, SupervisedLoop, beside

log = logging.getLogger("hyperlocal.test.loops")


def test_backoff_doubles_from_the_first_wait_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert Backoff(1.0, 60.0).delay_s(10_000) == 60.0  # no overflow far past the cap
    with pytest.raises(ValueError):
        backoff.delay_s(0)


def test_failures_are_exported_as_labelled_counts() -> None:
    failures = LoopFailures()
    failures.failed("a")
    failures.failed("a")
    failures.failed("b")
    assert sorted(failures.items()) == [(("a",), 2.0), (("b",), 1.0)]


async def _run_until(loop: SupervisedLoop, done: asyncio.Event) -> None:
    await _ended(asyncio.create_task(loop.run()), done)


async def _ended(task: asyncio.Task[None], done: asyncio.Event) -> None:
    """Once ``done`` is set, cancel ``task``: it must end cancelled."""
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_failures_are_logged_counted_and_backed_off_then_reset_by_a_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[Exception | None] = [OSError("db away"), KeyError("bug"), None, OSError("x")]
    done = asyncio.Event()

    async def step() -> float:
        outcome = outcomes.pop(0)
        if not outcomes:
            done.set()
        if outcome is not None:
            raise outcome
        return 0.0

    failures = LoopFailures()
    loop = SupervisedLoop(
        "demo",
        step,
        period_s=0.0,
        log=log,
        backoff=Backoff(0.01, 0.015),
        expected=(OSError,),
        failures=failures,
    )
    with caplog.at_level(logging.WARNING, logger=log.name):
        await _run_until(loop, done)
    records = [r for r in caplog.records if r.name == log.name]
    assert [r.levelname for r in records] == ["WARNING", "ERROR", "WARNING"]
    assert all("demo" in r.getMessage() for r in records)
    assert "OSError('db away')" in records[0].getMessage() and records[0].exc_info is None
    assert records[1].exc_info is not None  # an unexpected error keeps its traceback
    fields = [(r.loop, r.failures, r.next_s) for r in records]  # type: ignore[attr-defined]
    # the second failure in a row waits twice the first, capped; the success resets the count
    assert fields == [("demo", 1, 0.01), ("demo", 2, 0.015), ("demo", 1, 0.01)]
    assert dict(failures.counts) == {"demo": 3} and loop.rounds == 4


async def test_the_wait_is_what_the_step_answers_or_the_period() -> None:
    stamps: list[float] = []
    done = asyncio.Event()
    clock = asyncio.get_running_loop().time

    async def step() -> float | None:
        stamps.append(clock())
        if len(stamps) == 3:
            done.set()
        return 0.0 if len(stamps) == 1 else None  # then the period

    await _run_until(SupervisedLoop("demo", step, period_s=0.2, log=log), done)
    assert stamps[1] - stamps[0] < 0.1
    assert stamps[2] - stamps[1] >= 0.19


async def test_wait_first_waits_a_period_before_the_first_step() -> None:
    started = asyncio.get_running_loop().time()
    first: list[float] = []
    done = asyncio.Event()

    async def step() -> None:
        first.append(asyncio.get_running_loop().time() - started)
        done.set()

    await _run_until(SupervisedLoop("demo", step, period_s=0.2, log=log, wait_first=True), done)
    assert first[0] >= 0.19


async def test_without_a_backoff_a_failure_waits_the_period() -> None:
    stamps: list[float] = []
    done = asyncio.Event()
    clock = asyncio.get_running_loop().time

    async def step() -> None:
        stamps.append(clock())
        if len(stamps) == 2:
            done.set()
        raise RuntimeError("always")

    await _run_until(SupervisedLoop("demo", step, period_s=0.2, log=log), done)
    assert stamps[1] - stamps[0] >= 0.19


async def test_a_wake_ends_the_wait_and_one_during_a_step_is_not_lost() -> None:
    wake = asyncio.Event()
    rounds = 0
    done = asyncio.Event()

    async def step() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            wake.set()  # set during the step: the next wait ends at once
        if rounds == 3:
            done.set()

    loop = SupervisedLoop("demo", step, period_s=60.0, log=log, wake=wake)
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    assert rounds == 2 and not wake.is_set()  # woken once, cleared, now waiting the period
    wake.set()
    await _ended(task, done)


async def test_cancelling_mid_step_ends_the_loop_without_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, cleaned = asyncio.Event(), asyncio.Event()

    async def step() -> None:
        running.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    failures = LoopFailures()
    loop = SupervisedLoop("demo", step, period_s=1.0, log=log, failures=failures)
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(running.wait(), 5)
    with caplog.at_level(logging.WARNING, logger=log.name):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert cleaned.is_set() and task.cancelled()
    assert not failures.counts and not [r for r in caplog.records if r.name == log.name]


@pytest.mark.parametrize("fails", [False, True])
async def test_beside_stops_the_loop_when_main_returns_or_raises(fails: bool) -> None:
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    async def main() -> None:
        await asyncio.sleep(0.01)
        if fails:
            raise RuntimeError("gateway failed")

    if fails:
        with pytest.raises(RuntimeError):
            await beside(main(), forever(), "demo")
    else:
        await beside(main(), forever(), "demo")
    assert stopped.is_set()
