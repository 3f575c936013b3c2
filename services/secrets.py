"""This process's keys: the JWT signing ring and the data keys that seal secrets at rest.

``Keys`` owns both rings (store/keyfiles.py: the environment's, or the data dir's files) and
keeps them current (store/keyfiles.py ``RingFile``): a token naming a key id the ring lacks,
or a sealed value of an unknown key, re-reads the file (another process rotated), and every
use re-reads a ring older than 5 s, so every process signs and seals with the new key shortly
after a rotation while the old keys still verify and open what was made before. ``reseal``
(the ``hyperlocal keys`` command) re-seals every stored secret with the current key, after
which the old data keys can be dropped.
"""

from __future__ import annotations

import logging

import asyncpg

from cluster.config import Settings
from models.sealing import Sealer, SealError, kid_of_sealed
from store import keyfiles
from store.keyfiles import RingFile

log = logging.getLogger("hyperlocal.keys")

# Every column holding a sealed secret: (table, key column, secret column, context prefix).
SEALED_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("hooks", "id", "secret", "hook"),
    ("user_totp", "user_id", "secret", "totp"),
    ("app_secrets", "name", "value", "app"),  # VAPID key pair, unsubscribe key (notifications)
    ("vendors", "id", "payout_bank", "payout"),  # bank details for payouts (NULL: none)
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

    def _current(self) -> Sealer:
        ring = self._data.ring  # re-read every few seconds
        if ring is not self._sealer.ring:
            self._sealer = Sealer(ring)
        return self._sealer

    def seal(self, plaintext: str, context: str) -> str:
        """``plaintext`` sealed for the row ``context`` (e.g. ``totp:<user id>``)."""
        return self._current().seal(plaintext, context)

    def open(self, value: str, context: str) -> str:
        """The secret ``value`` holds (a plaintext legacy value as it is)."""
        kid = kid_of_sealed(value)
        sealer = self._current()
        if kid is not None and kid not in sealer.ring and self._data.knows(kid):
            sealer = self._current()
        return sealer.open(value, context)

    async def reseal(self, db: asyncpg.Pool) -> dict[str, int]:
        """Re-seal every stored secret not sealed with the current key; counts per table."""
        self._data.reload()
        sealer = self._current()
        counts: dict[str, int] = {}
        for table, key_col, col, prefix in SEALED_COLUMNS:
            done = 0
            rows = await db.fetch(
                f"SELECT {key_col} AS k, {col} AS v FROM {table} WHERE {col} IS NOT NULL"
            )
            for row in rows:
                if not sealer.needs_reseal(row["v"]):
                    continue
                context = f"{prefix}:{row['k']}"
                try:
                    fresh = sealer.seal(sealer.open(row["v"], context), context)
                except SealError as exc:  # a key no longer in the ring: say so, go on
                    log.error("%s %s: %s", table, row["k"], exc)
                    counts["unopenable"] = counts.get("unopenable", 0) + 1
                    continue
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
