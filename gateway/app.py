"""The gateway application: every resource has one setup and one teardown (cleanup_ctx).

Order of setup: Postgres pool, Redis, auth, shard router (Ray handles), fanout hub and services.
Teardown runs in reverse: sessions are told to reconnect (4101), the hub stops, pools close.
The process must already be connected to Ray (cluster/runtime.py does it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from cluster.config import Settings
from gateway import registry
from gateway.auth import auth_ctx
from gateway.context import DB, HUB, METRICS, REDIS, ROUTER, SERVICES, SESSIONS, SETTINGS
from gateway.http import error_middleware
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.openapi import openapi_spec
from gateway.ops import Services
from gateway.presence import Presence
from gateway.ranking import CellRanker
from gateway.ratelimit import rate_limit_middleware
from gateway.router import RayTransport, ShardRouter, ShardTransport
from gateway.sessions import CLOSE_SERVER_RESTART, OutEphemeral, OutEvent, SessionRegistry
from gateway.ws import ws_handler
from models.cells import Geo
from models.ids import new_id
from store import placement
from store.db import create_pool

log = logging.getLogger("hyperlocal.gateway")


def ray_transport(settings: Settings) -> ShardTransport:
    import ray

    handles = {
        name: ray.get_actor(name, namespace=settings.ray_namespace)
        for name in settings.shard_names()
    }
    return RayTransport(handles, settings.shard_call_timeout_s)


async def _db_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url, "database_url must be resolved before the app starts"
    app[DB] = await create_pool(settings.database_url, min_size=2, max_size=20)
    yield
    await app[DB].close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.redis_url, "redis_url must be resolved before the app starts"
    app[REDIS] = aioredis.from_url(settings.redis_url, decode_responses=False)
    yield
    await app[REDIS].aclose()


def _core_ctx(transport: ShardTransport | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings, db = app[SETTINGS], app[DB]
        sessions = app[SESSIONS] = SessionRegistry()

        async def load() -> Any:
            table = await placement.load(db)
            if table is None:
                raise RuntimeError("no placement table: run `hyperlocal migrate` and start shards")
            return table

        router = app[ROUTER] = ShardRouter(
            transport or ray_transport(settings),
            load,
            settings.batch_flush_ms / 1000,
            settings.batch_max,
            settings.batch_in_flight,
        )
        await router.refresh()

        def on_control(message: dict[str, Any]) -> None:
            if message.get("kind") == "session.revoked":
                sessions.revoke(str(message["user_id"]), message.get("session_id"))

        hub = app[HUB] = Hub(app[REDIS], db, OutEvent, OutEphemeral, on_control)
        await hub.start()
        geo = Geo(settings.h3_resolution, settings.k_ring)
        presence = Presence(app[REDIS], new_id(), settings.presence_ttl_s)
        presence.start()
        ranker = CellRanker(router, settings.recommend_absent_ttl_s)
        app[SERVICES] = Services(settings, geo, router, hub, db, presence, ranker)
        app[METRICS].watch(
            lambda: {
                "ws_sessions": len(sessions),
                "hub_streams": hub.streams,
                "hub_events_delivered": hub.delivered,
                "hub_gap_fills": hub.gap_fills,
                "hub_reconnects": hub.reconnects,
                "router_moved_retries": router.moved_retries,
                "router_shard_calls": router.calls,
                "router_shard_commands": router.commands,
                "socket_batched_writes": sessions.writes.writes,
                "socket_batched_frames": sessions.writes.frames,
            }
        )
        yield
        sessions.close_all(CLOSE_SERVER_RESTART, "server shutting down: reconnect and recover")
        await presence.stop()
        await hub.stop()

    return ctx


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, bool] = {}
    try:
        await asyncio.wait_for(app[DB].fetchval("SELECT 1"), 2)
        checks["postgres"] = True
    except Exception:  # readiness: any failure at all means "not ready"
        checks["postgres"] = False
    try:
        await asyncio.wait_for(app[REDIS].ping(), 2)
        checks["redis"] = True
    except (RedisError, OSError, TimeoutError):
        checks["redis"] = False
    checks["ray"] = await _shards_ready(app)
    ok = all(checks.values())
    return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)


async def _shards_ready(app: web.Application) -> bool:
    router = app[ROUTER]
    try:
        table = router.placement or await router.refresh()
        await asyncio.wait_for(asyncio.gather(*(router.ping(s) for s in table.shards)), 3)
        return True
    except Exception:  # a dead shard, Ray down or a timeout: not ready
        return False


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def openapi_view(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(openapi_spec()), content_type="application/json")


async def _close_sockets(app: web.Application) -> None:
    """on_shutdown: runs before aiohttp waits for open handlers, so sockets end promptly."""
    if SESSIONS in app:
        sessions = app[SESSIONS]
        sessions.close_all(CLOSE_SERVER_RESTART, "server shutting down: reconnect and recover")
        for _ in range(50):  # let the close frames go out (at most 1 s)
            if not len(sessions):
                break
            await asyncio.sleep(0.02)


def build_app(settings: Settings, transport: ShardTransport | None = None) -> web.Application:
    """The gateway app; ``transport`` None means real Ray shards looked up by name."""
    app = web.Application(
        middlewares=[error_middleware, rate_limit_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.extend(
        [_db_ctx, _redis_ctx, auth_ctx, _core_ctx(transport), *registry.CONTEXTS]
    )
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/api/v1/openapi.json", openapi_view)
    registry.add_routes(app)
    return app
