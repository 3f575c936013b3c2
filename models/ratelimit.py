"""A token bucket: ``rate_per_s`` sustained, ``burst`` at once. Pure; the caller supplies time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float = field(init=False)
    updated: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available at time ``now`` (seconds, monotonic)."""
        if self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
