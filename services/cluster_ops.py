"""Ops on the placement table: move, pin and unpin a cell, reshard, live (issue 13).

A change is a new version of the table, put in force by ``store/placement.py: save``, which
waits for every shard's batch in flight (its fence's share lock) and fences every later one: an
old owner writes nothing after the change commits, answers ``moved``, and the routers send the
cell's commands to the new owner, which activates it from Postgres. Streams continue from their
committed heads (numbered by whoever writes next), so subscribers see no gap and no duplicate;
acknowledged writes are all in Postgres.

Every change writes its audit entry (``cluster.move``, ``cluster.pin``, ``cluster.unpin``,
``cluster.scale``) in the transaction that changes the table: audited if and only if it took
effect. Holds no state of its own; concurrent changes are serialised by the table's row lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import h3

from models.admin import target_ref
from models.cells import Geo
from models.errors import BadRequest, Conflict, NotFound
from models.failover import shard_order, with_back, without
from models.placement import Placement, cell_key
from store import admin_store, placement

log = logging.getLogger("hyperlocal.cluster")

Change = Callable[[Placement], tuple[Placement, dict[str, Any]]]


async def _change(
    db: asyncpg.Pool,
    action: str,
    target: str,
    actor: str | None,
    change: Change,
    reason: str | None = None,
) -> dict[str, Any]:
    """Put ``change(table in force)`` in force under the placement row's lock (the change may
    refuse with a typed error), audited in the same transaction; its record, with the new
    version."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM placement WHERE id = 1 FOR UPDATE")
        table = await placement.load(conn)
        if table is None:
            raise Conflict("no placement table yet: is the deployment up?")
        new, record = change(table)
        await placement.save(conn, new)
        record = {**record, "placement_version": new.version}
        await admin_store.audit(conn, actor, action, target, reason, record)
    log.info("%s", action, extra=record)
    return record


def check_cell(geo: Geo, cell: str) -> str:
    """``cell``'s placement key: ``bad_request`` for what is not an H3 cell at all,
    ``not_found`` for a cell of another resolution than this deployment's."""
    try:
        valid = bool(h3.is_valid_cell(cell))
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise BadRequest(f"cell: {cell[:40]!r} is not an H3 cell")
    if not geo.is_cell(cell):
        raise NotFound(f"no such cell {cell} at resolution {geo.resolution}")
    return cell_key(cell)


def _known(table: Placement, shard: str) -> None:
    if shard not in table.shards:
        raise NotFound(f"no shard {shard!r} (shards: {', '.join(table.shards)})", shard=shard)


async def move_cell(
    db: asyncpg.Pool, geo: Geo, cell: str, shard: str, actor: str | None = None
) -> dict[str, Any]:
    """Make ``shard`` the owner of ``cell`` (an override); the move's record.

    ``bad_request`` / ``not_found`` for a bad cell (``check_cell``), ``not_found`` for a shard
    not in the table, ``conflict`` when ``shard`` owns it already or is another cell's own."""
    key = check_cell(geo, cell)

    def move(table: Placement) -> tuple[Placement, dict[str, Any]]:
        _known(table, shard)
        before = table.owner(key)
        if before == shard:
            raise Conflict(f"{shard} owns {cell} already", shard=shard)
        if shard in table.dedicated:
            raise Conflict(f"{shard} is a pinned cell's own shard: pin the cell there", shard=shard)
        return table.with_override(key, shard), {"cell": cell, "from": before, "shard": shard}

    return await _change(db, "cluster.move", target_ref("cell", cell), actor, move)


async def pin_cell(
    db: asyncpg.Pool, geo: Geo, cell: str, shard: str, actor: str | None = None
) -> dict[str, Any]:
    """Give ``cell`` the shard ``shard`` of its own: the cell moves there, and the cells
    hashing placed on ``shard`` move to the other shards (exactly those). More hot cells may
    be pinned to one dedicated shard. ``conflict`` if ``shard`` is the last shard left to
    hashing, or ``cell`` is pinned there already."""
    key = check_cell(geo, cell)

    def pin(table: Placement) -> tuple[Placement, dict[str, Any]]:
        _known(table, shard)
        if table.overrides.get(key) == shard and shard in table.dedicated:
            raise Conflict(f"{cell} is pinned to {shard} already", shard=shard)
        if table.hashed == (shard,):
            raise Conflict(f"{shard} is the only shard left to the other cells", shard=shard)
        before = table.owner(key)
        return table.with_pin(key, shard), {"cell": cell, "from": before, "shard": shard}

    return await _change(db, "cluster.pin", target_ref("cell", cell), actor, pin)


async def unpin_cell(
    db: asyncpg.Pool, geo: Geo, cell: str, actor: str | None = None
) -> dict[str, Any]:
    """Drop ``cell``'s override: rendezvous hashing places it again (a move, if that is
    another shard); a dedicated shard left with no pinned cell rejoins the hashing.
    ``conflict`` if it has none."""
    key = check_cell(geo, cell)

    def unpin(table: Placement) -> tuple[Placement, dict[str, Any]]:
        if key not in table.overrides:
            raise Conflict(f"{cell} is not pinned")
        new = table.without_override(key)
        return new, {"cell": cell, "from": table.owner(key), "shard": new.owner(key)}

    return await _change(db, "cluster.unpin", target_ref("cell", cell), actor, unpin)


def general_names(table: Placement, count: int) -> tuple[str, ...]:
    """The ``count`` shards hashing uses after a scale: ``shard-0, shard-1, ...`` in order,
    skipping the dedicated ones (scale-in removes the highest)."""
    names: list[str] = []
    index = 0
    while len(names) < count:
        name = f"shard-{index}"
        if name not in table.dedicated:
            names.append(name)
        index += 1
    return tuple(names)


async def reshard(db: asyncpg.Pool, count: int, actor: str | None = None) -> dict[str, Any]:
    """Make hashing place keys on ``count`` shards (the dedicated ones stay): a new table in
    which exactly the keys rendezvous hashing reassigns change owner. The record names the
    shards ``added`` (started by the caller before) and ``removed`` (drained and stopped by the
    caller after). The caller starts the added shards first: see services/scaling.py."""

    def scale(table: Placement) -> tuple[Placement, dict[str, Any]]:
        names = general_names(table, count)
        keep = tuple(s for s in table.shards if s in table.dedicated)
        new = table.with_shards(tuple(sorted({*names, *keep}, key=_shard_order)))
        added = sorted(set(new.shards) - set(table.shards), key=_shard_order)
        removed = sorted(set(table.shards) - set(new.shards), key=_shard_order)
        return new, {"shards": list(new.shards), "added": added, "removed": removed}

    return await _change(db, "cluster.scale", "cluster:shards", actor, scale)


def _shard_order(name: str) -> tuple[int, str]:
    return shard_order(name)


async def fail_over(db: asyncpg.Pool, dead: list[str]) -> dict[str, Any]:
    """Take the shards ``dead`` out of the table (models/failover.py: ``without``), as the
    operator, audited ``cluster.failover`` with reason ``failover``; the record names the
    shards ``failed``, the ``shards`` left and the overrides (pins) ``dropped``.
    ``conflict`` if none of them is in the table any more, or no shard would be left."""

    def change(table: Placement) -> tuple[Placement, dict[str, Any]]:
        failed = [s for s in dead if s in table.shards]
        if not failed:
            raise Conflict(f"{', '.join(dead)}: not in the table any more")
        if len(failed) == len(table.shards):
            raise Conflict("failover needs a surviving shard")
        new = without(table, failed)
        dropped = sorted(k for k, s in table.overrides.items() if s in failed)
        record = {"failed": failed, "shards": list(new.shards), "dropped": dropped}
        return new, {**record, "reason": "failover"}

    return await _change(db, "cluster.failover", "cluster:shards", None, change, "failover")


async def rejoin(db: asyncpg.Pool, back: list[str]) -> dict[str, Any]:
    """Give the failed-over shards ``back`` their hashed keys again (``with_back``), audited
    ``cluster.rejoin`` as the operator; ``conflict`` if they are all in the table already."""

    def change(table: Placement) -> tuple[Placement, dict[str, Any]]:
        rejoined = [s for s in back if s not in table.shards]
        if not rejoined:
            raise Conflict(f"{', '.join(back)}: in the table already")
        new = with_back(table, rejoined)
        return new, {"rejoined": rejoined, "shards": list(new.shards), "reason": "rejoin"}

    return await _change(db, "cluster.rejoin", "cluster:shards", None, change, "rejoin")
