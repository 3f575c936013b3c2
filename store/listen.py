"""A Postgres ``LISTEN`` as a wake-up: one connection of its own (never a pooled one: the pool's
connections keep no session state, store/db.py), reconnected when lost.

A waiter calls ``wait(timeout_s)``: it returns True as soon as a ``NOTIFY`` on the channel has
arrived since the last ``clear()``, False when the timeout passed first. A notification is a
hint, never the data: the caller looks at its table either way, and its timeout is the safety
net for what a lost connection missed (on reconnect the next ``wait`` returns at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

log = logging.getLogger("hyperlocal.listen")


class Listener:
    """Owns one connection that LISTENs on ``channel``, and the flag its notifications set."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._conn: asyncpg.Connection | None = None
        self._woken = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def clear(self) -> None:
        """Forget the notifications so far (call before looking at the table)."""
        self._woken.clear()

    async def wait(self, timeout_s: float) -> bool:
        """Until a notification (True) or ``timeout_s`` (False); connects first if needed."""
        await self._ensure()
        if self._woken.is_set():
            return True
        try:
            await asyncio.wait_for(self._woken.wait(), max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._lost)
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await conn.close(timeout=5)

    async def _ensure(self) -> None:
        if self.listening:
            return
        self._conn = None
        try:
            conn = await asyncpg.connect(self.url, timeout=10)
            await conn.add_listener(self.channel, self._notified)
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            log.warning("LISTEN %s failed (polling until it works): %r", self.channel, exc)
            return
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self._woken.set()  # what was queued while not listening: look now

    def _notified(self, *_: Any) -> None:
        self._woken.set()

    def _lost(self, *_: Any) -> None:
        log.warning("LISTEN %s connection lost; reconnecting", self.channel)
        self._conn = None
        self._woken.set()
