"""Redis pub/sub naming and publishing of committed events.

Every stream has one channel, ``hl:s:<stream>``; a message is the JSON wire frames of one or
more consecutive events of that stream, one per line, in offset order (compact JSON never holds
a raw newline), encoded once by the publisher and forwarded as-is by gateways: a committed batch
publishes one message per stream it touched, however many events it appended there. Publishing
happens after commit and may fail (Redis down): the event is already durable and subscribers
fill the gap from the log, so a publish failure is logged, never raised to the writer.
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
    """Publish committed events in one round trip, one message per stream (its events in the
    order given); log (not raise) if Redis is unavailable."""
    if not events:
        return
    frames: dict[str, list[str]] = {}
    for event in events:
        frames.setdefault(event.stream, []).append(event.frame_json)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for stream, lines in frames.items():
                pipe.publish(channel(stream), "\n".join(lines))
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("publish of %d events failed (subscribers will recover): %r", len(events), exc)
