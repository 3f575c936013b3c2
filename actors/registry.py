"""Every cell operation a shard can run: one table of mutations, one of reads.

Each feature keeps its handlers in its own module (``feed_ops``, ...) and is listed here once;
CellShard hosts the union. Op names are unique across features.
"""

from __future__ import annotations

from actors import chat_ops, feed_ops, market_ops, recommend_ops
from actors.cell_host import Handler, Reader

_FEATURES = (
    feed_ops,
    chat_ops,
    market_ops,
    recommend_ops,
)


def _merge(tables: list[dict[str, object]]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for table in tables:
        clash = merged.keys() & table.keys()
        assert not clash, f"op names defined twice: {sorted(clash)}"
        merged.update(table)
    return merged


HANDLERS: dict[str, Handler] = _merge([f.HANDLERS for f in _FEATURES])  # type: ignore[assignment]
READERS: dict[str, Reader] = _merge([getattr(f, "READERS", {}) for f in _FEATURES])  # type: ignore[assignment]
