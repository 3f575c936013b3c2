"""Ops REST endpoints (role ``ops``): thin adapters in front of the control actor's
``cluster.*`` actions (services/control.py -> services/scaling.py), as the admin API is.

Each route (gateway/control_api.py) validates the body into its typed model (a ``bad_request``
never reaches the actor), authenticates the caller and calls one action, which checks the
permission, runs it and audits it. docs/operations.md describes what each one does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.control_api import ControlRoute, add_control_routes
from gateway.openapi_schema import Schema, errors, json_body, obj

_SHARD = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class ShardBody(BaseModel):
    """``{shard}``: the body of a move and of a pin."""

    model_config = ConfigDict(extra="forbid")
    shard: str = _SHARD


class ScaleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shards: int = Field(ge=1, le=256)

    @field_validator("shards", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        """A JSON number (``3`` or ``3.0``, as JSON Schema's integer allows), not ``"3"``."""
        if isinstance(value, (str, bool)):
            raise ValueError("a whole number")
        return value


_CELL = "/api/v1/admin/cluster/cells/{cell}"
ROUTES = (
    ControlRoute("GET", "/api/v1/admin/cluster", "cluster.view"),
    ControlRoute("GET", _CELL, "cluster.cell", ("cell",)),
    ControlRoute("POST", _CELL + "/move", "cluster.move", ("cell",), body=ShardBody),
    ControlRoute("POST", _CELL + "/pin", "cluster.pin", ("cell",), body=ShardBody),
    ControlRoute("POST", _CELL + "/unpin", "cluster.unpin", ("cell",)),
    ControlRoute("POST", "/api/v1/admin/cluster/scale", "cluster.scale", body=ScaleBody),
)


def add_routes(app: web.Application) -> None:
    add_control_routes(app, ROUTES)


# -- OpenAPI ------------------------------------------------------------------------------------
_STR: Schema = {"type": "string"}
_NUM: Schema = {"type": "number"}
_INT: Schema = {"type": "integer"}
_BOOL: Schema = {"type": "boolean"}
_SHARD_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 64,
                       "pattern": "^[A-Za-z0-9_.-]+$"}  # fmt: skip
_CELL_PARAM = [{"name": "cell", "in": "path", "required": True, "schema": _STR}]
_HOT = obj(["cell", "msgs_per_s"], cell=_STR, msgs_per_s=_NUM, shard=_STR)
_CHANGE = obj(["cell", "from", "shard", "placement_version"], cell=_STR,
              **{"from": _STR}, shard=_STR, placement_version=_INT)  # fmt: skip


def _op(summary: str, ok: Schema, *errs: int, **more: Any) -> Schema:
    return {
        "summary": summary,
        "description": "Needs the role ops; every change writes an audit entry.",
        "security": [{"bearer": []}],
        "responses": {"200": {"description": "ok", **json_body(ok)}, **errors(*errs)},
        **more,
    }


OPENAPI_SCHEMAS: dict[str, Any] = {
    "ClusterShard": obj(
        ["id", "node", "up", "cells", "active_cells", "calls_per_s"],
        id=_STR, node={"type": ["string", "null"]}, up=_BOOL, cells=_INT, active_cells=_INT,
        calls_per_s=_NUM, commands=_INT, batches=_INT, batch_size_mean=_NUM,
        commit_ms_mean=_NUM, commit_s=_NUM, gc_full_collections=_NUM,
        gc_full_pause_seconds=_NUM, gc_young_pause_seconds=_NUM, gc_longest_pause_seconds=_NUM,
        hot_cells={"type": "array", "items": _HOT}, pinned=_INT, dedicated=_BOOL,
    ),
}  # fmt: skip

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/admin/cluster": {
        "get": _op("Shards, their node, cells, load, hot cells",
                   obj(["placement_version", "shards"], placement_version=_INT,
                       shards={"type": "array",
                               "items": {"$ref": "#/components/schemas/ClusterShard"}},
                       hot_cells={"type": "array", "items": _HOT}),
                   401, 403, 409, 503),
    },
    "/api/v1/admin/cluster/cells/{cell}": {
        "get": _op("Where a cell is, whether it is pinned and active, its load",
                   obj(["cell", "shard", "pinned", "active", "placement_version"], cell=_STR,
                       shard=_STR, pinned=_BOOL, dedicated=_BOOL, active=_BOOL,
                       msgs_per_s=_NUM, shard_up=_BOOL, placement_version=_INT),
                   400, 401, 403, 404, 409, 503, parameters=_CELL_PARAM),
    },
    "/api/v1/admin/cluster/cells/{cell}/move": {
        "post": _op("Move a cell to a shard, live", _CHANGE, 400, 401, 403, 404, 409, 503,
                    parameters=_CELL_PARAM,
                    requestBody=json_body(obj(["shard"], shard=_SHARD_NAME))),
    },
    "/api/v1/admin/cluster/cells/{cell}/pin": {
        "post": _op("Pin a hot cell to a shard of its own", _CHANGE, 400, 401, 403, 404, 409,
                    503, parameters=_CELL_PARAM,
                    requestBody=json_body(obj(["shard"], shard=_SHARD_NAME))),
    },
    "/api/v1/admin/cluster/cells/{cell}/unpin": {
        "post": _op("Let rendezvous hashing place a pinned or moved cell again", _CHANGE,
                    400, 401, 403, 404, 409, 503, parameters=_CELL_PARAM),
    },
    "/api/v1/admin/cluster/scale": {
        "post": _op("Add or remove shards; exactly the cells hashing reassigns move, live",
                    obj(["shards", "added", "removed", "placement_version", "changed"],
                        shards={"type": "array", "items": _STR},
                        added={"type": "array", "items": _STR},
                        removed={"type": "array", "items": _STR},
                        placement_version=_INT, changed=_BOOL),
                    400, 401, 403, 409, 503,
                    requestBody=json_body(obj(["shards"], shards={"type": "integer",
                                                                  "minimum": 1,
                                                                  "maximum": 256}))),
    },
}  # fmt: skip
