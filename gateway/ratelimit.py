"""REST rate limits: a fixed one-minute window per client address, counted in Redis so every
gateway shares it.

Auth endpoints have a budget of their own, the same size: password guessing is bounded by the
sign-in throttle (services/throttle.py, per account and per address, failures only), so a
load balancer's address shared by the whole site (``HL_TRUSTED_PROXY_HOPS`` left at 0, which
is logged once when requests carry X-Forwarded-For) does not lock everyone out at a dozen
sign-ins a minute. Redis carries only what may be lost: if it is down, requests are let through
(and logged) rather than refused, so losing Redis degrades protection, never availability.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from aiohttp import web
from redis.exceptions import RedisError

from gateway import webapp
from gateway.context import SERVICES, SETTINGS
from gateway.http import Handler, is_socket
from models.errors import RateLimited

log = logging.getLogger("hyperlocal.ratelimit")

_WINDOW_S = 60
# Not limited: probes, and the payment provider's signed webhook (its senders share addresses,
# and every request is verified before it does anything).
_UNLIMITED = ("/healthz", "/readyz", "/metrics", "/api/v1/payments/stripe/webhook",
              "/api/v1/payments/paypal/webhook", "/api/v1/payments/upi/webhook")  # fmt: skip
_AUTH = ("/api/v1/auth/", "/api/v1/oauth/token")


def scope_of(path: str) -> str | None:
    """Which budget a path spends: "auth", "rest" or None (not limited)."""
    # the web client's files are static bytes from memory (gateway/webapp.py), a dozen a page
    if path in _UNLIMITED or path in webapp.ROOT_FILES or path.startswith(webapp.STATIC_PREFIX):
        return None
    if path.startswith(_AUTH):
        return "auth"
    return "rest"


def client_address(request: web.Request, proxy_hops: int) -> str:
    """The client's address: the peer, or (behind ``proxy_hops`` trusted proxies) the address
    those proxies put in X-Forwarded-For, counted from the right (a client can prepend lies,
    not append them)."""
    if proxy_hops:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) >= proxy_hops:
            return hops[-proxy_hops]
    else:
        _warn_unconfigured_proxy(request)
    return request.remote or "unknown"


def limit_of(scope: str, per_min: int) -> int:
    return per_min


_warned_proxy = False


def _warn_unconfigured_proxy(request: web.Request) -> None:
    global _warned_proxy
    if not _warned_proxy and "X-Forwarded-For" in request.headers:
        _warned_proxy = True
        log.warning(
            "requests carry X-Forwarded-For but HL_TRUSTED_PROXY_HOPS=0: every client behind"
            " the proxy shares one address's rate limits; set it to the number of proxies"
        )


async def hit(request: web.Request, scope: str, limit: int, now: float) -> int | None:
    """Count one request; the seconds to wait if over ``limit``, else None."""
    window = int(now // _WINDOW_S)
    address = client_address(request, request.app[SETTINGS].trusted_proxy_hops)
    key = f"hl:rl:{scope}:{address}:{window}"
    try:
        async with request.app[SERVICES].redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, _WINDOW_S + 1)
            count, _ = await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("rate limit not applied, redis unavailable: %r", exc)
        return None
    if int(count) <= limit:
        return None
    return max(1, int((window + 1) * _WINDOW_S - now))


@web.middleware
def rate_limit_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    scope = scope_of(request.path)
    if scope is None or is_socket(request):  # the socket handler counts its own handshake
        return handler(request)
    return _limited(request, handler, scope)


async def _limited(request: web.Request, handler: Handler, scope: str) -> web.StreamResponse:
    await check_rate(request, scope)
    return await handler(request)


async def check_rate(request: web.Request, scope: str = "rest") -> None:
    """Count this request against its address's budget; ``RateLimited`` when over it."""
    limit = limit_of(scope, request.app[SETTINGS].rest_rate_per_min)
    wait_s = await hit(request, scope, limit, time.time())
    if wait_s is not None:
        raise RateLimited(
            f"more than {limit} requests a minute; retry in {wait_s} s", retry_after_s=wait_s
        )
