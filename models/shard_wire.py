"""The direct channel's wire format between a gateway and a shard (no I/O here).

A frame is a 4-byte big-endian length and a msgpack body. Requests are ``[id, method, *args]``;
answers ``[id, ok, payload]`` (``ok`` False: ``payload`` is a typed error's dict). The first
request of a connection is ``[0, "hello", token]``: the shard's secret for this incarnation,
handed out over Ray, so only processes Ray trusts can talk to a shard.

Commands travel as ``[op, {field: value}]`` and are rebuilt from the op table at the shard:
msgpack carries no code, unlike pickle, so a frame can never run anything but a known op.
Sequences arrive as lists; a command's sequence fields are tuples, so a top-level list becomes
a tuple. Datetimes go as ISO 8601 text (``wire_value``), as they do to clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import Mapping
from typing import Any

import msgpack

from models.commands import ShardCommand, ShardRead
from models.errors import BadRequest
from models.streams import wire_value

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
"""A frame longer than this is a broken peer, not a batch (a batch of 256 big commands is
well under a megabyte)."""

_FIELDS: dict[type, tuple[str, ...]] = {}


def frame(body: Any) -> bytes:
    """One frame: the length, then ``body`` as msgpack."""
    data: bytes = msgpack.packb(body, use_bin_type=True, default=wire_value)
    return HEADER.pack(len(data)) + data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's body from a stream the caller owns; ``bad_request`` for a frame that
    is not one (the caller closes that connection)."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise BadRequest(f"a frame of {size} bytes")
    try:
        return unpack(await reader.readexactly(size))
    except ValueError as exc:  # msgpack's errors are ValueErrors
        raise BadRequest(f"not a frame: {exc}") from None


def _fields(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


def encode(command: ShardCommand | ShardRead) -> list[Any]:
    """A command (or read) as ``[op, {field: value}]``."""
    return [command.op, {name: getattr(command, name) for name in _fields(type(command))}]


def decode(wire: Any, types: Mapping[str, type[Any]]) -> Any:
    """The command ``wire`` names, rebuilt as its type from ``types`` (op -> type);
    ``bad_request`` for an unknown op or fields that do not fit it."""
    if not isinstance(wire, list) or len(wire) != 2 or not isinstance(wire[1], dict):
        raise BadRequest("a command is [op, {fields}]")
    op, fields = wire
    kind = types.get(op) if isinstance(op, str) else None
    if kind is None:
        raise BadRequest(f"unknown op {op!r}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return kind(**values)
    except TypeError as exc:
        raise BadRequest(f"{op}: {exc}") from None
