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

Deliveries are independent: the loop claims due rows into free slots (``_CONCURRENCY`` in
flight per gateway, at most ``_PER_HOOK`` to one hook) and each is sent on its own task, so a
slow target delays only its own hook. At most ``_MAX_BODY`` bytes of an answer are read. Logs
name a target by ``scheme://host`` only (vendors put tokens in URLs).

The loop must not die: a failing claim is logged and retried with backoff; a failing delivery
task is logged and its row is claimed again when its lease ends.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import secrets
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks.webhooks import Webhook

from cluster.config import Settings
from models.errors import BadRequest
from models.market_hooks import RetryPolicy, check_target_url, is_public_address
from services.loops import Backoff, LoopFailures, SupervisedLoop
from services.secrets import Keys
from store import hooks_store

log = logging.getLogger("hyperlocal.hooks")

_BATCH = 20  # rows per claim
_CONCURRENCY = 32  # deliveries in flight per gateway
_PER_HOOK = 4  # of which at most this many to one hook (then its rows wait for the next claim)
_MAX_BODY = 1024  # bytes of a target's answer read, at most


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
    except ValueError:  # UnicodeError: a host name IDNA cannot encode (empty label, too long)
        raise BadRequest("target_url: the host name is not valid") from None
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


def origin(url: str) -> str:
    """``scheme://host`` of a target URL: what may be logged (vendors put tokens in paths and
    query strings)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or '?'}"
    except ValueError:
        return "<bad url>"


class HookDispatcher:
    """Claims due deliveries into free slots and sends each on its own task: one slow target
    holds only its own slots (at most ``_PER_HOOK`` per hook), never the other vendors'."""

    def __init__(self, settings: Settings, db: asyncpg.Pool, keys: Keys) -> None:
        self._keys = keys
        self.settings = settings
        self.db = db
        self.policy = RetryPolicy(
            settings.hook_retry_base_s, settings.hook_retry_max_s, settings.hook_max_attempts
        )
        resolver = None if settings.hooks_allow_private else PublicResolver()
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, limit=_CONCURRENCY),
            timeout=aiohttp.ClientTimeout(total=settings.hook_timeout_s),
        )
        self.inflight: dict[asyncio.Task[None], str] = {}  # task -> hook id
        self.delivered = 0
        self.failed = 0

    async def close(self) -> None:
        for task in list(self.inflight):
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)
        await self.http.close()

    def loop(self, failures: LoopFailures | None = None) -> SupervisedLoop:
        """The dispatcher's loop: claims every ``hook_poll_s`` while idle, at once while rows
        keep coming; a failing claim backs off from ``hook_poll_s`` up to 60 s."""
        idle = self.settings.hook_poll_s
        return SupervisedLoop(
            "hook-dispatcher",
            self.claim_round,
            period_s=idle,
            log=log,
            backoff=Backoff(idle, 60.0),
            expected=(asyncpg.PostgresError, OSError),
            failures=failures,
        )

    async def run(self, failures: LoopFailures | None = None) -> None:
        await self.loop(failures).run()

    async def claim_round(self) -> float | None:
        """Claim into the free slots; how long to wait before the next claim (``None``: the
        idle poll, nothing more was due)."""
        free = _CONCURRENCY - len(self.inflight)
        claimed = await self.dispatch(min(free, _BATCH)) if free > 0 else 0
        if len(self.inflight) >= _CONCURRENCY:  # full: wait for a slot, then claim again
            await asyncio.wait(list(self.inflight), return_when=asyncio.FIRST_COMPLETED)
            return 0.0
        if claimed < min(free, _BATCH):  # nothing more due now
            return None
        return 0.0

    async def dispatch(self, limit: int) -> int:
        """Claim up to ``limit`` due deliveries and start each on its own task."""
        per_hook: dict[str, int] = {}
        for hook_id in self.inflight.values():
            per_hook[hook_id] = per_hook.get(hook_id, 0) + 1
        busy = [h for h, n in per_hook.items() if n >= _PER_HOOK]
        room = {h: _PER_HOOK - n for h, n in per_hook.items() if n < _PER_HOOK}
        lease = self.settings.hook_timeout_s + 5
        due = await hooks_store.claim_due(self.db, limit, lease, busy, _PER_HOOK, room)
        for row in due:
            task = asyncio.create_task(self._deliver_guarded(row), name=f"hook-{row['id']}")
            self.inflight[task] = row["hook_id"]
            task.add_done_callback(self._done)
        return len(due)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.pop(task, None)

    async def _deliver_guarded(self, row: asyncpg.Record) -> None:
        try:
            await self.deliver(row)
        except asyncio.CancelledError:
            raise
        except Exception:  # the row's lease expires and it is claimed again
            log.exception("hook delivery %s failed to complete", row["id"])

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
                origin(row["target_url"]),
                status or (error or "").split(":", 1)[0],  # an error text may quote the URL
                attempts,
                outcome,
            )

    async def _post(self, row: asyncpg.Record) -> tuple[int | None, str | None]:
        url = row["target_url"]
        if not self.settings.hooks_allow_private and not _literal_allowed(url):
            return None, "refused: the target is not a public address"
        body = json.dumps(row["payload"], separators=(",", ":"))
        secret = self._keys.open(row["secret"], f"hook:{row['hook_id']}")
        headers = sign(secret, row["id"], datetime.now(UTC), body)
        try:
            async with self.http.post(url, data=body, headers=headers, allow_redirects=False) as r:
                # the answer's status is all we need: read at most a little of a hostile body
                await r.content.read(_MAX_BODY)
                return r.status, None if r.status < 300 else f"HTTP {r.status}"
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]


def _literal_allowed(url: str) -> bool:
    """An IP-literal host bypasses the connector's resolver: judge it here (a hostname is
    judged by ``PublicResolver`` at connect time, so DNS rebinding cannot reach a private one)."""
    try:
        host = urlsplit(url).hostname or ""
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return is_public_address(host)


def new_secret() -> str:
    """A hook signing secret in the Standard Webhooks form ``whsec_<base64 of 32 bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
