"""Redis pub/sub naming and publishing of committed events.

Every stream has one channel, ``hl:s:<stream>``; a message is the event's JSON wire frame,
encoded once by the publisher and forwarded as-is by gateways. Publishing happens after commit
and may fail (Redis down): the event is already durable and subscribers fill the gap from the
log, so a publish failure is logged, never raised to the writer.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models.streams import Event

log = logging.getLogger("hyperlocal.fanout")

CONTROL_CHANNEL = "hl:control"
"""Cluster-wide control messages for gateways (e.g. session.revoked)."""


def channel(stream: str) -> str:
    return f"hl:s:{stream}"


def stream_of(channel_name: str) -> str | None:
    return channel_name[5:] if channel_name.startswith("hl:s:") else None


async def publish(redis: aioredis.Redis, events: list[Event]) -> None:
    """Publish committed events in one round trip; log (not raise) if Redis is unavailable."""
    if not events:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(channel(event.stream), event.frame_json)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("publish of %d events failed (subscribers will recover): %r", len(events), exc)
