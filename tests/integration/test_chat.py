"""Chat across gateways: direct rooms, history, receipts, typing, presence, access, moves."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import h3
import pytest

from cluster.config import Settings
from tests.integration.client import Api, User, Ws

pytestmark = pytest.mark.integration

HOME = (45.4642, 9.19)  # Milan: away from the feed tests' neighbourhoods


def place(settings: Settings, i: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(HOME[0], HOME[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 5 + 4 * i))[0])


async def _pair(api: Api, api2: Api) -> tuple[User, User, Ws, Ws]:
    ann, ben = await api.signup("ann"), await api2.signup("ben")
    return ann, ben, await api.connect(ann), await api2.connect(ben)


async def test_direct_chat_across_two_gateway_processes(
    api: Api, api2: Api, settings: Settings
) -> None:
    ann, ben, a, b = await _pair(api, api2)
    room = (await a.ok("chat.open", {"user_id": ben.id}))["room"]
    assert (await b.ok("chat.open", {"user_id": ann.id}))["room"]["id"] == room["id"]
    assert sorted(room["members"]) == sorted([ann.id, ben.id]) and room["kind"] == "direct"
    stream = f"room:{room['id']}"
    await a.ok("subscribe", {"stream": stream})
    await b.ok("subscribe", {"stream": stream})

    sent = [
        (await a.mutate("chat.send", {"room_id": room["id"], "text": f"hi {i}"}))["message"]
        for i in range(3)
    ]
    assert [m["offset"] for m in sent] == sorted(m["offset"] for m in sent)
    by_stream: dict[str, list[dict[str, Any]]] = {}
    while sum(len(v) for v in by_stream.values()) < 6:  # 3 on the room, 3 in ben's inbox
        event = await b.next_event("chat.message")
        by_stream.setdefault(event["stream"], []).append(event)
    live = by_stream[stream]  # live on the room stream, from the other gateway, in order
    assert [e["offset"] for e in live] == [m["offset"] for m in sent]
    assert [e["data"]["message"]["text"] for e in live] == [m["text"] for m in sent]
    inbox = by_stream[f"user:{ben.id}"]  # and in ben's inbox, wherever he is connected
    assert [e["data"]["message"]["id"] for e in inbox] == [m["id"] for m in sent]

    history_a = await a.ok("chat.history", {"room_id": room["id"]})
    history_b = await b.ok("chat.history", {"room_id": room["id"]})
    assert history_a == history_b
    assert [m["id"] for m in history_a["messages"]] == [m["id"] for m in sent]
    page = await b.ok("chat.history", {"room_id": room["id"], "limit": 2})
    assert [m["id"] for m in page["messages"]] == [m["id"] for m in sent[1:]]
    older = await b.ok("chat.history", {"room_id": room["id"], "before": page["next_before"]})
    assert [m["id"] for m in older["messages"]] == [sent[0]["id"]]

    # Read receipts flow to the other member; typing reaches them but is never stored.
    await b.mutate("chat.read", {"room_id": room["id"], "offset": sent[-1]["offset"]})
    receipt = await a.next_event("chat.read")
    assert receipt["data"] == {
        "room_id": room["id"],
        "user_id": ben.id,
        "offset": sent[-1]["offset"],
    }
    await a.ok("chat.typing", {"room_id": room["id"]})
    typing = await b.next_event("chat.typing")
    assert typing["data"]["user_id"] == ann.id and "offset" not in typing
    pool = await asyncpg.connect(settings.database_url)
    try:
        kinds = await pool.fetch("SELECT ev FROM stream_events WHERE stream = $1", stream)
    finally:
        await pool.close()
    assert {k["ev"] for k in kinds} == {"chat.message", "chat.read"}
    rooms = (await b.ok("rooms.list"))["rooms"]
    mine = next(r for r in rooms if r["id"] == room["id"])
    assert mine["read_offset"] == sent[-1]["offset"]
    for ws in (a, b):
        await ws.close()


async def test_outsiders_are_refused_everywhere(api: Api, api2: Api) -> None:
    _, ben, a, b = await _pair(api, api2)
    eve = await api.signup("eve")
    e = await api.connect(eve)
    room = (await a.ok("chat.open", {"user_id": ben.id}))["room"]
    attempts = [
        ("chat.send", {"room_id": room["id"], "text": "let me in"}, "k1"),
        ("chat.history", {"room_id": room["id"]}, None),
        ("subscribe", {"stream": f"room:{room['id']}"}, None),
        ("chat.read", {"room_id": room["id"], "offset": 0}, "k2"),
        ("chat.typing", {"room_id": room["id"]}, None),
        ("presence.get", {"stream": f"room:{room['id']}"}, None),
    ]
    for op, data, key in attempts:
        reply = await e.request(op, data, key)
        assert reply["error"]["code"] == "forbidden", (op, reply)
    missing = await e.request("chat.history", {"room_id": room["id"][:-1] + "0"})
    assert missing["error"]["code"] in ("not_found", "forbidden")
    assert (await e.request("chat.open", {"user_id": eve.id}))["error"]["code"] == "bad_request"
    assert (await e.request("chat.open", {"user_id": "nobody"}))["error"]["code"] == "not_found"
    for ws in (a, b, e):
        await ws.close()


async def test_group_rooms_membership(api: Api, settings: Settings) -> None:
    ann, ben, cid = await api.signup("ann"), await api.signup("ben"), await api.signup("cid")
    a, b, c = await api.connect(ann), await api.connect(ben), await api.connect(cid)
    here = place(settings, 0)
    await a.ok("locate", {"lat": here[0], "lng": here[1]})
    room = (await a.mutate("room.create", {"title": "Bakers", "members": [ben.id]}))["room"]
    assert room["kind"] == "group" and sorted(room["members"]) == sorted([ann.id, ben.id])
    note = await b.next_event("notification")
    assert note["data"]["kind"] == "room.added"
    denied = await c.request("chat.send", {"room_id": room["id"], "text": "x"}, "k")
    assert denied["error"]["code"] == "forbidden"
    await b.mutate("room.add", {"room_id": room["id"], "user_id": cid.id})
    await c.mutate("chat.send", {"room_id": room["id"], "text": "thanks for adding me"})
    await c.mutate("room.leave", {"room_id": room["id"]})
    again = await c.request("chat.send", {"room_id": room["id"], "text": "x"}, "k2")
    assert again["error"]["code"] == "forbidden"
    for ws in (a, b, c):
        await ws.close()


async def test_presence_in_a_room_and_a_cell(api: Api, api2: Api, settings: Settings) -> None:
    ann, ben, a, b = await _pair(api, api2)
    room = (await a.ok("chat.open", {"user_id": ben.id}))["room"]
    stream = f"room:{room['id']}"
    await a.ok("subscribe", {"stream": stream})
    await b.ok("subscribe", {"stream": stream})
    joined = await a.next_event("presence.join")
    while joined["data"]["user_id"] == ann.id:  # her own arrival may come first
        joined = await a.next_event("presence.join")
    assert joined["data"] == {"stream": stream, "user_id": ben.id}
    assert (await a.ok("presence.get", {"stream": stream}))["users"] == sorted([ann.id, ben.id])
    await b.ok("unsubscribe", {"stream": stream})
    left = await a.next_event("presence.leave")
    assert left["data"]["user_id"] == ben.id
    assert (await a.ok("presence.get", {"stream": stream}))["users"] == [ann.id]

    here = place(settings, 1)
    located = await b.ok("locate", {"lat": here[0], "lng": here[1]})
    cell_stream = f"feed:{located['cell']}"
    assert ben.id in (await a.ok("presence.get", {"stream": cell_stream}))["users"]
    await b.close()
    for _ in range(50):
        if ben.id not in (await a.ok("presence.get", {"stream": cell_stream}))["users"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("presence kept a closed session")
    await a.close()


async def test_moving_switches_feed_and_neighbourhood_room(
    api: Api, api2: Api, settings: Settings
) -> None:
    mover, stay_a, stay_b = await api.signup("mover"), await api.signup("a"), await api2.signup("b")
    m, a, b = await api.connect(mover), await api.connect(stay_a), await api2.connect(stay_b)
    first, second = place(settings, 2), place(settings, 3)
    old = await m.ok("locate", {"lat": first[0], "lng": first[1]})
    assert f"room:cell-{old['cell']}" in old["streams"]
    await a.ok("locate", {"lat": first[0], "lng": first[1]})
    await b.ok("locate", {"lat": second[0], "lng": second[1]})

    await a.mutate("chat.send", {"room_id": f"cell-{old['cell']}", "text": "old street"})
    assert (await m.next_event("chat.message"))["data"]["message"]["text"] == "old street"

    new = await m.ok("locate", {"lat": second[0], "lng": second[1]})
    assert f"room:cell-{old['cell']}" not in new["streams"]
    await a.mutate("chat.send", {"room_id": f"cell-{old['cell']}", "text": "gone"})
    await a.mutate("post.create", {"text": "old feed"})
    await b.mutate("chat.send", {"room_id": f"cell-{new['cell']}", "text": "new street"})
    await b.mutate("post.create", {"text": "new feed"})
    message = await m.next_event("chat.message")
    assert message["data"]["message"]["text"] == "new street"
    post = await m.next_event("post.created")
    assert post["data"]["post"]["text"] == "new feed"
    await m.no_event("chat.message", wait=0.5)
    await m.no_event("post.created", wait=0.2)
    far = await m.request("chat.send", {"room_id": f"cell-{old['cell']}", "text": "x"}, "k")
    assert far["error"]["code"] == "forbidden"
    for ws in (m, a, b):
        await ws.close()


async def test_chat_over_msgpack(api: Api, api2: Api) -> None:
    ann, ben = await api.signup("ann"), await api2.signup("ben")
    a = await api.connect(ann, protocol="hl.msgpack")
    b = await api2.connect(ben, protocol="hl.msgpack")
    room = (await a.ok("chat.open", {"user_id": ben.id}))["room"]
    await b.ok("subscribe", {"stream": f"room:{room['id']}"})
    await a.mutate("chat.send", {"room_id": room["id"], "text": "packed"})
    event = await b.next_event("chat.message")
    assert event["data"]["message"]["text"] == "packed"
    await a.ok("chat.typing", {"room_id": room["id"]})
    assert (await b.next_event("chat.typing"))["data"]["user_id"] == ann.id
    history = await b.ok("chat.history", {"room_id": room["id"]})
    assert [m["text"] for m in history["messages"]] == ["packed"]
    for ws in (a, b):
        await ws.close()


async def test_every_op_answers_over_msgpack(api: Api, settings: Settings) -> None:
    """Every registered op gets a reply frame over hl.msgpack: data, or a typed error."""
    from gateway.registry import OPS
    from models.errors import ERRORS_BY_CODE

    user = await api.signup("packer")
    ws = await api.connect(user, protocol="hl.msgpack")
    here = place(settings, 4)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    for name in sorted(OPS):
        reply = await ws.request(name, {}, key=f"k-{name}")
        assert reply.get("ok") is True or reply["error"]["code"] in ERRORS_BY_CODE, (name, reply)
    assert (await ws.request("no.such.op", {}))["error"]["code"] == "bad_request"
    await ws.close()
