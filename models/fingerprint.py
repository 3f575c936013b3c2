"""What a mutation asked, as a short digest: a retry under the same idempotency key must ask
the same thing, or it is a ``conflict`` (store/idempotency.py). Pure.

The digest covers every field of the command but who asks and the key (``user_id``, ``key``):
the fields are built from the request alone (ids the shard mints are not fields), so a true
retry has the same digest. ``repr`` of the field values is deterministic for what commands hold
(text, numbers, tuples, dicts built in field order) and costs a few microseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib

from models.commands import ShardCommand

_SKIP = frozenset({"user_id", "key"})
_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(
            f.name for f in dataclasses.fields(kind) if f.name not in _SKIP
        )
    return names


def fingerprint(command: ShardCommand) -> str:
    """A 96-bit digest of the op and every field of ``command`` but ``user_id`` and ``key``."""
    values = tuple(getattr(command, name) for name in _fields(type(command)))
    text = repr((command.op, values)).encode()
    return hashlib.blake2b(text, digest_size=12).hexdigest()
