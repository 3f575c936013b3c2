"""Shards push committed events to the gateways on their direct channels (``shard_push``, on by
default): chat reaches a room's members on both gateway processes without the shard
publishing to Redis, and a gateway whose channel to a shard was down reads what it missed
from the log once it is back."""

from __future__ import annotations

import asyncio

import h3
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import HUB, SERVICES
from services.channel import DirectTransport
from store.fanout import channel
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration

HOME = (41.3874, 2.1686)  # Barcelona: away from the other tests' neighbourhoods


def _place(settings: Settings, ring: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(HOME[0], HOME[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, ring))[0])


async def _neighbours(settings: Settings, ring: int, api: Api, api_b: Api) -> tuple[Ws, Ws, str]:
    """Two located users (on ``api`` and ``api_b``) and their neighbourhood room."""
    here = _place(settings, ring)
    ann, ben = await api.signup("ann"), await api_b.signup("ben")
    a, b = await api.connect(ann), await api_b.connect(ben)
    located = await a.ok("locate", {"lat": here[0], "lng": here[1]})
    await b.ok("locate", {"lat": here[0], "lng": here[1]})
    return a, b, f"cell-{located['cell']}"


async def test_chat_is_pushed_to_both_gateways_and_not_through_redis(
    api: Api, api2: Api, settings: Settings
) -> None:
    assert settings.push_fanout
    a, b, room = await _neighbours(settings, 3, api, api2)
    assert settings.redis_url
    client = aioredis.from_url(settings.redis_url)
    sub = client.pubsub()
    await sub.subscribe(channel(f"room:{room}"))
    try:
        for i in range(3):
            await a.mutate("chat.send", {"room_id": room, "text": f"hola {i}"})
        for ws in (a, b):
            texts = [
                (await ws.next_event("chat.message"))["data"]["message"]["text"] for _ in range(3)
            ]
            assert texts == ["hola 0", "hola 1", "hola 2"]
        # what Redis carried on the room's channel: no committed event (typing/presence only)
        carried = []
        while (m := await sub.get_message(ignore_subscribe_messages=True, timeout=0.3)) is not None:
            carried.append(m["data"].decode())
        assert not [text for text in carried if '"offset"' in text]
    finally:
        await sub.aclose()
        await client.aclose()
        await a.close()
        await b.close()


async def test_a_gateway_whose_channel_was_down_reads_the_missed_events_from_the_log(
    api: Api, server: TestServer, settings: Settings
) -> None:
    a, b, room = await _neighbours(settings, 6, api, api)
    hub = server.app[HUB]
    transport = server.app[SERVICES].router.transport
    assert isinstance(transport, DirectTransport)
    resyncs = hub.resyncs
    try:
        for shard in settings.shard_names():  # every shard's channel drops...
            transport._channel(shard).drop()
        await asyncio.sleep(0.05)
        # ...and the command reopens its owner's: the push registration, then a resync
        await a.mutate("chat.send", {"room_id": room, "text": "while it was down"})
        event = await b.next_event("chat.message")
        assert event["data"]["message"]["text"] == "while it was down"
        await b.no_event("chat.message", wait=0.5)  # once, not twice (pushed and filled)
        assert hub.resyncs > resyncs
        for _ in range(100):  # the feeds' keeper reopens the others within its poll
            if all(transport.connected(s) for s in settings.shard_names()):
                break
            await asyncio.sleep(0.05)
        assert all(transport.connected(s) for s in settings.shard_names())
    finally:
        await a.close()
        await b.close()
