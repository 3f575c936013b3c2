"""Which shard owns which key: rendezvous hashing over the shard list, plus explicit overrides.

A key is a cell (``cell:<h3>``) or another owned entity (``user:<id>``). The table is versioned:
every change (a shard added, a hot cell moved) bumps the version, so a shard asked about a key by
a router holding an older table answers ``moved`` and the router reloads. Pure data, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

_OWNERS_CACHED = 100_000


def _score(key: str, shard: str) -> int:
    digest = hashlib.blake2b(f"{shard}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Placement:
    """An immutable placement table."""

    version: int
    shards: tuple[str, ...]
    overrides: dict[str, str] = field(default_factory=dict)
    dedicated: frozenset[str] = frozenset()
    """Shards of their own (a hot cell's, ``with_pin``): rendezvous hashing places nothing on
    them; they own only the keys overridden to them."""
    _owners: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Answers already computed (the table is immutable): one hash per shard per key is paid
    once, not on every command of the gateway's and the shard's hot paths."""

    def __post_init__(self) -> None:
        if not self.shards:
            raise ValueError("a placement needs at least one shard")
        unknown = (set(self.overrides.values()) | self.dedicated) - set(self.shards)
        if unknown:
            raise ValueError(f"overrides name unknown shards: {sorted(unknown)}")
        if not self.hashed:
            raise ValueError("a placement needs at least one shard that is not dedicated")

    @property
    def hashed(self) -> tuple[str, ...]:
        """The shards rendezvous hashing places keys on (every shard but the dedicated)."""
        return tuple(s for s in self.shards if s not in self.dedicated)

    def owner(self, key: str) -> str:
        """The shard owning ``key``: its override, else the highest rendezvous score."""
        found = self._owners.get(key)
        if found is None:
            found = self.overrides.get(key) or max(self.hashed, key=lambda s: _score(key, s))
            if len(self._owners) >= _OWNERS_CACHED:
                self._owners.clear()
            self._owners[key] = found
        return found

    def with_shards(self, shards: tuple[str, ...]) -> Placement:
        """A new version over another shard list (keys move only to or from changed shards)."""
        kept = {k: s for k, s in self.overrides.items() if s in shards}
        return Placement(self.version + 1, tuple(shards), kept, self.dedicated & frozenset(shards))

    def with_override(self, key: str, shard: str) -> Placement:
        return Placement(
            self.version + 1, self.shards, {**self.overrides, key: shard}, self.dedicated
        )

    def with_pin(self, key: str, shard: str) -> Placement:
        """``key`` on ``shard``, which becomes a shard of its own: the keys hashing placed on it
        move to the other shards (exactly those), the keys overridden to it stay."""
        return Placement(
            self.version + 1,
            self.shards,
            {**self.overrides, key: shard},
            self.dedicated | {shard},
        )

    def without_override(self, key: str) -> Placement:
        """``key`` placed by hashing again; a dedicated shard left with no key overridden to it
        rejoins the hashing."""
        overrides = {k: s for k, s in self.overrides.items() if k != key}
        dedicated = frozenset(s for s in self.dedicated if s in overrides.values())
        return Placement(self.version + 1, self.shards, overrides, dedicated)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "shards": list(self.shards),
            "overrides": self.overrides,
            "dedicated": sorted(self.dedicated),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Placement:
        return cls(
            int(data["version"]),
            tuple(data["shards"]),
            dict(data.get("overrides") or {}),
            frozenset(data.get("dedicated") or ()),
        )


def cell_key(cell: str) -> str:
    return f"cell:{cell}"


def user_key(user_id: str) -> str:
    return f"user:{user_id}"
