from datetime import UTC

import pytest

from models.cells import Geo
from models.errors import BadRequest, NotFound, Unavailable, error_from_dict
from models.ids import cell_of, cell_scoped_id, new_id
from models.ratelimit import TokenBucket
from models.streams import Event, StreamCursor, parse_stream


def ev(offset: int, epoch: str = "e1") -> Event:
    return Event("feed:x", epoch, offset, "post.created", {})


def test_cursor_classifies_next_duplicate_gap_and_epoch() -> None:
    cursor = StreamCursor("e1", 5)
    assert cursor.classify(ev(6)) == "deliver"
    assert cursor.classify(ev(5)) == "duplicate"
    assert cursor.classify(ev(8)) == "gap"
    assert cursor.classify(ev(6, "e2")) == "epoch"
    cursor.advance(ev(6))
    assert cursor.classify(ev(7)) == "deliver"


def test_stream_names() -> None:
    assert parse_stream("feed:882a100d63fffff") == ("feed", "882a100d63fffff")
    assert parse_stream("user:abc") == ("user", "abc")
    for bad in ("feeds:x", "feed:", "user:a b", "x" * 300):
        with pytest.raises(BadRequest):
            parse_stream(bad)


def test_event_frame_round_trip() -> None:
    event = Event("room:r", "e", 3, "chat.message", {"text": "hi"})
    assert Event.from_frame(event.frame()) == event


def test_ids_sort_by_time_and_carry_cells() -> None:
    first, second = new_id(1_000), new_id(2_000)
    assert len(first) == 16 and first < second
    scoped = cell_scoped_id("882a100d63fffff")
    assert cell_of(scoped) == "882a100d63fffff"
    for bad in ("nonsense", "zz.0123456789abcdef", "882a100d63fffff.short", ""):
        assert cell_of(bad) is None


def test_geo_cells_and_bounds() -> None:
    geo = Geo(8, 1)
    cell = geo.cell_of(40.7128, -74.0060)
    ring = geo.neighbourhood(cell)
    assert ring[0] == cell and len(ring) == 7 and len(set(ring)) == 7
    assert geo.is_cell(cell) and not geo.is_cell("nope") and not Geo(9, 1).is_cell(cell)
    assert len(Geo(8, 2).neighbourhood(cell)) == 19
    for lat, lng in ((123, 0), (0, 200), (float("nan"), 0)):
        with pytest.raises(BadRequest):
            geo.cell_of(lat, lng)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=3)
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(10.5) is True  # one token back after half a second
    assert bucket.allow(10.5) is False


def test_errors_cross_process_boundaries_typed() -> None:
    err = error_from_dict(NotFound("no such post").to_dict())
    assert isinstance(err, NotFound) and err.message == "no such post"
    assert isinstance(error_from_dict({"code": "weird"}), Unavailable)


def _parse_server_frame(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one unmasked final frame, per RFC 6455 5.2."""
    assert frame[0] & 0x80, "FIN set"
    assert not frame[1] & 0x80, "server frames are unmasked"
    n, at = frame[1] & 0x7F, 2
    if n == 126:
        n, at = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, at = int.from_bytes(frame[2:10], "big"), 10
    assert len(frame) == at + n, "exactly one frame"
    return frame[0] & 0x0F, frame[at:]


def test_ws_frame_lengths_and_opcodes() -> None:
    from gateway.sessions import ws_frame

    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        opcode, payload = _parse_server_frame(ws_frame(b"x" * size))
        assert (opcode, payload) == (0x2, b"x" * size)
    text = "café ünïcode " * 20
    opcode, payload = _parse_server_frame(ws_frame(text))
    assert (opcode, payload.decode()) == (0x1, text)


def test_cursor_take_delivers_only_the_next_event_and_advances() -> None:
    from models.streams import Event, StreamCursor

    cursor = StreamCursor("e", 4)

    def ev(offset: int, epoch: str = "e") -> Event:
        return Event("room:r", epoch, offset, "chat.message", {})

    assert cursor.take(ev(5)) == "deliver" and cursor.offset == 5
    assert cursor.take(ev(5)) == "duplicate" and cursor.offset == 5
    assert cursor.take(ev(7)) == "gap" and cursor.offset == 5
    assert cursor.take(ev(6, "other")) == "epoch" and cursor.offset == 5


def test_placement_owner_is_stable_when_answered_from_its_cache() -> None:
    from models.placement import Placement

    table = Placement(1, ("a", "b", "c"))
    first = {f"cell:{n}": table.owner(f"cell:{n}") for n in range(50)}
    assert {k: table.owner(k) for k in first} == first
    assert table == Placement(1, ("a", "b", "c"))  # the cache is not part of the value


def test_event_json_is_the_frame_encoded_once() -> None:
    import json

    from models.streams import Event

    data = {"message": {"text": 'quote " and ünï', "offset": 9, "n": [1, 2]}}
    event = Event("room:r", "ep", 9, "chat.message", data)
    assert json.loads(event.frame_json) == event.frame()
    assert event.frame_json == json.dumps(event.frame(), separators=(",", ":"), ensure_ascii=False)
    assert json.loads(event.data_json) == data
    assert event.frame_json is event.frame_json  # computed once


def test_compact_json_writes_what_the_standard_library_writes() -> None:
    """orjson encodes (models/streams.py); the text must be json's, byte for byte, for what
    events, replies and jsonb columns hold, and json must take over where orjson refuses."""
    import json
    from datetime import datetime, timedelta, timezone

    import numpy as np

    from models.streams import compact_json, parse_json, wire_value

    def reference(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=wire_value)

    values: list[object] = [
        {"ev": "chat.message", "offset": 7, "data": {"text": 'é ☕ \u2028 \x7f "q" \\ \n'}},
        {"at": datetime(2026, 12, 1, 17, 9, 34, 483715, tzinfo=UTC)},
        {"at": datetime(2026, 1, 1, tzinfo=UTC), "naive": datetime(2026, 1, 1, 5, 6, 7)},
        {"at": datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))},
        [1, -2, 2**63 - 1, -(2**63), 0.1, 1e16, -0.0, 123456789.123, None, True, False, [], {}],
        {1: "int keys become strings", "nested": [{"a": [None]}]},
        2**70,  # beyond orjson's 64 bits: json's text
        np.float64(0.25),  # a float subclass orjson refuses: json's text
    ]
    for value in values:
        assert compact_json(value) == reference(value), value
    assert json.loads(compact_json(1e-7)) == 1e-7  # "1e-7" where json writes "1e-07"
    assert parse_json(compact_json({"big": 2**70, "t": "x"})) == {"big": 2**70, "t": "x"}
    with pytest.raises(TypeError):
        compact_json({"no": object()})  # what neither can carry is still refused


def test_an_event_made_from_its_encoded_data_is_not_encoded_again() -> None:
    from models.streams import Event

    event = Event.encoded("user:u1", "e1", 3, "order.updated", {"a": 1}, '{"a":1}')
    assert event.data_json == '{"a":1}' and '"offset":3' in event.frame_json
    assert event == Event("user:u1", "e1", 3, "order.updated", {"a": 1})
