"""Presence: who is in a room or a cell right now. Approximate, kept in Redis, self-healing.

For each stream with presence (``room:<id>`` and a user's own ``feed:<cell>``) Redis holds a
sorted set ``hl:pr:<stream>`` of ``<gateway id>|<user id>`` scored by an expiry time. Each gateway
counts its own sessions per (stream, user), adds the member on the first, removes it on the
last, and refreshes its members every ``presence_ttl_s / 3`` (a slice of its streams at a time,
``REFRESH_SLICES`` rounds a period). A gateway that dies stops
refreshing; its members expire and readers skip them, so presence rebuilds itself without any
coordinator. ``presence.join`` / ``presence.leave`` are ephemeral events (no offset) published on
the stream's channel when a user appears on, or disappears from, every gateway.

Redis errors are logged, never raised to a client: presence may be briefly wrong, never fatal.

Per user this gateway keeps one count per stream it is present on (its cell's feed, the rooms
it follows), nothing else; a refresh sends at most ``REFRESH_BATCH`` members a round trip, so a
crowded gateway never builds every member's entry at once (a peak the process would keep).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import defaultdict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models.streams import compact_json, user_stream
from store.fanout import channel

log = logging.getLogger("hyperlocal.presence")


_GATEWAYS = "hl:pr:gateways"
"""Live gateways (scored by expiry): whose entries count when deciding join/leave events."""


REFRESH_BATCH = 512
"""Members a refresh sends to Redis in one round trip."""

REFRESH_SLICES = 10
"""A refresh period (``presence_ttl_s / 3``) is cut into this many rounds, each refreshing
the streams of one slice (by a hash of the stream's name), so every member is still refreshed
once a period while no round holds the event loop for all of them at once (at 1,000 sockets
one round for everyone stalled the gateway 12-23 ms, a slow second of chat p99 every 10 s)."""


def _key(stream: str) -> str:
    return f"hl:pr:{stream}"


def _slice(stream: str, parts: int) -> int:
    """The refresh round of ``stream``'s members: the same in every period (``crc32``, not
    ``hash``, which differs between processes and runs)."""
    return zlib.crc32(stream.encode()) % parts


def ephemeral_frame(ev: str, stream: str, data: dict[str, object]) -> str:
    """The wire frame of an event that carries no offset (typing, presence)."""
    return compact_json({"ev": ev, "stream": stream, "data": data})


class Presence:
    """This gateway's share of presence. See the module docstring."""

    def __init__(self, redis: aioredis.Redis, gateway_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.gateway_id = gateway_id
        self.ttl_s = ttl_s
        self._local: dict[str, dict[str, int]] = defaultdict(dict)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_loop(), name="presence-refresh")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for stream, users in list(self._local.items()):
            for user in list(users):
                users[user] = 1
                await self.exit(stream, user)

    def _member(self, user_id: str) -> str:
        return f"{self.gateway_id}|{user_id}"

    async def enter(self, stream: str, user_id: str, announce: bool = True) -> None:
        """``announce`` False: counted (``online``), no ``presence.join`` event (the user's
        own inbox: nobody else follows it)."""
        users = self._local[stream]
        users[user_id] = users.get(user_id, 0) + 1
        if users[user_id] > 1:
            return
        try:
            already = await self._present_elsewhere(stream, user_id)
            expires = time.time() + self.ttl_s
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(_GATEWAYS, {self.gateway_id: expires})
                pipe.zadd(_key(stream), {self._member(user_id): expires})
                pipe.expire(_key(stream), int(self.ttl_s * 2) + 1)
                await pipe.execute()
            if announce and not already:
                await self._announce("presence.join", stream, user_id)
        except (RedisError, OSError) as exc:
            log.warning("presence enter %s failed: %r", stream, exc)

    async def exit(self, stream: str, user_id: str, announce: bool = True) -> None:
        users = self._local.get(stream)
        if not users or user_id not in users:
            return
        users[user_id] -= 1
        if users[user_id] > 0:
            return
        del users[user_id]
        if not users:
            self._local.pop(stream, None)
        try:
            await self.redis.zrem(_key(stream), self._member(user_id))
            if announce and not await self._present_elsewhere(stream, user_id):
                await self._announce("presence.leave", stream, user_id)
        except (RedisError, OSError) as exc:
            log.warning("presence exit %s failed: %r", stream, exc)

    async def _present_elsewhere(self, stream: str, user_id: str) -> bool:
        """Is ``user_id`` on ``stream`` through another live gateway? O(gateways), not
        O(people present): this runs on every locate and room subscribe."""
        now = time.time()
        others = [
            gw.decode() if isinstance(gw, bytes) else gw
            for gw in await self.redis.zrangebyscore(_GATEWAYS, now, "+inf")
        ]
        others = [gw for gw in others if gw != self.gateway_id]
        if not others:
            return False
        scores = await self.redis.zmscore(_key(stream), [f"{gw}|{user_id}" for gw in others])
        return any(score is not None and score > now for score in scores)

    async def online(self, user_id: str) -> bool:
        """Has ``user_id`` a socket open on any live gateway (its inbox followed)? False when
        Redis cannot say (a notification too many beats one lost)."""
        try:
            return bool(await self.redis.zcount(_key(user_stream(user_id)), time.time(), "+inf"))
        except (RedisError, OSError) as exc:
            log.warning("presence online %s failed: %r", user_id, exc)
            return False

    async def members(self, stream: str) -> list[str]:
        """Users present on ``stream`` on any live gateway (sorted)."""
        raw = await self.redis.zrangebyscore(_key(stream), time.time(), "+inf")  # no scores
        users = {(m.decode() if isinstance(m, bytes) else str(m)).split("|", 1)[1] for m in raw}
        return sorted(users)

    async def _announce(self, ev: str, stream: str, user_id: str) -> None:
        frame = ephemeral_frame(ev, stream, {"stream": stream, "user_id": user_id})
        await self.redis.publish(channel(stream), frame)

    async def _refresh_loop(self) -> None:
        part = 0
        while True:
            await asyncio.sleep(self.ttl_s / 3 / REFRESH_SLICES)
            try:
                await self._refresh(part, REFRESH_SLICES)
            except (RedisError, OSError) as exc:
                log.warning("presence refresh failed (will retry): %r", exc)
            part = (part + 1) % REFRESH_SLICES

    async def _refresh(self, part: int = 0, parts: int = 1) -> None:
        """Refresh this gateway's entry and its members of the streams in slice ``part`` of
        ``parts`` (``_slice``)."""
        expires = time.time() + self.ttl_s
        sent: list[tuple[str, list[str]]] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(_GATEWAYS, {self.gateway_id: expires})
            pipe.zremrangebyscore(_GATEWAYS, "-inf", time.time())
            queued = 0
            for stream, users in list(self._local.items()):  # a copy: entries change meanwhile
                if parts > 1 and _slice(stream, parts) != part:
                    continue
                present = list(users)
                for start in range(0, len(present), REFRESH_BATCH):
                    # who is still here: one that left while a batch was out is not put back
                    chunk = [u for u in present[start : start + REFRESH_BATCH] if u in users]
                    if not chunk:
                        continue
                    pipe.zadd(_key(stream), {self._member(u): expires for u in chunk})
                    sent.append((stream, chunk))
                    queued += len(chunk)
                    if queued >= REFRESH_BATCH:
                        await pipe.execute()
                        queued = 0
                if present:
                    pipe.zremrangebyscore(_key(stream), "-inf", time.time())
                    pipe.expire(_key(stream), int(self.ttl_s * 2) + 1)
            await pipe.execute()
        # An exit's ZREM (another connection) can reach Redis before a refresh's ZADD already on
        # its way, which then puts the member back with nobody left to remove it: whoever left
        # while the refresh was out is removed again now.
        gone = [
            (stream, user)
            for stream, chunk in sent
            for user in chunk
            if user not in self._local.get(stream, ())
        ]
        if gone:
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream, user in gone:
                    pipe.zrem(_key(stream), self._member(user))
                await pipe.execute()
