"""This process's keys: the JWT signing ring and the data keys that seal secrets at rest.

``Keys`` owns both rings (store/keyfiles.py: the environment's, or the data dir's files) and
keeps them current: a token naming a key id the ring lacks, or a sealed value of an unknown
key, re-reads the file (another process rotated); a seal uses a ring at most 5 s old, so every
process seals with the new key shortly after a rotation, and the old key still opens what was
sealed before. ``reseal`` (the ``hyperlocal keys`` command) re-seals every stored secret with
the current key, after which the old data keys can be dropped.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from cluster.config import Settings
from models.keyring import KeyRing
from models.sealing import Sealer, kid_of_sealed
from store import keyfiles
from store.keyfiles import RingFile

log = logging.getLogger("hyperlocal.keys")

_FRESH_S = 5.0

# Every column holding a sealed secret: (table, key column, secret column, context prefix).
SEALED_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("hooks", "id", "secret", "hook"),
    ("user_totp", "user_id", "secret", "totp"),
)


class Keys:
    """The JWT ring (``jwt``, a ``RingSource`` for the token codecs) and the data sealer."""

    def __init__(self, settings: Settings) -> None:
        data_dir = settings.data_dir
        self.jwt = RingFile(
            lambda: keyfiles.jwt_ring(data_dir, settings.jwt_secret, settings.jwt_previous_secrets)
        )
        self._data = RingFile(
            lambda: keyfiles.data_ring(data_dir, settings.data_key, settings.data_previous_keys)
        )
        self._sealer = Sealer(self._data.ring)
        self._fresh_at = time.monotonic()

    def _current(self) -> Sealer:
        now = time.monotonic()
        if now - self._fresh_at >= _FRESH_S:
            self._fresh_at = now
            self._reload_data()
        return self._sealer

    def _reload_data(self) -> None:
        ring: KeyRing = self._data.reload()
        if ring.keys != self._sealer.ring.keys:
            self._sealer = Sealer(ring)

    def seal(self, plaintext: str, context: str) -> str:
        """``plaintext`` sealed for the row ``context`` (e.g. ``totp:<user id>``)."""
        return self._current().seal(plaintext, context)

    def open(self, value: str, context: str) -> str:
        """The secret ``value`` holds (a plaintext legacy value as it is)."""
        kid = kid_of_sealed(value)
        if kid is not None and kid not in self._sealer.ring and self._data.knows(kid):
            self._sealer = Sealer(self._data.ring)
        return self._sealer.open(value, context)

    async def reseal(self, db: asyncpg.Pool) -> dict[str, int]:
        """Re-seal every stored secret not sealed with the current key; counts per table."""
        self._reload_data()
        sealer = self._sealer
        counts: dict[str, int] = {}
        for table, key_col, col, prefix in SEALED_COLUMNS:
            done = 0
            rows = await db.fetch(f"SELECT {key_col} AS k, {col} AS v FROM {table}")
            for row in rows:
                if not sealer.needs_reseal(row["v"]):
                    continue
                context = f"{prefix}:{row['k']}"
                fresh = sealer.seal(sealer.open(row["v"], context), context)
                status = await db.execute(
                    f"UPDATE {table} SET {col} = $2 WHERE {key_col} = $1 AND {col} = $3",
                    row["k"],
                    fresh,
                    row["v"],
                )
                done += status.endswith(" 1")
            counts[table] = done
        log.info("resealed secrets with key %s: %s", sealer.ring.current.kid, counts)
        return counts
