"""The control actor's money loop (services/payouts.py ``run_scheduled``): releases every
round, a payout batch only once its period has passed, and a failing round never ends it."""

from __future__ import annotations

import asyncio
from typing import Any

from models.rbac import OPERATOR
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

    async def run(self, staff: Any) -> dict[str, Any]:
        self.runs.append(staff)
        return {}


async def _run_for(seconds: float, payout_every_s: float) -> tuple[_Ledger, _Payouts]:
    ledger, payouts = _Ledger(), _Payouts()
    task = asyncio.create_task(
        run_scheduled(payouts, ledger, payout_every_s, 0.01)  # type: ignore[arg-type]
    )
    await asyncio.sleep(seconds)
    task.cancel()
    return ledger, payouts


async def test_releases_every_round_and_batches_once_their_period_has_passed() -> None:
    ledger, payouts = await _run_for(0.6, 0.2)
    assert ledger.releases >= 3  # the failing second round did not end the loop
    # a batch (which releases too) at most once per 0.2 s, releases on the rounds between
    assert 1 <= len(payouts.runs) <= 3 and all(s is OPERATOR for s in payouts.runs)


async def test_no_scheduled_batch_when_the_interval_is_zero() -> None:
    ledger, payouts = await _run_for(0.3, 0.0)
    assert ledger.releases >= 2 and payouts.runs == []
