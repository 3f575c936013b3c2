"""`hyperlocal cluster`, `hyperlocal scale`, `hyperlocal cells ...`: the operator's ops calls,
sent to the running deployment's control actor as `hyperlocal admin` does (cluster/admin_cli.py)
and audited with a null actor. The same actions as the ops REST API (docs/operations.md)."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.admin_cli import run_action

Built = tuple[str, dict[str, Any]]


def _view(a: argparse.Namespace) -> Built:
    return "cluster.view", {}


def _scale(a: argparse.Namespace) -> Built:
    return "cluster.scale", {"shards": a.shards}


def _show(a: argparse.Namespace) -> Built:
    return "cluster.cell", {"cell": a.cell}


def _move(a: argparse.Namespace) -> Built:
    return "cluster.move", {"cell": a.cell, "shard": a.shard}


def _pin(a: argparse.Namespace) -> Built:
    return "cluster.pin", {"cell": a.cell, "shard": a.shard}


def _unpin(a: argparse.Namespace) -> Built:
    return "cluster.unpin", {"cell": a.cell}


def _scale_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--shards", type=int, required=True, help="shards hashing places cells on")
    cmd.set_defaults(func=run_action, build=_scale)


def register(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="the cluster view: shards, nodes, cells, load")
    cluster.set_defaults(func=run_action, build=_view)
    more = cluster.add_subparsers(dest="cluster_command")
    _scale_args(more.add_parser("scale", help="add or remove shards, live"))
    _scale_args(sub.add_parser("scale", help="add or remove shards, live (= cluster scale)"))
    cells = sub.add_parser("cells", help="where a cell is; move, pin or unpin it, live")
    cmds = cells.add_subparsers(dest="cells_command", required=True)
    show = cmds.add_parser("show", help="the cell's shard, pin and load")
    show.add_argument("cell")
    show.set_defaults(func=run_action, build=_show)
    for name, build, text in (
        ("move", _move, "move CELL to SHARD"),
        ("pin", _pin, "pin CELL to SHARD, which becomes a shard of its own"),
    ):
        cmd = cmds.add_parser(name, help=text)
        cmd.add_argument("cell")
        cmd.add_argument("shard")
        cmd.set_defaults(func=run_action, build=build)
    unpin = cmds.add_parser("unpin", help="let rendezvous hashing place CELL again")
    unpin.add_argument("cell")
    unpin.set_defaults(func=run_action, build=_unpin)
