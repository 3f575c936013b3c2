"""The notifier: delivers the notification outbox (``notification_deliveries``) by email and
Web Push, outside every shard's commit path.

It runs in a process of its own, the deployment's notifier actor (cluster/notifier.py), never
in a gateway: rendering, SMTP and Web Push encryption (ECDH + AES-GCM per device) would take
the gateway's loop from its sockets. Its loop claims due rows with ``FOR UPDATE SKIP LOCKED``
and a lease (so two notifiers, say an old incarnation's leftovers, never send one row at once),
takes a token of ``notify_rate_per_s`` before every send (services/pace.py: a burst is spread
out), and settles each:

- the user's preferences decide first (``models/notifications.py``): a kind or channel turned
  off, a disabled account, a direct message to someone online, the hourly cap reached: skipped
  (with the reason in ``last_error``); quiet hours: held until they end (no attempt counted);
- then the channel: SMTP (services/mailer.py) or every push subscription of the user
  (services/webpush.py; a 404/410 deletes that subscription, the endpoints that accepted are
  kept in ``done`` so a retry goes only to the others);
- a transient failure is retried with exponential backoff and jitter, ``notify_max_attempts``
  times, then dead-lettered; a permanent one (SMTP 5xx, a push 4xx) is dead at once.

What it costs Postgres is per batch, not per row: one statement claims up to ``_BATCH`` rows,
one reads the senders' names and one the devices of the batch, one settles every outcome. It
sleeps until Postgres wakes it (``LISTEN hl_outbox``: migration 0020 sends one ``NOTIFY`` per
transaction that queued a delivery), then waits ``notify_gather_ms`` so a burst is one batch;
its own timer wakes it for the retries it set, and ``notify_poll_s`` is the safety net.

At-least-once: a delivery interrupted after sending is sent again when its lease ends; the
receiver can dedupe by the delivery id (the email's ``Message-ID``, the push payload's ``id``).
The loops must not die: they are services/loops.py's (a failing round is logged, counted and
tried again with backoff).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import Counter
from dataclasses import dataclass, field
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
from services.loops import Backoff, LoopFailures, Step, SupervisedLoop, beside
from services.mailer import Mail, Mailer, message_id
from services.notify_links import Links
from services.pace import Pace
from services.presence import Presence
from services.secrets import Keys
from services.webpush import WebPush
from store import notifications_store as st
from store.listen import Listener

log = logging.getLogger("hyperlocal.notifier")

WAKE_CHANNEL = "hl_outbox"  # migration 0020's NOTIFY
_BATCH = 50
_CONCURRENCY = 16
_COUNTS_EVERY_S = 10.0
_PURGE_EVERY_S = 600.0
_DIGEST_LINES = 20  # items a digest lists (then "and N more")


@dataclass(slots=True)
class _Batch:
    """What one claimed batch shares: its senders' names and its users' push devices (read
    once for the batch), and the outcomes settled together at its end."""

    names: dict[str, str] = field(default_factory=dict)
    devices: dict[str, list[asyncpg.Record]] = field(default_factory=dict)
    outcomes: list[st.Outcome] = field(default_factory=list)
    again_in: list[float] = field(default_factory=list)  # seconds until the put back are due


class Notifier:
    """Claims due deliveries in batches and settles each batch in one statement; owns the
    counts ``/metrics`` shows (``stats``), the pace of its sends and the times of the retries
    it set (its own wake-ups)."""

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
        failures: LoopFailures | None = None,
    ) -> None:
        self.settings = settings
        self.failures = failures if failures is not None else LoopFailures()
        """Failed rounds of this notifier's loops, by loop name (its stats show them)."""
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
        self.pace = Pace(settings.notify_rate_per_s)
        # a claimed batch is sent within about 5 s of tokens, well inside its lease
        rate = settings.notify_rate_per_s
        self.batch = min(_BATCH, max(1, int(rate * 5))) if rate > 0 else _BATCH
        self._counted_at = 0.0
        self._purged_at = 0.0
        self._digests_at = 0.0
        self._due: list[float] = []  # loop times of the retries and holds this notifier set

    def stats(self) -> dict[str, Any]:
        """What ``/metrics`` shows of this notifier: outcomes by (channel, outcome) since it
        started, the outbox's pending rows by channel (refreshed every 10 s), the seconds its
        sends waited for the rate limit, its loops' failed rounds by loop."""
        return {
            "outcomes": dict(self.outcomes),
            "queued": dict(self.queued),
            "paced_s": self.pace.waited_s,
            "loop_failures": dict(self.failures.counts),
        }

    # -- the loops (services/loops.py: logged, counted, backed off, never dead) ----------------
    async def run(self) -> None:
        """Deliver until cancelled: the outbox loop, and beside it the housekeeping (gauges,
        purge, digests) on timers of its own, so those never wake the outbox loop."""
        assert self.settings.database_url
        wake = Listener(self.settings.database_url, WAKE_CHANNEL)
        try:
            await beside(
                self._loop("notifier", lambda: self._delivery_round(wake)).run(),
                self._loop("notifier-housekeeping", self._housekeeping_round).run(),
                "notifier-housekeeping",
            )
        finally:
            await wake.close()

    def _loop(self, name: str, step: Step) -> SupervisedLoop:
        """A loop of this notifier: a failing round (Postgres or the network away: a warning;
        anything else: a traceback) is counted in ``failures`` and backs off 1 s doubling to
        60 s; each round says how long to wait before the next."""
        return SupervisedLoop(
            name,
            step,
            period_s=self.settings.notify_poll_s,
            log=log,
            backoff=Backoff(1.0, 60.0),
            expected=(asyncpg.PostgresError, OSError),
            failures=self.failures,
        )

    async def _delivery_round(self, wake: Listener) -> float:
        """One batch; then, unless the batch was full (more are due), sleep until woken by a
        queued delivery (and ``notify_gather_ms`` more, so a burst is one batch), a retry this
        notifier set, or the poll."""
        wake.clear()  # what is queued from now on wakes the next wait
        claimed = await self.run_once()
        if claimed < self.batch and await wake.wait(self._idle_s()):
            await asyncio.sleep(self.settings.notify_gather_ms / 1000)
        return 0.0

    async def _housekeeping_round(self) -> float:
        """The gauges (and the purge) and the digest look, each when due; the wait until the
        sooner of the two is due again."""
        await self._maybe_count()
        await self._maybe_digest()
        now = asyncio.get_running_loop().time()
        soonest = min(
            self._counted_at + _COUNTS_EVERY_S,
            self._digests_at + self.settings.notify_digest_check_s,
        )
        return max(soonest - now, 0.05)

    def _idle_s(self) -> float:
        """How long to sleep unless woken: the poll, or less when a retry or a hold this
        notifier set is due sooner."""
        now = asyncio.get_running_loop().time()
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)
        soonest = self._due[0] - now if self._due else self.settings.notify_poll_s
        return max(0.0, min(self.settings.notify_poll_s, soonest))

    def _wake_for(self, batch: _Batch) -> None:
        """Timers for the rows ``batch`` put back: set once they are settled (so never before
        their ``next_at``), a little after it."""
        now = asyncio.get_running_loop().time()
        for delay in batch.again_in:
            heapq.heappush(self._due, now + delay + 0.02)

    async def run_once(self) -> int:
        """Claim one batch of due deliveries, deliver them and settle them all in one
        statement; how many were claimed."""
        lease = max(self.settings.smtp_timeout_s, self.settings.push_timeout_s) * 2 + 5
        if self.pace.rate_per_s > 0:  # and the batch's tokens, for a few devices a push
            lease += 4 * self.batch / self.pace.rate_per_s
        rows = await st.claim(self.db, self.channels, self.batch, lease)
        if rows:
            batch = _Batch()
            decided = await asyncio.gather(*(self._decide(row) for row in rows))
            sends = [row for row, reason in zip(rows, decided, strict=True) if reason is None]
            for row, reason in zip(rows, decided, strict=True):
                if reason is not None and reason != _LEAVE:
                    self._skip_or_hold(batch, row, reason)
            if sends:
                await self._prefetch(batch, sends)
                await asyncio.gather(*(self._guarded(batch, row) for row in sends))
            await st.settle(self.db, batch.outcomes)
            self._wake_for(batch)
        return len(rows)

    async def _prefetch(self, batch: _Batch, sends: list[asyncpg.Record]) -> None:
        actors = {a for row in sends if (a := _actor(row["payload"]))}
        if actors:
            batch.names = await st.names(self.db, sorted(actors))
        pushed = sorted({row["user_id"] for row in sends if row["channel"] == "push"})
        if pushed:
            batch.devices = await st.subscriptions(self.db, pushed)

    async def _maybe_count(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._counted_at < _COUNTS_EVERY_S:
            return
        self._counted_at = now
        counts = await st.pending(self.db)
        self.queued = {
            f"notify_queued_{channel}": float(counts.get(channel, 0))
            for channel in ("email", "push")
        }
        if now - self._purged_at >= _PURGE_EVERY_S:
            self._purged_at = now
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

    async def _guarded(self, batch: _Batch, row: asyncpg.Record) -> None:
        async with self._slots:
            try:
                await self.deliver(batch, row)
            except asyncio.CancelledError:
                raise
            except Exception:  # its lease ends and it is claimed again
                log.exception("notification delivery %s failed to complete", row["id"])

    # -- one delivery ---------------------------------------------------------------------------
    async def _decide(self, row: asyncpg.Record) -> str | None:
        """Why ``row`` is not sent now (a skip reason, ``quiet``), or None: send it."""
        try:
            return await self._skip_reason(row)
        except Exception:  # a bug in one row never stalls the batch: its lease ends
            log.exception("notification delivery %s could not be decided", row["id"])
            return _LEAVE

    def _skip_or_hold(self, batch: _Batch, row: asyncpg.Record, reason: str) -> None:
        if reason != "quiet":
            self._final(batch, row, "skipped", reason)
            return
        prefs = Preferences.of(row["settings"])
        ends = quiet_until(prefs.quiet(), datetime.now(UTC))
        wait = max(1.0, (ends - datetime.now(UTC)).total_seconds() if ends else 60.0)
        batch.outcomes.append(st.Outcome(row["id"], "pending", "quiet hours", False, wait))
        batch.again_in.append(wait)

    async def deliver(self, batch: _Batch, row: asyncpg.Record) -> None:
        """Send one delivery whose preferences allow it now; its outcome joins ``batch``."""
        if row["channel"] == "email":
            await self._email(batch, row, row["kind"])
        else:
            await self._push(batch, row, row["kind"])

    async def _skip_reason(self, row: asyncpg.Record) -> str | None:
        kind, channel, user = row["kind"], row["channel"], row["user_id"]
        if row["disabled_at"] is not None:
            return "account disabled"
        if channel == "email" and self.mailer is None:
            return "no SMTP server configured"
        if channel == "email" and not row["email_claimed"]:
            return "address not claimed"  # the signup found it taken: it is someone else's
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

    def _context(self, batch: _Batch, row: asyncpg.Record, unsubscribe: str | None) -> Context:
        data: dict[str, Any] = row["payload"]
        return Context(
            recipient_name=row["display_name"],
            actor_name=batch.names.get(_actor(data) or "", data.get("vendor_name") or "someone"),
            app_url=self.links.app_url(),
            unsubscribe_url=unsubscribe,
        )

    async def _email(self, batch: _Batch, row: asyncpg.Record, kind: str) -> None:
        assert self.mailer is not None
        data: dict[str, Any] = row["payload"]
        if kind in ACCOUNT_KINDS:
            data = self.links.open_account_payload(data, row["source"])
            unsubscribe = None  # an account email is not a subscription
        else:
            scope = "all" if kind == "digest" else kind
            unsubscribe = self.links.unsubscribe_url(row["user_id"], scope)
        ctx = self._context(batch, row, unsubscribe)
        rendered = render(kind, data, ctx)
        text, html = email_bodies(rendered, ctx)
        mail = Mail(row["email"], rendered.subject, text, html, message_id(row["id"]), unsubscribe)
        await self.pace.take()
        result = await self.mailer.send(mail)
        if result.outcome == "sent":
            self._final(batch, row, "sent", None)
        elif result.outcome == "failed":
            self._final(batch, row, "dead", result.error)
        else:
            self._retry(batch, row, result.error)

    async def _push(self, batch: _Batch, row: asyncpg.Record, kind: str) -> None:
        user = row["user_id"]
        done = set(row["done"])
        subs = [s for s in batch.devices.get(user, []) if s["endpoint"] not in done]
        if not subs and not done:  # the device went after the trigger saw it
            self._final(batch, row, "skipped", "no push subscription")
            return
        ctx = self._context(batch, row, None)
        payload = push_payload(kind, render(kind, row["payload"], ctx), row["id"])
        topic = f"n{row['notification_id'] or row['id']}" if kind != "chat.message" else None
        retry_errors: list[str] = []
        for sub in subs:
            info = {
                "endpoint": sub["endpoint"],
                "keys": {"p256dh": sub["p256dh"], "auth": sub["auth"]},
            }
            await self.pace.take()
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
            self._retry(batch, row, "; ".join(retry_errors)[:300], sorted(done))
        elif done:
            self._final(batch, row, "sent", None, sorted(done))
        else:
            self._final(batch, row, "dead", "every device refused or is gone")

    def _retry(
        self, batch: _Batch, row: asyncpg.Record, error: str | None, done: list[str] | None = None
    ) -> None:
        attempts = row["attempts"] + 1
        if attempts >= self.policy.max_attempts:
            self._final(batch, row, "dead", error, done, attempted=True)
            return
        self.outcomes[(row["channel"], "retried")] += 1
        delay = self.policy.delay_s(attempts)
        batch.outcomes.append(st.Outcome(row["id"], "pending", error, True, delay, done))
        batch.again_in.append(delay)

    def _final(
        self,
        batch: _Batch,
        row: asyncpg.Record,
        status: str,
        error: str | None,
        done: list[str] | None = None,
        *,
        attempted: bool | None = None,
    ) -> None:
        self.outcomes[(row["channel"], status)] += 1
        tried = status in ("sent", "dead") if attempted is None else attempted
        batch.outcomes.append(st.Outcome(row["id"], status, error, tried, 0.0, done))


_LEAVE = "\x00leave"  # a row whose decision failed: not settled, its lease ends


def _actor(data: dict[str, Any]) -> str | None:
    """Who a delivery is about (its template names them)."""
    actor = data.get("by") or (data.get("message") or {}).get("sender_id")
    return str(actor) if actor else None
