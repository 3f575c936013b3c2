"""The direct channel's format: commands rebuilt as their own types from the op table, frames
bounded, nothing but known ops accepted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from actors.registry import OPS
from models import shard_wire as wire
from models.chat import ChatSend, RoomCreate
from models.errors import BadRequest
from models.market import OrderReserve
from models.recommend.commands import RankRead

TYPES = {name: op.command for name, op in OPS.items()}
CELL = "88be0e35cbfffff"


@pytest.mark.parametrize(
    "command",
    [
        ChatSend(user_id="u", key="k", room_id=f"cell-{CELL}", text="hi"),
        RoomCreate(
            user_id="u", key="k", room_id=f"{CELL}.0123456789abcdef", title="t", members=("a", "b")
        ),
        OrderReserve(
            user_id="u",
            key="k",
            vendor_id=f"{CELL}.0123456789abcdef",
            group_id="g",
            items=({"listing_id": "l", "qty": 2},),
            total=5,
            currency="eur",
            ttl_s=60.0,
        ),
        RankRead(cell=CELL, user_id="u", lat=1.5, lng=-2.5, items=({"id": "p"},)),
    ],
)
def test_a_command_comes_back_as_itself(command: object) -> None:
    encoded = wire.encode(command)  # type: ignore[arg-type]
    body = wire.unpack(wire.frame(encoded)[wire.HEADER.size :])
    assert wire.decode(body, TYPES) == command


@pytest.mark.parametrize(
    "bad",
    [
        "chat.send",
        ["no.such.op", {}],
        ["chat.send", {"user_id": "u"}],  # missing fields
        ["chat.send", {"user_id": "u", "key": "k", "room_id": "r", "text": "t", "evil": 1}],
        [["chat.send"], {}],
    ],
)
def test_anything_but_a_known_op_with_its_fields_is_refused(bad: object) -> None:
    with pytest.raises(BadRequest):
        wire.decode(bad, TYPES)


def test_datetimes_go_as_iso_text() -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    body = wire.unpack(wire.frame({"created_at": at})[wire.HEADER.size :])
    assert body == {"created_at": "2026-12-01T12:00:00+00:00"}


async def test_frames_are_read_whole_and_oversized_ones_refused() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(wire.frame([1, True, {"a": 1}]) + wire.frame([2, False, None]))
    assert await wire.read_frame(reader) == [1, True, {"a": 1}]
    assert await wire.read_frame(reader) == [2, False, None]
    huge = asyncio.StreamReader()
    huge.feed_data(wire.HEADER.pack(wire.MAX_FRAME + 1))
    with pytest.raises(BadRequest):
        await wire.read_frame(huge)
    garbage = asyncio.StreamReader()
    garbage.feed_data(wire.HEADER.pack(3) + b"\xc1\xc1\xc1")
    with pytest.raises(BadRequest):
        await wire.read_frame(garbage)
