"""`hyperlocal cluster`, `hyperlocal scale`, `hyperlocal cells ...`: the operator's ops calls,
sent to the running deployment's control actor as `hyperlocal admin` does (cluster/action_cli.py)
and audited with a null actor. The same actions as the ops REST API (docs/operations.md)."""

from __future__ import annotations

from typing import Any

from cluster.action_cli import arg, command, fields, run_action

_SCALE = fields("cluster.scale", "shards")
_SHARDS = arg("--shards", type=int, required=True, help="shards hashing places cells on")


def register(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="the cluster view: shards, nodes, cells, load")
    cluster.set_defaults(func=run_action, build=fields("cluster.view"))
    more = cluster.add_subparsers(dest="cluster_command")
    command(more, "scale", "add or remove shards, live", _SCALE, _SHARDS)
    command(sub, "scale", "add or remove shards, live (= cluster scale)", _SCALE, _SHARDS)
    cells = sub.add_parser("cells", help="where a cell is; move, pin or unpin it, live")
    cmds = cells.add_subparsers(dest="cells_command", required=True)
    cell, shard = arg("cell"), arg("shard")
    command(cmds, "show", "the cell's shard, pin and load", fields("cluster.cell", "cell"), cell)
    command(
        cmds, "move", "move CELL to SHARD", fields("cluster.move", "cell", "shard"), cell, shard
    )
    command(
        cmds,
        "pin",
        "pin CELL to SHARD, which becomes a shard of its own",
        fields("cluster.pin", "cell", "shard"),
        cell,
        shard,
    )
    command(
        cmds,
        "unpin",
        "let rendezvous hashing place CELL again",
        fields("cluster.unpin", "cell"),
        cell,
    )
