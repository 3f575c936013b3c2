"""How long failed sign-ins make the next attempt wait. Pure; services/throttle.py counts.

Failures are counted in a sliding window, per account (the normalized email, whether or not an
account has it, so the throttle tells nothing about which emails exist) and per client
address. The first ``free`` failures in the window cost nothing; each one after doubles the
wait from ``base_s`` (1, 2, 4, ... s), up to ``max_s``, counted from the last failure. While
waiting, every attempt is ``429 rate_limited`` with ``Retry-After``, the right password too:
that is what makes guessing slow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait rule of one counter (per account or per address)."""

    free: int
    base_s: float
    max_s: float

    def wait_s(self, failures: int) -> float:
        """Seconds after the last failure before the next attempt, given ``failures``."""
        if failures < self.free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** (failures - self.free))

    def retry_after(self, failures: int, last_at: float, now: float) -> int | None:
        """Whole seconds to wait from ``now`` (at least 1), or None if an attempt may go."""
        left = last_at + self.wait_s(failures) - now
        if failures < self.free or left <= 0:
            return None
        return max(1, math.ceil(left))
