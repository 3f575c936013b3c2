"""Every cell operation a shard can run: one table from op to command type and handler.

Each feature keeps its handlers in its own module (``feed_ops``, ...), keyed by the typed
command (or read) each one receives (models/<feature>.py), and is listed here once. ``OPS`` is
the one table, read by the shard (``CellHost`` dispatches on a command's type) and by the
in-memory transport; op names are unique across features, and a clash fails at import.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors import (
    chat_ops,
    feed_ops,
    market_ops,
    moderation_ops,
    recommend_ops,
    refund_ops,
    social_ops,
)
from actors.cell_host import Handler, Reader, Tick
from models.commands import ShardCommand, ShardRead

_FEATURES = (
    feed_ops,
    chat_ops,
    market_ops,
    refund_ops,
    recommend_ops,
    moderation_ops,
    social_ops,
)


@dataclass(frozen=True)
class ShardOp:
    """One op: its command (or read) type and the handler that runs it at the owner."""

    command: type[ShardCommand] | type[ShardRead]
    handler: Handler | Reader


def _tables() -> tuple[
    dict[str, ShardOp], dict[type[ShardCommand], Handler], dict[type[ShardRead], Reader]
]:
    ops: dict[str, ShardOp] = {}
    handlers: dict[type[ShardCommand], Handler] = {}
    readers: dict[type[ShardRead], Reader] = {}

    def add(command: type[ShardCommand] | type[ShardRead], handler: Handler | Reader) -> None:
        assert command.op, f"{command.__name__} has no op name"
        assert command.op not in ops, f"op {command.op!r} is defined twice"
        ops[command.op] = ShardOp(command, handler)

    for feature in _FEATURES:
        for command, handler in feature.HANDLERS.items():
            add(command, handler)
            handlers[command] = handler
        for read, reader in getattr(feature, "READERS", {}).items():
            add(read, reader)
            readers[read] = reader
    return ops, handlers, readers


OPS, HANDLERS, READERS = _tables()
"""``OPS``: op name -> its type and handler; ``HANDLERS`` / ``READERS``: the same by type."""

TICKS: tuple[Tick, ...] = tuple(t for f in _FEATURES for t in getattr(f, "TICKS", ()))
"""Periodic work of every feature (``actors/cell_host.py: Tick``)."""
