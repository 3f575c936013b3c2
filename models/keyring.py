"""Named keys and the rings that hold them: JWT signing keys and the data keys of secrets at
rest (models/sealing.py). Pure: store/keyfiles.py loads and rotates them.

A ring's first key is current (it signs or seals); every key of the ring verifies or opens.
Rotation puts a new key first and keeps the old ones until nothing made with them is alive:
tokens until they expire, sealed rows until they are re-sealed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


def kid_of(secret: str) -> str:
    """A key id derived from the key (for keys given in the environment): stable, and it
    reveals nothing of the key."""
    return "k" + hashlib.sha256(secret.encode()).hexdigest()[:11]


@dataclass(frozen=True, slots=True)
class Key:
    """One key: its id (``kid``) and its secret material (text; data keys are base64)."""

    kid: str
    secret: str

    def __repr__(self) -> str:  # never the secret in a log line or traceback
        return f"Key({self.kid!r})"


class KeyRing:
    """Keys by id; the first is current. Immutable: a rotation builds a new ring."""

    __slots__ = ("_by_kid", "current", "keys")

    def __init__(self, keys: Sequence[Key]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self.keys = tuple(keys)
        self.current = self.keys[0]
        self._by_kid = {k.kid: k for k in self.keys}
        if len(self._by_kid) != len(self.keys):
            raise ValueError("key ids must be unique")

    @classmethod
    def of_secrets(cls, current: str, *previous: str) -> KeyRing:
        """A ring of secrets given as text (the environment), ids derived from them."""
        return cls([Key(kid_of(s), s) for s in (current, *previous)])

    def get(self, kid: object) -> Key | None:
        return self._by_kid.get(kid) if isinstance(kid, str) else None

    def __contains__(self, kid: object) -> bool:
        return self.get(kid) is not None

    def __repr__(self) -> str:
        return f"KeyRing({[k.kid for k in self.keys]})"
