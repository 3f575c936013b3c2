"""The control actor's money loop (services/payouts.py ``run_scheduled``): releases every
round, a payout batch only once its period has passed, the transfers due every round (woken
at once when a batch queued some), and a failing round never ends it (counted)."""

from __future__ import annotations

import asyncio
from typing import Any

from models.rbac import OPERATOR
from services.loops import LoopFailures
from services.payouts import run_scheduled


class _Ledger:
    def __init__(self) -> None:
        self.releases = 0

    async def release_due(self) -> int:
        self.releases += 1
        if self.releases == 2:
            raise RuntimeError("Postgres went away")  # the loop must survive this
        return 0


class _Payouts:
    def __init__(self) -> None:
        self.runs: list[Any] = []
        self.sends = 0
        self.queued = asyncio.Event()

    async def run(self, staff: Any) -> dict[str, Any]:
        self.runs.append(staff)
        return {}

    async def send_due(self) -> list[Any]:
        self.sends += 1
        return []


async def _run_for(
    seconds: float, payout_every_s: float, release_every_s: float = 0.01
) -> tuple[_Ledger, _Payouts, LoopFailures]:
    ledger, payouts, failures = _Ledger(), _Payouts(), LoopFailures()
    task = asyncio.create_task(
        run_scheduled(payouts, ledger, payout_every_s, release_every_s, failures)  # type: ignore[arg-type]
    )
    await asyncio.sleep(seconds)
    task.cancel()
    return ledger, payouts, failures


async def test_releases_every_round_and_batches_once_their_period_has_passed() -> None:
    ledger, payouts, failures = await _run_for(0.6, 0.2)
    assert ledger.releases >= 3  # the failing second round did not end the loop
    assert failures.counts == {"money": 1}
    assert payouts.sends >= 2  # the transfers due, every round that did not fail
    # a batch (which releases too) at most once per 0.2 s, releases on the rounds between
    assert 1 <= len(payouts.runs) <= 3 and all(s is OPERATOR for s in payouts.runs)


async def test_no_scheduled_batch_when_the_interval_is_zero() -> None:
    ledger, payouts, _ = await _run_for(0.3, 0.0)
    assert ledger.releases >= 2 and payouts.runs == []


async def test_a_batch_that_queued_transfers_wakes_the_loop_at_once() -> None:
    ledger, payouts, failures = _Ledger(), _Payouts(), LoopFailures()
    task = asyncio.create_task(
        run_scheduled(payouts, ledger, 0.0, 30.0, failures)  # type: ignore[arg-type]
    )
    try:
        await asyncio.sleep(0.05)
        assert payouts.sends == 0  # the first round is 30 s away
        payouts.queued.set()  # what Payouts.run does when it queued a transfer
        for _ in range(100):
            if payouts.sends:
                break
            await asyncio.sleep(0.01)
        assert payouts.sends == 1 and ledger.releases == 1
    finally:
        task.cancel()
