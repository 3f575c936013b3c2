"""The shards' lean publisher (store/fanout.py RespPublisher) against the session's Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from cluster.config import Settings
from models.streams import Event
from store.fanout import RespPublisher, RespSubscriber, channel


def _event(stream: str, offset: int) -> Event:
    return Event(stream, "e1", offset, "chat.message", {"n": offset})


async def _listen(url: str, *streams: str) -> tuple[aioredis.Redis, aioredis.client.PubSub]:
    client = aioredis.from_url(url)
    sub = client.pubsub()
    await sub.subscribe(*(channel(s) for s in streams))
    return client, sub


async def _messages(sub: aioredis.client.PubSub, n: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    async with asyncio.timeout(5):
        while len(got) < n:
            m = await sub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if m is not None:
                got.append((m["channel"].decode(), m["data"].decode()))
    return got


async def test_one_message_per_stream_in_order_and_auth(settings: Settings) -> None:
    assert settings.redis_url
    client, sub = await _listen(settings.redis_url, "room:pa", "room:pb")
    publisher = RespPublisher(settings.redis_url)
    try:
        first = [_event("room:pa", 1), _event("room:pb", 1), _event("room:pa", 2)]
        await publisher.publish(first)
        await publisher.publish([_event("room:pa", 3)])
        got = await _messages(sub, 3)
        assert got == [
            (channel("room:pa"), first[0].frame_json + "\n" + first[2].frame_json),
            (channel("room:pb"), first[1].frame_json),
            (channel("room:pa"), _event("room:pa", 3).frame_json),
        ]
        assert publisher.failures == 0
    finally:
        await publisher.aclose()
        await sub.aclose()
        await client.aclose()


async def test_a_lost_connection_is_logged_and_the_next_publish_reconnects(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    assert settings.redis_url
    client, sub = await _listen(settings.redis_url, "room:pc")
    publisher = RespPublisher(settings.redis_url, "hl-fanout-test-kill")
    try:
        await publisher.publish([_event("room:pc", 1)])
        assert await _messages(sub, 1)
        mine = [c for c in await client.client_list() if c["name"] == "hl-fanout-test-kill"]
        assert len(mine) == 1  # named, so ops (and this test) can find it
        await client.client_kill_filter(_id=mine[0]["id"])
        with caplog.at_level(logging.WARNING, "hyperlocal.fanout"):
            await publisher.publish([_event("room:pc", 2)])  # the dead connection: logged
            await publisher.publish([_event("room:pc", 3)])  # a new one
        await sub.aclose()
        client2, sub2 = await _listen(settings.redis_url, "room:pc")
        await publisher.publish([_event("room:pc", 4)])
        assert [d for _, d in await _messages(sub2, 1)] == [_event("room:pc", 4).frame_json]
        await sub2.aclose()
        await client2.aclose()
        assert publisher.failures >= 1
        assert "publish of 1 events failed" in caplog.text
    finally:
        await publisher.aclose()
        await client.aclose()


async def test_a_wrong_password_is_a_logged_failure_not_an_exception(settings: Settings) -> None:
    assert settings.redis_url
    url = (
        settings.redis_url.replace("://:", "://:wrong", 1) if "://:" in settings.redis_url else None
    )
    if url is None:
        pytest.skip("the session's Redis has no password")
    url = settings.redis_url.replace("://:", "://:wrong", 1)
    publisher = RespPublisher(url)
    try:
        await publisher.publish([_event("room:pd", 1)])
        assert publisher.failures == 1
    finally:
        await publisher.aclose()


async def test_the_subscriber_reads_what_a_socket_read_brought_and_resubscribes(
    settings: Settings,
) -> None:
    """The hub's reader (store/fanout.py RespSubscriber): every message of the channels it
    subscribed to, none after an unsubscribe, confirmations skipped; a killed connection is a
    ConnectionError, and ``connect`` opens a new one subscribed again."""
    assert settings.redis_url
    sub = RespSubscriber(settings.redis_url, "hl-hub-test")
    publisher = RespPublisher(settings.redis_url)
    client = aioredis.from_url(settings.redis_url)
    try:
        await sub.connect([channel("room:sa")])
        sub.subscribe(channel("room:sb"))
        await asyncio.sleep(0.1)  # the subscriptions reach Redis before the publishes
        await publisher.publish([_event("room:sa", 1), _event("room:sb", 1)])
        got: list[tuple[str, bytes]] = []
        async with asyncio.timeout(5):
            while len(got) < 2:
                got += await sub.read()
        assert got == [
            (channel("room:sa"), _event("room:sa", 1).frame_json.encode()),
            (channel("room:sb"), _event("room:sb", 1).frame_json.encode()),
        ]
        sub.unsubscribe(channel("room:sa"))
        await asyncio.sleep(0.1)
        await publisher.publish([_event("room:sa", 2), _event("room:sb", 2)])
        async with asyncio.timeout(5):
            assert await sub.read() == [
                (channel("room:sb"), _event("room:sb", 2).frame_json.encode())
            ]
        mine = [c for c in await client.client_list() if c["name"] == "hl-hub-test"]
        await client.client_kill_filter(_id=mine[0]["id"])
        with pytest.raises(ConnectionError):
            async with asyncio.timeout(5):
                await sub.read()
        await sub.connect([channel("room:sa")])
        await asyncio.sleep(0.1)
        await publisher.publish([_event("room:sa", 3)])
        async with asyncio.timeout(5):
            assert await sub.read() == [
                (channel("room:sa"), _event("room:sa", 3).frame_json.encode())
            ]
    finally:
        await sub.aclose()
        await publisher.aclose()
        await client.aclose()
