"""The notifier's delivery rate limit (services/pace.py, HL_NOTIFY_RATE_PER_S): a burst leaves
at the rate, not as fast as the core allows; 0 means no limit. Bad values are refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from cluster.config import load_settings
from services.notifier import Notifier
from services.pace import Pace


async def test_a_burst_is_spread_out_to_the_rate() -> None:
    pace = Pace(50.0)  # a tenth of a second's worth at once: 5
    started = time.monotonic()
    await asyncio.gather(*(pace.take() for _ in range(30)))
    elapsed = time.monotonic() - started
    assert elapsed >= (30 - 5) / 50 * 0.95, elapsed  # 25 tokens at 50/s: half a second at least
    assert pace.waited_s > 0  # it did wait (how long depends on how busy this box is)


async def test_takers_are_served_in_turn_and_each_gets_one_token() -> None:
    pace = Pace(20.0)  # burst 2
    order: list[int] = []

    async def take(i: int) -> None:
        await pace.take()
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(6)))
    assert order == list(range(6))


async def test_no_limit_never_waits() -> None:
    pace = Pace(0.0)
    started = time.monotonic()
    for _ in range(10_000):
        await pace.take()
    assert time.monotonic() - started < 1.0 and pace.waited_s == 0.0


def test_a_claimed_batch_fits_about_five_seconds_of_the_rate(tmp_path: Path) -> None:
    def batch(rate: float) -> int:
        settings = load_settings(data_dir=tmp_path, notify_rate_per_s=rate)
        none: object = None  # the loop is not run: only the sizes are read
        return Notifier(settings, none, none, none, none, none, None, none).batch  # type: ignore[arg-type]

    assert batch(0.0) == 50 and batch(100.0) == 50  # the most one statement claims
    assert batch(2.0) == 10 and batch(0.1) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("notify_rate_per_s", -1),
        ("notifier_niceness", 20),
        ("notifier_niceness", -1),
        ("notifier_num_cpus", -0.5),
    ],
)
def test_bad_notifier_settings_are_refused_naming_the_field(
    tmp_path: Path, field: str, value: float
) -> None:
    with pytest.raises(ValidationError, match=field):
        load_settings(data_dir=tmp_path, **{field: value})
