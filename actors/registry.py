"""Every cell operation a shard can run: one table from op to command type and handler.

Each feature keeps its handlers in its own module (``feed_ops``, ...), keyed by the typed
command (or read) each one receives (models/<feature>.py), and is listed here once. ``OPS`` is
the one table, read by the shard (``CellHost`` dispatches on a command's type) and by the
in-memory transport; op names are unique across features, and a clash fails at import.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors import chat_ops, feed_ops, market_ops, recommend_ops
from actors.cell_host import Handler, Reader
from models.commands import ShardCommand, ShardRead

_FEATURES = (
    feed_ops,
    chat_ops,
    market_ops,
    recommend_ops,
)


@dataclass(frozen=True)
class ShardOp:
    """One op: its command (or read) type and the handler that runs it at the owner."""

    command: type[ShardCommand] | type[ShardRead]
    handler: Handler | Reader


def _table() -> dict[str, ShardOp]:
    ops: dict[str, ShardOp] = {}
    for feature in _FEATURES:
        entries: list[tuple[type[ShardCommand] | type[ShardRead], Handler | Reader]] = [
            *feature.HANDLERS.items(),
            *getattr(feature, "READERS", {}).items(),
        ]
        for command, handler in entries:
            assert command.op, f"{command.__name__} has no op name"
            assert command.op not in ops, f"op {command.op!r} is defined twice"
            ops[command.op] = ShardOp(command, handler)
    return ops


OPS: dict[str, ShardOp] = _table()
HANDLERS: dict[type[ShardCommand], Handler] = {
    op.command: op.handler for op in OPS.values() if issubclass(op.command, ShardCommand)
}
READERS: dict[type[ShardRead], Reader] = {
    op.command: op.handler for op in OPS.values() if issubclass(op.command, ShardRead)
}
