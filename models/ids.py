"""Opaque, time-sortable ids.

An id is 16 lowercase base32 characters: 48 bits of milliseconds then 32 random bits, so ids sort
by creation time. Entities that live in a cell carry the cell in their id (``<cell>.<id>``) so the
gateway can route an operation on them to the cell's owner without a lookup. Clients must treat
every id as opaque.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase


def new_id(now_ms: int | None = None) -> str:
    value = ((now_ms if now_ms is not None else time.time_ns() // 1_000_000) << 32) | (
        secrets.randbits(32)
    )
    chars = []
    for _ in range(16):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


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
