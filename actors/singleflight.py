"""Single flight: concurrent callers asking for the same key share one load.

A shard activating a cell from Postgres, or building a neighbourhood's snapshot, must do it
once even if a hundred requests arrive together; the others wait for that one result (or its
error). Nothing is cached here: callers keep what they load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Per key, at most one ``load`` in flight; late callers share its outcome."""

    def __init__(self) -> None:
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; waiters (if any) re-raise it
            raise
        else:
            future.set_result(value)
            return value
        finally:
            self._pending.pop(key, None)
