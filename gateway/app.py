"""The gateway application: the edge over one container of services (services/container.py).

Setup, in one cleanup context: the session registry, the services (Postgres pool, Redis, the
shard router over its transport, presence, every service, the background loops), then the
fanout hub. Teardown runs in reverse: sessions are told to reconnect (4101), the hub stops,
the services close. With the Ray transport the process must already be connected to Ray
(cluster/runtime.py does it); ``LocalTransport`` needs no Ray at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from cluster import gcpolicy
from cluster.config import Settings
from gateway import headers, registry
from gateway.context import HUB, METRICS, SERVICES, SESSIONS, SETTINGS
from gateway.http import error_middleware, input_middleware
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.openapi import openapi_spec
from gateway.ratelimit import rate_limit_middleware
from gateway.sessions import CLOSE_SERVER_RESTART, OutEphemeral, OutEvent, SessionRegistry
from gateway.ws import ws_handler
from services.channel import DirectTransport, PushFeeds
from services.container import open_services
from services.router import ShardRouter
from services.transport import ShardTransport
from store import users

log = logging.getLogger("hyperlocal.gateway")


def _services_ctx(
    transport: ShardTransport | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        sessions = app[SESSIONS] = SessionRegistry()
        async with open_services(settings, transport, on_revoked=sessions.revoke) as services:
            app[SERVICES] = services

            def on_control(message: dict[str, Any]) -> None:
                kind = message.get("kind")
                if kind == "session.revoked":
                    sessions.revoke(str(message["user_id"]), message.get("session_id"))
                elif kind == "user.suspended":
                    sessions.suspend(str(message["user_id"]))
                elif kind == "user.roles":
                    sessions.set_roles(str(message["user_id"]), frozenset(message["roles"]))

            assert settings.redis_url
            hub = app[HUB] = Hub(
                settings.redis_url, services.db, OutEvent, OutEphemeral, on_control
            )
            await hub.start()
            recheck = asyncio.create_task(_recheck_after_reconnects(hub, sessions, services.db))
            router = services.router
            feeds: PushFeeds | None = None
            if settings.push_fanout and isinstance(router.transport, DirectTransport):
                feeds = PushFeeds(
                    router.transport,
                    lambda: router.placement.shards if router.placement else (),
                    hub.pushed,
                    hub.resync,
                )
                await feeds.start()
            app[METRICS].watch(gcpolicy.pauses.gauges)
            app[METRICS].watch(
                lambda: {
                    "ws_sessions": len(sessions),
                    "hub_streams": hub.streams,
                    "hub_events_delivered": hub.delivered,
                    "hub_gap_fills": hub.gap_fills,
                    "hub_reconnects": hub.reconnects,
                    "hub_pushed_events": hub.pushed_events,
                    "hub_resyncs": hub.resyncs,
                    "push_feed_reconnects": feeds.reconnects if feeds else 0,
                    "push_feed_failures": feeds.failures if feeds else 0,
                    "router_moved_retries": router.moved_retries,
                    "router_shard_calls": router.calls,
                    "router_shard_commands": router.commands,
                    "socket_batched_writes": sessions.writes.writes,
                    "socket_batched_frames": sessions.writes.frames,
                    "checkouts_in_flight": services.checkout.in_flight,
                    "checkouts_refused_busy": services.checkout.refused,
                    "checkouts_refused_by_probe": services.checkout.probe_refused,
                    "media_uploads": services.media.uploads,
                    "media_swept": services.media.swept,
                }
            )
            app[METRICS].watch_shards(services.cluster.view_of.last)
            app[METRICS].watch_counts(
                "recommend_served",
                "feed.get / listings.nearby requests by the model that ranked them",
                ("surface", "model"),
                lambda: services.ranker.served.items(),
            )
            app[METRICS].watch_counts(
                "checkout_coalesced",
                "rows and statements of the checkout's coalesced writes (store/coalesce.py)",
                ("statement", "what"),
                services.checkout.coalesced,
            )
            notifier = services.notifier  # the notifier actor's counts (docs/notifications.md)
            app[METRICS].watch_counts(
                "notify_deliveries",
                "deliveries the deployment's notifier settled, by channel and outcome",
                ("channel", "outcome"),
                lambda: notifier.outcomes.items(),
            )
            app[METRICS].watch(notifier.gauges)
            app[METRICS].watch_counts(
                "loop_failures",
                "failures of this gateway's background loops, the notifier actor's and the"
                " control actor's, by loop (services/loops.py)",
                ("loop",),
                lambda: [
                    *services.loops.items(),
                    *notifier.loop_items(),
                    *services.control.loop_items(),
                ],
            )
            yield
            recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recheck
            sessions.close_all(CLOSE_SERVER_RESTART, "server shutting down: reconnect and recover")
            if feeds is not None:
                await feeds.stop()
            await hub.stop()

    return ctx


async def recheck_sign_ins(sessions: SessionRegistry, db: asyncpg.Pool) -> int:
    """Re-apply Postgres's word on every open socket's sign-in (ended: 4004, suspended: 4003,
    roles): what the control channel says live, for when a message of it was lost."""
    families = sorted({s.principal.session_id for s in sessions.by_id.values()})
    states = {}
    for start in range(0, len(families), 5000):
        states.update(await users.sign_ins(db, families[start : start + 5000]))
    return sessions.reconcile(set(families), states)


async def _recheck_after_reconnects(hub: Hub, sessions: SessionRegistry, db: asyncpg.Pool) -> None:
    """After each Redis reconnect of the hub (control messages may have been lost while it was
    away), re-check the sockets' sign-ins once. Must not die: logs and tries again."""
    seen = hub.reconnects
    while True:
        await asyncio.sleep(1.0)
        if hub.reconnects == seen:
            continue
        try:
            closed = await recheck_sign_ins(sessions, db)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("sign-in re-check after a Redis reconnect failed (retrying): %r", exc)
            continue
        seen = hub.reconnects
        if closed:
            log.info("closed %d sockets whose sign-in ended while Redis was away", closed)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks: dict[str, bool] = {}
    try:
        await asyncio.wait_for(services.db.fetchval("SELECT 1"), 2)
        checks["postgres"] = True
    except Exception:  # readiness: any failure at all means "not ready"
        checks["postgres"] = False
    try:
        await asyncio.wait_for(services.redis.ping(), 2)
        checks["redis"] = True
    except (RedisError, OSError, TimeoutError):
        checks["redis"] = False
    checks["ray"] = await _shards_ready(services.router)
    ok = all(checks.values())
    return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)


async def _shards_ready(router: ShardRouter) -> bool:
    try:
        table = router.placement or await router.refresh()
        await asyncio.wait_for(asyncio.gather(*(router.ping(s) for s in table.shards)), 3)
        return True
    except Exception:  # a dead shard, Ray down or a timeout: not ready
        return False


async def metrics_view(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    # the three reads at once: the shards' stats (cached), the notifier actor's counts and
    # the control actor's loops (those two bounded by 2 s each)
    await asyncio.gather(
        services.cluster.view_of.snapshot(),
        services.notifier.refresh(),
        services.control.refresh(),
    )
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
        middlewares=[error_middleware, input_middleware, rate_limit_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_services_ctx(transport))
    app.on_shutdown.append(_close_sockets)
    headers.install(app)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/api/v1/openapi.json", openapi_view)
    registry.add_routes(app)
    return app
