"""A presence refresh (services/presence.py) sends every member present here once, at most
``REFRESH_BATCH`` a round trip, and never puts back a member that left while a batch was out."""

from __future__ import annotations

import asyncio
from typing import Any

from services import presence as presence_module
from services.presence import REFRESH_BATCH, Presence


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.commands: list[tuple[Any, ...]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.commands = []

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        self.commands.append(("zadd", key, dict(mapping)))

    def zremrangebyscore(self, key: str, low: Any, high: Any) -> None:
        self.commands.append(("zremrangebyscore", key))

    def expire(self, key: str, seconds: int) -> None:
        self.commands.append(("expire", key))

    async def execute(self) -> list[Any]:
        sent, self.commands = self.commands, []
        self.redis.round_trips.append(sent)
        self.redis.on_execute()
        return [None] * len(sent)


class FakeRedis:
    def __init__(self) -> None:
        self.round_trips: list[list[tuple[Any, ...]]] = []
        self.on_execute: Any = lambda: None

    def pipeline(self, transaction: bool) -> FakePipeline:
        return FakePipeline(self)


def members_sent(redis: FakeRedis, key: str) -> list[str]:
    return [
        member.split("|", 1)[1]
        for trip in redis.round_trips
        for command in trip
        if command[0] == "zadd" and command[1] == key
        for member in command[2]
    ]


def test_a_refresh_sends_each_member_once_in_bounded_round_trips() -> None:
    redis = FakeRedis()
    presence = Presence(redis, "gw", 30.0)  # type: ignore[arg-type]
    crowd = [f"u{i}" for i in range(2 * REFRESH_BATCH + 7)]
    presence._local["feed:a"] = dict.fromkeys(crowd, 1)
    presence._local["room:b"] = {"u1": 1, "v": 2}
    left = crowd[-1]

    def leave_after_the_first_trip() -> None:  # an exit while the refresh is under way
        presence._local["feed:a"].pop(left, None)

    redis.on_execute = leave_after_the_first_trip
    asyncio.run(presence._refresh())
    assert members_sent(redis, presence_module._key("feed:a")) == crowd[:-1]
    assert members_sent(redis, presence_module._key("room:b")) == ["u1", "v"]
    for trip in redis.round_trips:
        assert sum(len(c[2]) for c in trip if c[0] == "zadd") <= REFRESH_BATCH + 1
    assert redis.round_trips[0][0] == ("zadd", "hl:pr:gateways", redis.round_trips[0][0][2])
    assert len(redis.round_trips) >= 3


def test_the_rounds_of_a_period_refresh_every_stream_once() -> None:
    redis = FakeRedis()
    presence = Presence(redis, "gw", 30.0)  # type: ignore[arg-type]
    streams = [f"room:{i}" for i in range(40)]
    for stream in streams:
        presence._local[stream] = {"u": 1}
    parts = presence_module.REFRESH_SLICES
    for part in range(parts):
        asyncio.run(presence._refresh(part, parts))
    refreshed = [
        command[1]
        for trip in redis.round_trips
        for command in trip
        if command[0] == "zadd" and command[1] != "hl:pr:gateways"
    ]
    assert sorted(refreshed) == sorted(presence_module._key(s) for s in streams)
    gateway_entries = [c for t in redis.round_trips for c in t if c[1] == "hl:pr:gateways"]
    assert len([c for c in gateway_entries if c[0] == "zadd"]) == parts  # every round
    rounds_used = {presence_module._slice(s, parts) for s in streams}
    assert len(rounds_used) > parts // 2  # spread over the period, not all in one round
