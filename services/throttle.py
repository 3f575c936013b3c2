"""Failed sign-in throttling, per account and per client address, shared by every gateway.

``LoginThrottle`` keeps, in Redis, one sorted set of failure times per counter (``hl:lf:a:``
and a digest of the normalized email; ``hl:lf:ip:`` and the address), trimmed to the sliding
window ``login_window_s``. ``check`` answers ``rate_limited`` with ``retry_after_s`` while
either counter's backoff (models/login_throttle.py) runs; ``failed`` counts one more; ``passed``
clears the account's counter (not the address's: one right password does not excuse a
hundred wrong ones from the same place). An unknown email is counted exactly like a known one.
Redis down: attempts go through unthrottled and it is logged (Redis carries what may be lost).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cluster.config import Settings
from models.errors import RateLimited
from models.login_throttle import Backoff

log = logging.getLogger("hyperlocal.throttle")


class LoginThrottle:
    """Sliding-window failure counters with progressive backoff (see module docstring)."""

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.window_s = settings.login_window_s
        self.account = Backoff(
            settings.login_free_failures_account, 1.0, settings.login_backoff_max_s
        )
        self.address = Backoff(
            settings.login_free_failures_address, 1.0, settings.login_backoff_max_s
        )

    @staticmethod
    def _keys(email_norm: str, address: str) -> tuple[str, str]:
        digest = hashlib.sha256(email_norm.encode()).hexdigest()[:32]
        return f"hl:lf:a:{digest}", f"hl:lf:ip:{address}"

    async def check(self, email_norm: str, address: str) -> None:
        """``rate_limited`` (with ``retry_after_s``) while either counter makes attempts wait."""
        now = time.time()
        keys = self._keys(email_norm, address)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zremrangebyscore(key, "-inf", now - self.window_s)
                    pipe.zcard(key)
                    pipe.zrange(key, -1, -1, withscores=True)
                out = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("sign-in throttle not applied, redis unavailable: %r", exc)
            return
        waits = []
        for (count, last), rule in zip(
            ((out[1], out[2]), (out[4], out[5])), (self.account, self.address), strict=True
        ):
            last_at = float(last[0][1]) if last else now
            wait = rule.retry_after(int(count), last_at, now)
            if wait is not None:
                waits.append(wait)
        if waits:
            wait_s = max(waits)
            raise RateLimited(
                f"too many failed sign-ins; retry in {wait_s} s", retry_after_s=wait_s
            )

    async def failed(self, email_norm: str | None, address: str) -> None:
        """Count one failure (``email_norm`` None: only the address's, e.g. a signup probe)."""
        now = time.time()
        account_key, address_key = self._keys(email_norm or "", address)
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in (account_key, address_key) if email_norm is not None else (address_key,):
                    pipe.zadd(key, {member: now})
                    pipe.expire(key, int(self.window_s) + 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("sign-in failure not counted, redis unavailable: %r", exc)

    async def passed(self, email_norm: str) -> None:
        try:
            await self.redis.delete(self._keys(email_norm, "")[0])
        except (RedisError, OSError) as exc:
            log.warning("sign-in counter not cleared, redis unavailable: %r", exc)
