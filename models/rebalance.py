"""The hot-cell rebalancer's decision: which cell to move where, from measured load. Pure.

Given each shard's calls/s and its hottest cells (the cluster view), ``pick`` names at most one
move per round: the hottest cell of the busiest shard, to the least busy shard, when the busiest
is overloaded (over ``ratio`` times the mean of the other shards, and at least ``min_per_s``)
and the move makes the pair more even (the cell's own load must not simply overload the target
instead). A cell that is a shard's whole load is not moved (that would only move the problem):
pin it to a shard of its own instead. Dedicated shards (pinned cells) take no part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Move:
    cell: str
    source: str
    target: str
    cell_per_s: float
    source_per_s: float
    target_per_s: float


def pick(shards: list[dict[str, Any]], ratio: float, min_per_s: float) -> Move | None:
    """One move that evens the load, or None (see the module docstring). ``shards`` are rows
    of the cluster view: ``{id, up, dedicated, calls_per_s, hot_cells: [{cell, msgs_per_s}]}``."""
    pool = [s for s in shards if s.get("up") and not s.get("dedicated")]
    if len(pool) < 2:
        return None
    busiest = max(pool, key=lambda s: float(s["calls_per_s"]))
    idlest = min(pool, key=lambda s: float(s["calls_per_s"]))
    load, spare = float(busiest["calls_per_s"]), float(idlest["calls_per_s"])
    others = (sum(float(s["calls_per_s"]) for s in pool) - load) / (len(pool) - 1)
    if load < min_per_s or load <= ratio * others:
        return None
    for hot in busiest.get("hot_cells", []):
        rate = float(hot["msgs_per_s"])
        if rate >= 0.9 * load:  # the shard's whole load: moving it moves the problem
            continue
        if spare + rate < load:  # the pair ends more even than it started
            return Move(str(hot["cell"]), busiest["id"], idlest["id"], rate, load, spare)
    return None
