"""The REST hook dispatcher: delivers the outbox (store/hooks_store.py) to vendors' URLs.

One loop per gateway claims due deliveries (``FOR UPDATE SKIP LOCKED`` plus a lease, so gateways
never send one row at once), signs each per Standard Webhooks (``webhook-id`` = the delivery id,
stable across retries; ``webhook-timestamp``; ``webhook-signature`` = ``v1,<base64 HMAC-SHA256>``
with the hook's ``whsec_`` secret, via the ``standardwebhooks`` package), POSTs it, and records
the outcome: 2xx delivered; 410 Gone unsubscribes the hook; anything else (or no answer within
``hook_timeout_s``) is retried with exponential backoff and jitter until ``hook_max_attempts``,
then dead-lettered (replayable through the vendor API).

Targets on loopback, private, link-local or reserved addresses are refused when subscribing and
again at connect time (a resolver that drops such addresses, so DNS rebinding cannot reach
them) unless ``HOOKS_ALLOW_PRIVATE=1``. Redirects are not followed.

The loop must not die: a failing round is logged and retried with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import socket
from datetime import UTC, datetime

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks.webhooks import Webhook

from cluster.config import Settings
from models.errors import BadRequest
from models.market_hooks import RetryPolicy, check_target_url, is_public_address
from store import hooks_store

log = logging.getLogger("hyperlocal.hooks")

_BATCH = 20


class PublicResolver(AbstractResolver):
    """Resolves like the default resolver but never answers a non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public_address(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to private or loopback addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


async def check_target(url: str, allow_private: bool) -> None:
    """Refuse (``bad_request``) a target URL that is malformed or not on the public internet."""
    host, port = check_target_url(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise BadRequest("target_url: the host does not resolve") from None
    if not infos or not all(is_public_address(str(info[4][0])) for info in infos):
        raise BadRequest("target_url: private, loopback and link-local addresses are refused")


def sign(secret: str, msg_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "content-type": "application/json",
        "user-agent": "hyperlocal-hooks/1",
    }


class HookDispatcher:
    def __init__(self, settings: Settings, db: asyncpg.Pool) -> None:
        self.settings = settings
        self.db = db
        self.policy = RetryPolicy(
            settings.hook_retry_base_s, settings.hook_retry_max_s, settings.hook_max_attempts
        )
        resolver = None if settings.hooks_allow_private else PublicResolver()
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, limit=64),
            timeout=aiohttp.ClientTimeout(total=settings.hook_timeout_s),
        )
        self.delivered = 0
        self.failed = 0

    async def close(self) -> None:
        await self.http.close()

    async def run(self) -> None:
        idle = self.settings.hook_poll_s
        delay = idle
        while True:
            try:
                sent = await self.round()
                delay = 0.0 if sent == _BATCH else idle
            except (asyncpg.PostgresError, OSError) as exc:
                delay = min(60.0, max(idle, delay) * 2)
                log.warning("hook round failed (next in %.1f s): %r", delay, exc)
            except Exception:  # the loop must not die; log with context and back off
                delay = min(60.0, max(idle, delay) * 2)
                log.exception("unexpected error in a hook round (next in %.1f s)", delay)
            await asyncio.sleep(delay)

    async def round(self) -> int:
        lease = self.settings.hook_timeout_s + 5
        due = await hooks_store.claim_due(self.db, _BATCH, lease)
        await asyncio.gather(*(self.deliver(row) for row in due))
        return len(due)

    async def deliver(self, row: asyncpg.Record) -> None:
        attempts = row["attempts"] + 1
        if not row["active"]:
            await hooks_store.record_attempt(self.db, row["id"], "gone", None, "unsubscribed", 0)
            return
        status, error = await self._post(row)
        outcome = self.policy.outcome(status, attempts)
        retry_in = self.policy.delay_s(attempts) if outcome == "retry" else 0.0
        stored = "pending" if outcome == "retry" else outcome
        await hooks_store.record_attempt(self.db, row["id"], stored, status, error, retry_in)
        if outcome == "gone":
            log.info("hook %s answered 410: unsubscribed", row["hook_id"])
            await hooks_store.disable(self.db, row["hook_id"], "the target answered 410 Gone")
            await hooks_store.cancel_pending(self.db, row["hook_id"])
        if outcome == "delivered":
            self.delivered += 1
        else:
            self.failed += 1
            log.info(
                "hook delivery %s to %s: %s (attempt %d, %s)",
                row["id"],
                row["target_url"],
                status or error,
                attempts,
                outcome,
            )

    async def _post(self, row: asyncpg.Record) -> tuple[int | None, str | None]:
        body = json.dumps(row["payload"], separators=(",", ":"))
        headers = sign(row["secret"], row["id"], datetime.now(UTC), body)
        try:
            async with self.http.post(
                row["target_url"], data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                return resp.status, None if resp.status < 300 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]


def new_secret() -> str:
    """A hook signing secret in the Standard Webhooks form ``whsec_<base64 of 32 bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
