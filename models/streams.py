"""Streams a client can follow, their positions, and the events they carry (rule 3).

Every stream has an ``epoch`` (changes only if its history is lost) and a gap-free, increasing
``offset``. An event is immutable once committed. Pure data, no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson

from models.errors import BadRequest


def wire_value(value: Any) -> Any:
    """How a value JSON and msgpack cannot carry goes on the wire: a datetime (kept as one
    until then) as ISO 8601 text. The ``default`` of every encoder of the project."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot go on the wire")


_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def compact_json(value: Any) -> str:
    """JSON as this project puts it on the wire and in the log: no spaces, UTF-8 kept.

    Encoded by orjson (~20x the standard library here: an event of a chat message takes ~1
    against ~25 µs), which writes what ``json.dumps(separators=(",", ":"),
    ensure_ascii=False, default=wire_value)`` writes for everything commands and events hold,
    datetimes included, but for a float below 1e-4 in exponent form (``1e-7`` for ``1e-07``:
    the same number; tests/unit/test_streams_and_misc.py). What orjson refuses (an int beyond
    64 bits, a float subclass such as numpy's) goes through ``json`` instead.
    """
    try:
        return orjson.dumps(value, default=wire_value, option=_ORJSON).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=wire_value)


def parse_json(text: str | bytes) -> Any:
    """JSON text written by this project (or Postgres) as a value: orjson, else ``json`` for
    what orjson refuses (an int beyond 64 bits). Not for client input: the gateway's
    ``loads_json`` applies the input rules."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_STREAM = re.compile(r"^(feed|room|user|listing):([0-9A-Za-z._-]{1,80})$")


@dataclass(frozen=True)
class Event:
    """One committed event of a stream. Immutable, ``data`` included: its JSON is computed once
    and shared by the log row, the Redis message and every gateway that re-encodes it."""

    stream: str
    epoch: str
    offset: int
    ev: str
    data: dict[str, Any]

    @cached_property
    def data_json(self) -> str:
        """``data`` as compact JSON (the log's ``data`` column)."""
        return compact_json(self.data)

    @cached_property
    def frame_json(self) -> str:
        """The wire frame as compact JSON, built around ``data_json`` (not encoded again)."""
        head = compact_json({"ev": self.ev, "stream": self.stream, "epoch": self.epoch})
        return f'{head[:-1]},"offset":{self.offset},"data":{self.data_json}}}'

    def frame(self) -> dict[str, Any]:
        """The wire shape of a pushed event (PROTOCOL.md)."""
        return {
            "ev": self.ev,
            "stream": self.stream,
            "epoch": self.epoch,
            "offset": self.offset,
            "data": self.data,
        }

    @classmethod
    def encoded(
        cls, stream: str, epoch: str, offset: int, ev: str, data: dict[str, Any], data_json: str
    ) -> Event:
        """An event whose ``data`` was encoded already (``data_json``): not encoded again."""
        event = cls(stream, epoch, offset, ev, data)
        event.__dict__["data_json"] = data_json  # where ``cached_property`` keeps it
        return event

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Event:
        return cls(
            frame["stream"], frame["epoch"], int(frame["offset"]), frame["ev"], frame["data"]
        )


@dataclass(frozen=True)
class Position:
    epoch: str
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}


def single_writer(stream: str) -> bool:
    """Feed, room and listing streams have one writer, the owner of their cell (rule 2); a
    user's inbox is written by the owner of whatever the event is about."""
    return stream.startswith(("feed:", "room:", "listing:"))


def parse_stream(name: str) -> tuple[str, str]:
    """(kind, id) of a stream name, or bad_request."""
    match = _STREAM.match(name)
    if not match:
        raise BadRequest(f"unknown stream {name[:100]!r}")
    return match[1], match[2]


def feed_stream(cell: str) -> str:
    return f"feed:{cell}"


def user_stream(user_id: str) -> str:
    return f"user:{user_id}"


def listing_stream(listing_id: str) -> str:
    """One listing's watchers: every state of it (conflated stock moves included)."""
    return f"listing:{listing_id}"


@dataclass
class StreamCursor:
    """What one subscriber has seen of one stream; decides what to deliver next.

    ``accept`` is the whole dedupe/ordering rule: deliver an event only if it is the next one;
    an event beyond the next means a gap the caller must fill from the log first.
    """

    epoch: str
    offset: int

    def classify(self, event: Event) -> str:
        """'deliver', 'duplicate' (already seen), 'gap' (missing events before it) or 'epoch'."""
        if event.epoch != self.epoch:
            return "epoch"
        if event.offset <= self.offset:
            return "duplicate"
        if event.offset == self.offset + 1:
            return "deliver"
        return "gap"

    def advance(self, event: Event) -> None:
        self.offset = event.offset

    def take(self, event: Event) -> str:
        """``classify``, and advance past the event when it is the one to deliver."""
        if event.epoch == self.epoch and event.offset == self.offset + 1:
            self.offset = event.offset
            return "deliver"
        return self.classify(event)
