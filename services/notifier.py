"""The notifier: delivers the notification outbox (``notification_deliveries``) by email and
Web Push, outside every shard's commit path.

One loop per gateway (as the REST hook dispatcher) claims due rows with ``FOR UPDATE SKIP
LOCKED`` and a lease, so gateways never send one row at once, and settles each:

- the user's preferences decide first (``models/notifications.py``): a kind or channel turned
  off, a disabled account, a direct message to someone online, the hourly cap reached: skipped
  (with the reason in ``last_error``); quiet hours: held until they end (no attempt counted);
- then the channel: SMTP (services/mailer.py) or every push subscription of the user
  (services/webpush.py; a 404/410 deletes that subscription, the endpoints that accepted are
  kept in ``done`` so a retry goes only to the others);
- a transient failure is retried with exponential backoff and jitter, ``notify_max_attempts``
  times, then dead-lettered; a permanent one (SMTP 5xx, a push 4xx) is dead at once.

At-least-once: a delivery interrupted after sending is sent again when its lease ends; the
receiver can dedupe by the delivery id (the email's ``Message-ID``, the push payload's ``id``).
The loop must not die: a failing claim is logged and retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cluster.config import Settings
from models.market_hooks import RetryPolicy
from models.notifications import (
    ACCOUNT_KINDS,
    DIGEST_KINDS,
    Preferences,
    quiet_until,
    rate_window,
)
from models.notify_templates import Context, email_bodies, folded_line, push_payload, render
from services.mailer import Mail, Mailer, message_id
from services.notify_links import Links
from services.presence import Presence
from services.secrets import Keys
from services.webpush import WebPush
from store import notifications_store as st

log = logging.getLogger("hyperlocal.notifier")

_BATCH = 50
_CONCURRENCY = 16
_COUNTS_EVERY_S = 10.0
_DIGEST_LINES = 20  # items a digest lists (then "and N more")


class Notifier:
    """Claims due deliveries and settles each; keeps the counts ``/metrics`` shows."""

    def __init__(
        self,
        settings: Settings,
        db: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        presence: Presence,
        push: WebPush,
        mailer: Mailer | None,
        links: Links,
    ) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis
        self.keys = keys
        self.presence = presence
        self.push = push
        self.mailer = mailer
        self.links = links
        self.policy = RetryPolicy(
            settings.notify_retry_base_s, settings.notify_retry_max_s, settings.notify_max_attempts
        )
        self.channels = ["push", "email"]  # without SMTP, emails are skipped (said so)
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (channel, outcome) -> count
        self.queued: dict[str, float] = {}
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._counted_at = 0.0
        self._digests_at = 0.0

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.0
        while True:
            claimed = 0
            try:
                claimed = await self.run_once()
                backoff = 0.0
                await self._maybe_count()
                await self._maybe_digest()
            except (asyncpg.PostgresError, OSError) as exc:
                backoff = min(60.0, max(self.settings.notify_poll_s, backoff * 2))
                log.warning("notifier claim failed (next in %.1f s): %r", backoff, exc)
            except Exception:  # the loop must not die; log with context and back off
                backoff = min(60.0, max(self.settings.notify_poll_s, backoff * 2))
                log.exception("unexpected notifier error (next in %.1f s)", backoff)
            if backoff:
                await asyncio.sleep(backoff)
            elif claimed < _BATCH:
                await asyncio.sleep(self.settings.notify_poll_s)

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and settle them all; how many were claimed."""
        lease = max(self.settings.smtp_timeout_s, self.settings.push_timeout_s) * 2 + 5
        rows = await st.claim(self.db, self.channels, _BATCH, lease)
        if rows:
            await asyncio.gather(*(self._guarded(row) for row in rows))
        return len(rows)

    async def _maybe_count(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._counted_at < _COUNTS_EVERY_S:
            return
        self._counted_at = now
        counts = await st.counts(self.db)
        self.queued = {
            f"notify_queued_{channel}": float(counts.get((channel, "pending"), 0))
            for channel in ("email", "push")
        }
        await st.purge(self.db, self.settings.notify_keep_days)

    async def _maybe_digest(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._digests_at >= self.settings.notify_digest_check_s:
            self._digests_at = now
            await self.digest_once()

    async def digest_once(self) -> int:
        """Queue the daily digest of every user whose digest is due and who has something new
        unread; how many were queued. The email itself goes through the outbox like any."""
        queued = 0
        async with self.db.acquire() as conn, conn.transaction():
            due = await st.digests_due(conn, self.settings.notify_digest_period_s, 100)
            for user in due:
                items, total = await st.digest_items(
                    conn, user["user_id"], user["since"], sorted(DIGEST_KINDS), _DIGEST_LINES
                )
                if not items:
                    continue
                lines = await self._digest_lines(items)
                source = f"digest:{user['user_id']}:{datetime.now(UTC).isoformat()}"
                payload = {"lines": lines, "count": total}
                queued += await st.enqueue(
                    conn, user["user_id"], "digest", "email", source, payload
                )
        return queued

    async def _digest_lines(self, items: list[asyncpg.Record]) -> list[str]:
        actors = sorted({r["actor_id"] for r in items if r["actor_id"]})
        names = await st.names(self.db, actors) if actors else {}
        lines = []
        for r in items:
            data = dict(r["data"])
            ctx = Context(
                "",
                names.get(r["actor_id"] or "", data.get("vendor_name") or "someone"),
                self.links.app_url(),
            )
            lines.append(folded_line(render(r["kind"], data, ctx).text, r["fold_count"]))
        return lines

    async def _guarded(self, row: asyncpg.Record) -> None:
        async with self._slots:
            try:
                await self.deliver(row)
            except asyncio.CancelledError:
                raise
            except Exception:  # its lease ends and it is claimed again
                log.exception("notification delivery %s failed to complete", row["id"])

    # -- one delivery ---------------------------------------------------------------------------
    async def deliver(self, row: asyncpg.Record) -> None:
        kind, channel = row["kind"], row["channel"]
        reason = await self._skip_reason(row)
        if reason == "quiet":
            prefs = Preferences.of(row["settings"])
            ends = quiet_until(prefs.quiet(), datetime.now(UTC))
            wait = (ends - datetime.now(UTC)).total_seconds() if ends else 60.0
            await st.settle(
                self.db,
                row["id"],
                "pending",
                "quiet hours",
                attempted=False,
                retry_in_s=max(1.0, wait),
            )
            return
        if reason is not None:
            await self._final(row, "skipped", reason)
            return
        if channel == "email":
            await self._email(row, kind)
        else:
            await self._push(row, kind)

    async def _skip_reason(self, row: asyncpg.Record) -> str | None:
        kind, channel, user = row["kind"], row["channel"], row["user_id"]
        if row["disabled_at"] is not None:
            return "account disabled"
        if channel == "email" and self.mailer is None:
            return "no SMTP server configured"
        if kind in ACCOUNT_KINDS:
            return None if channel == "email" else "account emails only"
        prefs = Preferences.of(row["settings"])
        if kind == "digest":
            on = prefs.channel_on("email") and prefs.digest() == "daily"
            return None if on else "preference"
        if not prefs.wants(kind, channel):
            return "preference"
        if prefs.digested(kind, channel):
            return "digest"
        if kind == "chat.message" and await self.presence.online(user):
            return "online"
        if quiet_until(prefs.quiet(), datetime.now(UTC)) is not None:
            return "quiet"
        if row["attempts"] == 0 and not await self._within_rate(user, channel):
            return "rate_limited"
        return None

    async def _within_rate(self, user_id: str, channel: str) -> bool:
        key = f"hl:nrate:{user_id}:{channel}:{rate_window(datetime.now(UTC))}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 3700)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:  # a lost limit degrades, never blocks delivery
            log.warning("notify rate limit skipped: %r", exc)
            return True
        return int(count) <= self.settings.notify_rate_per_hour

    async def _context(self, row: asyncpg.Record, unsubscribe: str | None) -> Context:
        data: dict[str, Any] = row["payload"]
        actor = data.get("by") or (data.get("message") or {}).get("sender_id")
        names = await st.names(self.db, [actor]) if actor else {}
        return Context(
            recipient_name=row["display_name"],
            actor_name=names.get(actor or "", data.get("vendor_name") or "someone"),
            app_url=self.links.app_url(),
            unsubscribe_url=unsubscribe,
        )

    async def _email(self, row: asyncpg.Record, kind: str) -> None:
        assert self.mailer is not None
        data: dict[str, Any] = row["payload"]
        if kind in ACCOUNT_KINDS:
            data = self.links.open_account_payload(data, row["source"])
            unsubscribe = None  # an account email is not a subscription
        else:
            scope = "all" if kind == "digest" else kind
            unsubscribe = self.links.unsubscribe_url(row["user_id"], scope)
        ctx = await self._context(row, unsubscribe)
        rendered = render(kind, data, ctx)
        text, html = email_bodies(rendered, ctx)
        mail = Mail(row["email"], rendered.subject, text, html, message_id(row["id"]), unsubscribe)
        result = await self.mailer.send(mail)
        if result.outcome == "sent":
            await self._final(row, "sent", None)
        elif result.outcome == "failed":
            await self._final(row, "dead", result.error)
        else:
            await self._retry(row, result.error)

    async def _push(self, row: asyncpg.Record, kind: str) -> None:
        user = row["user_id"]
        done = set(row["done"])
        subs = [s for s in await st.subscriptions(self.db, user) if s["endpoint"] not in done]
        if not subs and not done:
            await self._final(row, "skipped", "no push subscription")
            return
        ctx = await self._context(row, None)
        payload = push_payload(kind, render(kind, row["payload"], ctx), row["id"])
        topic = f"n{row['notification_id'] or row['id']}" if kind != "chat.message" else None
        retry_errors: list[str] = []
        for sub in subs:
            info = {
                "endpoint": sub["endpoint"],
                "keys": {"p256dh": sub["p256dh"], "auth": sub["auth"]},
            }
            result = await self.push.send(info, payload, topic, ttl_s=86400)
            status = result.status
            if status is not None and 200 <= status < 300:
                done.add(sub["endpoint"])
            elif status in (404, 410):
                await st.remove_subscription(self.db, sub["endpoint"])
                log.info("push subscription of %s gone (%s): removed", user, status)
            elif status is None or status == 429 or status >= 500:
                retry_errors.append(result.error or f"HTTP {status}")
            else:  # another 4xx: this device refuses the message for good
                log.info("push to a device of %s refused: %s", user, result.error)
        if retry_errors:
            await self._retry(row, "; ".join(retry_errors)[:300], sorted(done))
        elif done:
            await self._final(row, "sent", None, sorted(done))
        else:
            await self._final(row, "dead", "every device refused or is gone")

    async def _retry(
        self, row: asyncpg.Record, error: str | None, done: list[str] | None = None
    ) -> None:
        attempts = row["attempts"] + 1
        if attempts >= self.policy.max_attempts:
            await self._final(row, "dead", error, done, attempted=True)
            return
        self.outcomes[(row["channel"], "retried")] += 1
        await st.settle(
            self.db,
            row["id"],
            "pending",
            error,
            attempted=True,
            retry_in_s=self.policy.delay_s(attempts),
            done=done,
        )

    async def _final(
        self,
        row: asyncpg.Record,
        status: str,
        error: str | None,
        done: list[str] | None = None,
        *,
        attempted: bool | None = None,
    ) -> None:
        self.outcomes[(row["channel"], status)] += 1
        tried = status in ("sent", "dead") if attempted is None else attempted
        await st.settle(self.db, row["id"], status, error, attempted=tried, done=done)
