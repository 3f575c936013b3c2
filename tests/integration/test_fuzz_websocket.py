"""Websocket fuzzing (issue 14, item 9): wrong types, huge numbers, deep nesting, lone
surrogates, binary frames (on ``hl.json`` too) and msgpack garbage (random bytes, bin, ext and
timestamp values, strings of invalid UTF-8), on both subprotocols. Every frame gets exactly
one reply, a typed one (never ``unavailable``: that is the websocket's 5xx), carrying the
frame's id whenever it had a valid one, and the session lives on.

Bounded: a fixed seed and ``FRAMES`` frames per subprotocol (a few seconds)."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import msgpack
import pytest

from gateway.registry import OPS
from models.errors import ERRORS_BY_CODE
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration

FRAMES = 250
SEED = 14
_OPS = sorted(OPS)
_CODES = set(ERRORS_BY_CODE) - {"unavailable"}


def _scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            False,
            0,
            -1,
            rng.randint(-(2**31), 2**31),
            2**63,
            -(2**63) - 1,
            2**70,
            10**30 * 1.0,
            1e308,
            rng.random(),
            "",
            "x" * rng.randint(1, 300),
            "a\x00b",
            "\ud800",
            "\udfff tail",
            "\u202e\u200b\ufeff",
            "🙂" * 5,
            "06h342n0d3nnwx6d",
            "feed:" + "8" * 15,
        ]
    )


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return _scalar(rng)
    if roll < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["lat", "lng", "text", "q", "id", "x", "\x00", "\ud800"]): _value(
        rng, depth + 1
    ) for _ in range(rng.randint(0, 4))}  # fmt: skip


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _frame(rng: random.Random, ident: int) -> tuple[dict[str, Any], bool]:
    """A request with random parts; True if its id is valid (the reply must carry it)."""
    good_id = rng.random() < 0.7
    frame: dict[str, Any] = {"id": ident if good_id else _scalar(rng)}
    if rng.random() < 0.9:
        frame["op"] = rng.choice(_OPS) if rng.random() < 0.8 else _scalar(rng)
    if rng.random() < 0.5:
        frame["key"] = uuid.uuid4().hex if rng.random() < 0.8 else _scalar(rng)
    roll = rng.random()
    if roll < 0.6:
        frame["data"] = {
            name: _value(rng) for name in rng.sample(["lat", "lng", "text", "q", "stream",
                                                     "listing_id", "max_price", "limit",
                                                     "since", "room_id", "cursor"], 3)
        }  # fmt: skip
    elif roll < 0.7:
        frame["data"] = _deep(rng.choice([31, 33, 200]))
    elif roll < 0.8:
        frame["data"] = _value(rng)
    valid = good_id and isinstance(frame.get("id"), int)
    return frame, valid


def _garbage(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def _msgpack_oddity(rng: random.Random, ident: int) -> tuple[bytes, int | None]:
    """A msgpack frame with what JSON cannot hold: bin, ext and timestamp values (the id still
    readable: the reply must carry it), or a str of invalid UTF-8 (nothing readable)."""
    roll = rng.random()
    if roll < 0.25:
        odd: Any = b"\x00\xff" * rng.randint(0, 8)
    elif roll < 0.5:
        odd = msgpack.ExtType(rng.randint(0, 127), _garbage(rng))
    elif roll < 0.75:
        odd = msgpack.Timestamp(rng.randint(0, 2**32))
    else:
        head = b"\x82" + msgpack.packb("id") + msgpack.packb(ident) + msgpack.packb("op")
        return head + b"\xa3\xff\xfe\xfd", None
    frame = {"id": ident, "op": rng.choice(_OPS), "data": {"text": odd}}
    return msgpack.packb(frame, use_bin_type=True), ident


async def _reply(ws: Ws) -> dict[str, Any]:
    while True:
        frame = await ws.next_event(None, timeout=20)
        if "re" in frame:
            return frame


async def _fuzz(ws: Ws, rng: random.Random, binary: bool) -> None:
    for n in range(FRAMES):
        ident = 10_000 + n
        kind = rng.random()
        expect_id: int | None = None
        if binary and kind < 0.15:
            raw: str | bytes = _garbage(rng)
        elif binary and kind < 0.2:
            raw, expect_id = _msgpack_oddity(rng, ident)
        elif not binary and kind < 0.05:  # binary frames where text ones are spoken
            raw = _garbage(rng) if rng.random() < 0.5 else json.dumps({"id": ident}).encode()
        elif kind < 0.25:
            raw = rng.choice(["{", "[]", '"x"', "null", '{"id": 1e999}', "{" * 5000])
            if rng.random() < 0.3:  # nested beyond any parser's stack, with a valid id
                expect_id = ident
                raw = f'{{"id": {ident}, "op": "ping", "data": {{"x": {"[" * 5000}{"]" * 5000}}}}}'

        else:
            frame, valid = _frame(rng, ident)
            expect_id = ident if valid else None
            text = json.dumps(frame)  # lone surrogates travel as \\u escapes
            if binary and rng.random() < 0.7:
                try:
                    raw = msgpack.packb(frame, use_bin_type=True)
                except (OverflowError, UnicodeEncodeError, TypeError):
                    raw = text
            else:
                raw = text
        await ws.send_raw(raw)
        reply = await _reply(ws)
        if reply.get("ok") is False:
            assert reply["error"]["code"] in _CODES, (raw, reply)
        if expect_id is not None:
            assert reply["re"] == expect_id, (raw, reply)
    assert (await ws.ok("ping"))["pong"] is True


@pytest.mark.parametrize("protocol", ["hl.json", "hl.msgpack"])
async def test_fuzzed_frames_get_typed_replies_and_the_session_lives(
    api: Api, protocol: str
) -> None:
    rng = random.Random(f"{SEED}:{protocol}")
    ws = await api.connect(await api.signup("fuzz"), protocol=protocol)
    await _fuzz(ws, rng, protocol == "hl.msgpack")
    assert not ws.closed.is_set()
    await ws.close()
