"""Load a shard measures: commands per second per key, as exponentially decaying rates.

``LoadMeter`` keeps, for each placement key (``cell:<h3>``, ``user:<id>``) that received a
command, a count that decays with time constant ``tau_s``: ``rate()`` is that count over
``tau_s``, so a steady 200 commands/s reads 200 after a few ``tau_s`` and a cell that went quiet
fades to zero. Updating is O(1) per command and nothing is sampled or scheduled; ``prune``
drops keys whose rate fell under ``floor`` (the memory is bounded by the keys active within a
few ``tau_s``). Pure, no I/O: the clock is the caller's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class _Rate:
    value: float
    at: float


@dataclass
class LoadMeter:
    """Per-key and total decaying command rates of one shard (see the module docstring)."""

    tau_s: float = 10.0
    floor: float = 0.01
    _keys: dict[str, _Rate] = field(default_factory=dict)
    _total: _Rate = field(default_factory=lambda: _Rate(0.0, 0.0))

    def _decayed(self, rate: _Rate, now: float) -> float:
        return rate.value * math.exp(-max(0.0, now - rate.at) / self.tau_s)

    def record(self, key: str, now: float, count: int = 1) -> None:
        found = self._keys.get(key)
        if found is None:
            self._keys[key] = _Rate(float(count), now)
        else:
            found.value, found.at = self._decayed(found, now) + count, now
        self._total.value, self._total.at = self._decayed(self._total, now) + count, now

    def rate(self, key: str, now: float) -> float:
        """Commands per second to ``key`` lately."""
        found = self._keys.get(key)
        return self._decayed(found, now) / self.tau_s if found else 0.0

    def total(self, now: float) -> float:
        """Commands per second to every key of this shard lately."""
        return self._decayed(self._total, now) / self.tau_s

    def prune(self, now: float) -> None:
        cut = self.floor * self.tau_s
        for key in [k for k, r in self._keys.items() if self._decayed(r, now) < cut]:
            del self._keys[key]

    def hottest(self, now: float, limit: int, prefix: str = "") -> list[tuple[str, float]]:
        """The ``limit`` busiest keys starting with ``prefix``, rate first (pruned first)."""
        self.prune(now)
        rates = [(k, self.rate(k, now)) for k in self._keys if k.startswith(prefix)]
        rates.sort(key=lambda kr: (-kr[1], kr[0]))
        return rates[:limit]

    def __len__(self) -> int:
        return len(self._keys)
