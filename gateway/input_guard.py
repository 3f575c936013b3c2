"""What every decoded input must be before a model sees it: plain JSON data, shallow enough,
every string storable, every integer a 64-bit one.

Websocket frames (JSON or msgpack) and REST bodies pass ``check_value`` once decoded; request
paths and queries pass ``check_text``. Each refusal is a ``bad_request`` naming the rule, so a
NUL byte (Postgres ``text`` cannot hold one), a lone surrogate (no UTF-8 encoding, so no reply
could carry it), a number beyond int64 (asyncpg cannot bind it) or a structure nested deep
enough to exhaust the recursion of a validator or encoder never gets past the edge.

The guard is on the hot path of every frame, so a JSON text that cannot break any rule is
proven so by three C-speed scans of the raw text instead of a walk: no ``\\u`` escape (the only
way a JSON text yields NUL or a surrogate: raw control characters are refused by the parser,
and a decoded websocket text holds no surrogate), at most ``MAX_DEPTH`` brackets, and no number
that could leave the int64 range or overflow a float: no run of 19 digits and no exponent right
after a ``:``, ``[`` or ``,`` (where every JSON number of an object starts; digits inside a
string, a timestamp in a message's text, need no walk). Anything else is walked, iteratively.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgpack

from models.errors import BadRequest

MAX_DEPTH = 32
"""Objects and arrays nested deeper than this are refused."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_RISKY_NUMBER = re.compile(r"[:\[,]\s*-?(?:\d{19}|\d+(?:\.\d*)?[eE])")
"""A number token of 19 digits or more (beyond int64, or near it) or with an exponent (1e999
parses to infinity): such a text is walked."""
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_SURROGATES = re.compile("[\ud800-\udfff]")


def check_text(text: str, where: str) -> None:
    """Refuse a NUL byte or a lone surrogate in ``text`` (``where`` names it in the message)."""
    if "\x00" in text:
        raise BadRequest(f"{where}: NUL bytes are not allowed")
    if _SURROGATES.search(text):
        raise BadRequest(f"{where}: not valid Unicode (a lone surrogate)")


def _refuse_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
"""Made once: ``json.loads`` with an argument builds a decoder per call (1.5 µs of a frame's 3)."""


def loads_json(raw: str | bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity and turns runaway nesting into ``bad_request``
    (anything else that is not JSON raises ``ValueError``, as json does: a UTF-8 BOM too)."""
    try:
        if isinstance(raw, bytes | bytearray):  # what json.loads does with bytes
            raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
        if raw.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", raw, 0)
        return _DECODER.decode(raw)
    except RecursionError:
        raise BadRequest(f"nested deeper than {MAX_DEPTH} levels") from None


def loads_msgpack(raw: bytes) -> Any:
    """A msgpack frame's value; ``bad_request`` for anything that is not one value of
    msgpack's JSON-like types (garbage, trailing bytes, unhashable keys, runaway nesting)."""
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=0)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise BadRequest("frame is not valid msgpack") from None
    except RecursionError:
        raise BadRequest(f"nested deeper than {MAX_DEPTH} levels") from None


def cut_deep_json(raw: str) -> str | None:
    """A copy of the JSON text ``raw`` with every value nested beyond ``MAX_DEPTH`` replaced by
    ``null``, or None when nothing is that deep; so the id of a frame refused for its depth can
    still be read (the parser itself may run out of stack on the original). Only frames with
    more than ``MAX_DEPTH`` brackets get here."""
    pieces: list[str] = []
    depth, cut_from, kept_until = 0, -1, 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
            if depth == MAX_DEPTH + 1 and cut_from < 0:
                cut_from = match.start()
        else:
            if depth == MAX_DEPTH + 1 and cut_from >= 0:
                pieces += (raw[kept_until:cut_from], "null")
                kept_until, cut_from = match.end(), -1
            depth -= 1
    if not pieces:
        return None
    if cut_from >= 0:  # unbalanced: the parser will refuse the rest anyway
        return "".join(pieces) + "null"
    pieces.append(raw[kept_until:])
    return "".join(pieces)


def json_text_is_plain(raw: str) -> bool:
    """True when the JSON text ``raw`` cannot break any rule of ``check_value`` (see module)."""
    return (
        "\\u" not in raw
        and raw.count("{") + raw.count("[") <= MAX_DEPTH
        and _RISKY_NUMBER.search(raw) is None
    )


def check_value(value: Any, where: str = "body") -> None:
    """Refuse anything in ``value`` that is not storable plain JSON data (see module)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadRequest(f"{where}: numbers must be finite")
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise BadRequest(f"{where}: a number beyond the 64-bit integer range")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BadRequest(f"{where}: nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, inner in item.items():
                    if not isinstance(key, str):
                        raise BadRequest(f"{where}: object keys must be strings")
                    check_text(key, where)
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)
        else:  # msgpack bin, ext or timestamp values: no JSON counterpart
            raise BadRequest(f"{where}: {type(item).__name__} values are not accepted")
