"""Opaque, time-sortable ids.

An id is 16 lowercase base32 characters: 48 bits of milliseconds then 32 random bits, so ids sort
by creation time. Entities that live in a cell carry the cell in their id (``<cell>.<id>``) so the
gateway can route an operation on them to the cell's owner without a lookup. Clients must treat
every id as opaque.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
"""Every two-character run: ten bits a lookup, so an id is eight lookups, not sixteen."""

_RANDOM_CHUNK = 4096
_random = bytearray()
_random_lock = threading.Lock()


def _random32() -> int:
    """32 bits from the kernel's CSPRNG, read a chunk at a time (one ``getrandom`` per 1,024
    ids instead of one per id: ids are made on the shards' hot path)."""
    global _random
    with _random_lock:
        if not _random:
            _random = bytearray(os.urandom(_RANDOM_CHUNK))
        value = int.from_bytes(_random[-4:], "little")
        del _random[-4:]
        return value


def _forget_random() -> None:  # a forked child must not reuse its parent's bytes
    global _random
    _random = bytearray()


os.register_at_fork(after_in_child=_forget_random)


def new_id(now_ms: int | None = None) -> str:
    value = ((now_ms if now_ms is not None else time.time_ns() // 1_000_000) << 32) | _random32()
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20, 10, 0)])


def cell_scoped_id(cell: str, now_ms: int | None = None) -> str:
    """An id for an entity homed in ``cell``."""
    return f"{cell}.{new_id(now_ms)}"


def cell_of(entity_id: str) -> str | None:
    """The cell an id is homed in, or None if it is not a well-formed cell-scoped id."""
    cell, sep, rest = entity_id.partition(".")
    if not sep or len(rest) != 16 or not 1 <= len(cell) <= 16:
        return None
    try:
        int(cell, 16)
    except ValueError:
        return None
    return cell
