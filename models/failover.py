"""When a shard is failed over, and when it rejoins: pure decisions over ping outcomes.

The control actor pings every shard of the placement table (services/failover.py) and hands
each outcome to ``Liveness``. A shard that *refused or reset* the connection is dead (its
process is gone: nothing listens any more) and is failed over at once; a ping that merely
timed out is a miss, and only ``misses`` in a row fail a shard over (a shard slow under load is
not dead). A failed-over shard keeps being pinged; once it has answered every ping for
``rejoin_s`` (Ray restarted it) it rejoins, unless ``rejoin_s`` is 0 (it stays empty until
``hyperlocal scale``).

``without`` and ``with_back`` are the table changes: rendezvous hashing over the survivors
moves exactly the dead shard's keys, overrides (pins) to it are dropped so those keys go to
hashing too, and a rejoin gives back exactly the keys hashing places on it. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from models.placement import Placement


class Outcome(Enum):
    """What one ping of a shard found."""

    OK = "ok"
    MISSED = "missed"  # no answer in time (or Ray could not say where the shard listens)
    REFUSED = "refused"  # the connection was refused or reset: the process is gone


@dataclass(frozen=True)
class Policy:
    """The knobs (cluster/config.py ``failover_*``)."""

    misses: int
    rejoin_s: float


@dataclass
class _Health:
    misses: int = 0
    up_since: float | None = None


@dataclass
class Liveness:
    """Per shard: missed pings in a row, and since when it has answered. Owns only that (one
    per control actor; a restarted control forgets which shards it failed over, which then
    stay empty until ``hyperlocal scale``)."""

    policy: Policy
    failed: set[str] = field(default_factory=set)
    """Shards failed over by this watcher and not yet back."""
    _health: dict[str, _Health] = field(default_factory=dict)

    def watched(self, table: Placement) -> tuple[str, ...]:
        """The shards to ping: the table's and the failed-over ones."""
        return tuple(dict.fromkeys((*table.shards, *sorted(self.failed))))

    def observe(self, shard: str, outcome: Outcome, now: float) -> None:
        health = self._health.setdefault(shard, _Health())
        if outcome is Outcome.OK:
            health.misses = 0
            if health.up_since is None:
                health.up_since = now
            return
        health.up_since = None
        health.misses = self.policy.misses if outcome is Outcome.REFUSED else health.misses + 1

    def dead(self, table: Placement) -> list[str]:
        """Shards of the table to fail over now (never all of them: with no survivor there is
        nowhere to go, and the cells wait for Ray's restart as without failover)."""
        down = [s for s in table.shards if self._misses(s) >= self.policy.misses]
        return down if len(down) < len(table.shards) else []

    def back(self, table: Placement, now: float) -> list[str]:
        """Failed-over shards that answered every ping for ``rejoin_s`` (none if it is 0)."""
        if self.policy.rejoin_s <= 0:
            return []
        return [
            s
            for s in sorted(self.failed)
            if s not in table.shards
            and (up := self._health.get(s, _Health()).up_since) is not None
            and now - up >= self.policy.rejoin_s
        ]

    def failed_over(self, shards: list[str]) -> None:
        self.failed.update(shards)

    def rejoined(self, shards: list[str]) -> None:
        self.failed.difference_update(shards)

    def forget(self) -> None:
        """A scale decided the fleet: failed-over shards it does not keep are not coming back,
        those it keeps it gives their keys itself."""
        self.failed.clear()
        self._health.clear()  # a shard it brings back starts afresh, not at its old misses

    def _misses(self, shard: str) -> int:
        health = self._health.get(shard)
        return health.misses if health else 0


def without(table: Placement, dead: list[str]) -> Placement:
    """The table with ``dead`` taken out: their hashed keys go to the survivors by
    rendezvous hashing (exactly theirs), keys overridden to them too; if only dedicated shards
    (a pinned cell's own) survive, they are given back to hashing."""
    shards = tuple(s for s in table.shards if s not in dead)
    if not shards:
        raise ValueError("failover needs a surviving shard")
    overrides = {k: s for k, s in table.overrides.items() if s in shards}
    dedicated = table.dedicated & frozenset(shards)
    if dedicated == frozenset(shards):
        dedicated = frozenset()
    return Placement(table.version + 1, shards, overrides, dedicated)


def with_back(table: Placement, shards: list[str]) -> Placement:
    """The table with the rejoining ``shards`` among the hashed ones again (in name order)."""
    names = sorted({*table.shards, *shards}, key=shard_order)
    return Placement(table.version + 1, tuple(names), table.overrides, table.dedicated)


def shard_order(name: str) -> tuple[int, str]:
    """``shard-2`` before ``shard-10``; names without a number last."""
    tail = name.rsplit("-", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (1 << 30, name)
