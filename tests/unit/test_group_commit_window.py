"""The group-commit window counts what a command already waited at its gateway."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors.group_commit import GroupCommitter


async def _nothing(tx: Any) -> None:
    return None


async def test_a_command_that_waited_at_its_gateway_does_not_wait_the_window_again() -> None:
    committer = GroupCommitter(None, window_s=0.2, max_batch=10, writer=None)  # type: ignore[arg-type]
    started = time.perf_counter()
    committer.enqueue(_nothing, 1, waited_s=0.5)  # more than the window: none left to wait
    committer.enqueue(_nothing, 1)  # queued behind it: leaves with it
    batch = await committer._gather()
    assert len(batch) == 2 and time.perf_counter() - started < 0.19
    started = time.perf_counter()
    committer.enqueue(_nothing, 1, waited_s=0.15)  # 50 ms of the window left
    batch = await committer._gather()
    assert len(batch) == 1 and 0.03 <= time.perf_counter() - started < 0.19
    started = time.perf_counter()
    committer.enqueue(_nothing, 1)  # a fresh command waits the whole window for company
    batch = await committer._gather()
    assert time.perf_counter() - started >= 0.19
    for item in batch:
        item.future.cancel()
    await asyncio.sleep(0)
