"""Where key rings are kept: the environment, or a private JSON file in the data dir.

Two rings (models/keyring.py): JWT signing keys (``jwt_keys.json``) and the data keys that seal
secrets at rest (``data_keys.json``, models/sealing.py). A key given in the environment wins
(``HL_JWT_SECRET`` / ``HL_DATA_KEY``, with ``..._PREVIOUS_...`` keys that still verify or
open); otherwise the file is created on first use (mode 600, created exclusively so racing
processes read the winner's) and rotated by ``hyperlocal keys`` (cluster/cli.py). A rotation
writes a new file and renames it over the old one, so a reader sees one ring or the other.

``RingFile`` is a running process's view of a file ring: re-read when a caller meets a key id
it does not know (another process rotated), at most once a second.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.keyring import Key, KeyRing, kid_of
from models.sealing import new_data_key

JWT_FILE = "jwt_keys.json"
DATA_FILE = "data_keys.json"
_LEGACY_JWT_FILE = "jwt_secret"  # one key, before key ids


def new_jwt_secret() -> str:
    return secrets.token_urlsafe(48)


def _entry(secret: str, now: float, kid: str | None = None) -> dict[str, Any]:
    kid = kid or f"k{int(now)}-{secrets.token_hex(3)}"
    return {"kid": kid, "secret": secret, "created_at": now}


def _read(path: Path) -> list[dict[str, Any]]:
    for _ in range(50):  # the creator may not have written yet
        text = path.read_text().strip()
        if text:
            entries = json.loads(text)["keys"]
            if not isinstance(entries, list) or not entries:
                raise RuntimeError(f"{path} holds no keys: remove it or set the key in the env")
            return entries
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: remove it or set the key in the environment")


def _write_new(path: Path, entries: list[dict[str, Any]]) -> None:
    """Create ``path`` exclusively with ``entries`` (a racing creator wins; we read its)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        json.dump({"keys": entries}, out, indent=1)


def _replace(path: Path, entries: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"keys": entries}, out, indent=1)
    os.replace(tmp, path)


def _ring(entries: list[dict[str, Any]]) -> KeyRing:
    return KeyRing([Key(str(e["kid"]), str(e["secret"])) for e in entries])


def load_file_ring(path: Path, first_secret: Callable[[], str]) -> KeyRing:
    """The ring kept in ``path``, created with one key of ``first_secret()`` if missing."""
    if not path.exists():
        _write_new(path, [_entry(first_secret(), time.time())])
    return _ring(_read(path))


def jwt_file(data_dir: Path) -> Path:
    return data_dir / JWT_FILE


def data_file(data_dir: Path) -> Path:
    return data_dir / DATA_FILE


def jwt_ring(data_dir: Path, env_secret: str | None, env_previous: tuple[str, ...]) -> KeyRing:
    """The JWT signing keys: the environment's, or the data dir's (a key generated before key
    ids existed, ``jwt_secret``, becomes the first key of the file, so its tokens still verify)."""
    if env_secret:
        return KeyRing.of_secrets(env_secret, *env_previous)
    legacy = data_dir / _LEGACY_JWT_FILE

    def first() -> str:
        return legacy.read_text().strip() if legacy.exists() else new_jwt_secret()

    return load_file_ring(jwt_file(data_dir), first)


def data_ring(data_dir: Path, env_key: str | None, env_previous: tuple[str, ...]) -> KeyRing:
    """The data keys sealing secrets at rest: the environment's, or the data dir's."""
    if env_key:
        return KeyRing.of_secrets(env_key, *env_previous)
    return load_file_ring(data_file(data_dir), new_data_key)


def rotate(path: Path, new_secret: str, keep_retired_s: float | None) -> KeyRing:
    """Put a new key first in the file ring at ``path``; the old current one is retired now.
    Keys retired longer ago than ``keep_retired_s`` are dropped (None: none are)."""
    now = time.time()
    entries = _read(path) if path.exists() else []
    if entries:
        entries[0].setdefault("retired_at", now)
    if keep_retired_s is not None:
        entries = [e for e in entries if now - float(e.get("retired_at", now)) <= keep_retired_s]
    entries.insert(0, _entry(new_secret, now))
    _replace(path, entries)
    return _ring(entries)


def keep_only_current(path: Path) -> KeyRing:
    """Drop every key but the current one (after every row was re-sealed with it)."""
    entries = _read(path)[:1]
    _replace(path, entries)
    return _ring(entries)


class RingFile:
    """A process's copy of a ring: re-read at most every ``fresh_s`` seconds when used (so
    every process signs and seals with a rotated key soon after the rotation), and at once
    (at most once a second) when asked about a key id it lacks (a token or sealed value made
    by a process that re-read first). A ring from the environment never changes."""

    __slots__ = ("_load", "_missed_at", "_read_at", "_ring", "fresh_s")

    def __init__(self, load: Callable[[], KeyRing], fresh_s: float = 5.0) -> None:
        self._load = load
        self.fresh_s = fresh_s
        self._ring = load()
        self._read_at = time.monotonic()
        self._missed_at = -1.0

    @property
    def ring(self) -> KeyRing:
        if time.monotonic() - self._read_at >= self.fresh_s:
            self.reload()
        return self._ring

    def reload(self) -> KeyRing:
        """Read the ring again now."""
        self._read_at = time.monotonic()
        self._ring = self._load()
        return self._ring

    def knows(self, kid: object) -> bool:
        """Whether ``kid`` is in the ring, re-reading it first if not; after a re-read that
        did not find one, the next waits a second (a flood of made-up ids costs nothing)."""
        if kid in self.ring:
            return True
        now = time.monotonic()
        if now - self._missed_at < 1.0:
            return False
        if kid in self.reload():
            return True
        self._missed_at = now
        return False


__all__ = ["RingFile", "data_ring", "jwt_ring", "keep_only_current", "kid_of", "rotate"]
