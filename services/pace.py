"""Pace: spreads work out to a rate (a token bucket, models/ratelimit.py, that waits).

The notifier takes one token before each send (an email, a push to one device): a burst of
queued deliveries leaves at ``rate_per_s`` instead of as fast as the core allows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from models.ratelimit import TokenBucket


class Pace:
    """Owns one token bucket of ``rate_per_s`` holding a tenth of a second's worth (at least
    one); ``take`` waits for a token. Callers are served one at a time, in arrival order.
    ``rate_per_s`` 0 means no limit."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        burst = max(1, math.ceil(rate_per_s / 10))
        self._bucket = TokenBucket(rate_per_s, burst) if rate_per_s > 0 else None
        self._clock = clock
        self._turn = asyncio.Lock()
        self.waited_s = 0.0
        """Seconds callers spent waiting for a token (what the limit held back)."""

    async def take(self) -> None:
        """Wait until one token is free, and take it."""
        bucket = self._bucket
        if bucket is None:
            return
        async with self._turn:
            while not bucket.allow(self._clock()):
                pause = max(0.001, (1.0 - bucket.tokens) / bucket.rate_per_s)
                self.waited_s += pause
                await asyncio.sleep(pause)
