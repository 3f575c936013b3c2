"""What the notification outbox costs Postgres per inbox event: commits and rows written.

A functional figure, not a benchmark (counts, not timings): embedded Postgres and Redis, no Ray,
one ``Notifier`` (services/notifier.py, the gateway's class) running its own loop with the
configured poll, and a producer that writes what a flash sale's checkouts write to the inbox:
per transaction, an ``order.updated`` event on the buyer's inbox and one on the vendor's (each
makes a notification and its deliveries, migration 0012's/0020's ``hl_notify`` trigger).

Three windows of ``--seconds`` each, counted with ``pg_stat_database`` (``xact_commit``,
``tup_inserted + tup_updated + tup_deleted``): idle (the server's own background), the producer
alone, the producer with the notifier. The notifier's commits per inbox event are
``(with - alone) / events``; ``--scenario flash`` is the flash sale's case (default preferences,
no SMTP configured, no push device: nothing can be delivered, and since migration 0034 the
trigger queues no email either, as a notifier without SMTP closes that channel when it opens);
``--scenario deliver`` gives every user a push device and SMTP on loopback (all delivered).

    python -m bench.notify_cost                     # flash, 25 transactions/s, 10 s windows
    python -m bench.notify_cost --scenario deliver --rate 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.notify_burst import Sinks, _keys
from cluster.config import Settings, load_settings
from models.notifications import open_channels
from store import notifications_store
from store.db import create_pool

_STATS = (
    "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS rows,"
    " pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid"
    " FROM pg_stat_database WHERE datname = current_database()"
)


async def _stats(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """(commits, rows written, transaction ids assigned): ``xact_commit`` counts every
    transaction, read-only ones too (a LISTENing backend reads each NOTIFY in one); only a
    transaction that writes is given an id (and flushes WAL at its commit)."""
    # pg_stat_* are a snapshot per transaction: clear it to read the current values
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    await asyncio.sleep(1.5)  # backends flush their counters about every second
    row = await conn.fetchrow(_STATS)
    assert row is not None
    return int(row["xact_commit"]), int(row["rows"]), int(row["next_xid"])


async def _seed(db: asyncpg.Pool, pairs: int, sinks: Sinks | None) -> list[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    buyers = [f"cb{tag}{i:05d}" for i in range(pairs)]
    vendors = [f"cv{tag}{i:05d}" for i in range(pairs)]
    async with db.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO users (id, email, email_norm, password_hash, display_name)"
            " VALUES ($1, $2, $2, 'x', 'cost')",
            [(u, f"{u}@bench.invalid") for u in buyers + vendors],
        )
        if sinks is not None:
            p256dh, auth = _keys()
            await conn.executemany(
                "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth)"
                " VALUES ($1, $2, $3, $4)",
                [(sinks.push_endpoint(u), u, p256dh, auth) for u in buyers + vendors],
            )
    return list(zip(buyers, vendors, strict=True))


async def _produce(url: str, pairs: list[tuple[str, str]], rate: float, seconds: float) -> int:
    """One transaction per checkout, ``rate`` a second: two inbox events each; how many."""
    from store.admin_store import inbox_event

    conn = await asyncpg.connect(url)
    from store.db import _init_connection

    await _init_connection(conn)
    made = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            buyer, vendor = pairs[made % len(pairs)]
            order = {"id": f"o{made}", "status": "paid", "buyer_id": buyer, "total": 100}
            async with conn.transaction():
                await inbox_event(conn, buyer, "order.updated", {"order": order})
                await inbox_event(conn, vendor, "order.updated", {"order": order})
            made += 1
            await asyncio.sleep(max(0.0, started + made / rate - time.monotonic()))
    finally:
        await conn.close()
    return made


async def _pending(db: asyncpg.Pool) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM notification_deliveries WHERE status = 'pending'")
    )


async def _drain(db: asyncpg.Pool, timeout_s: float) -> None:
    """Until no delivery is pending (or ``timeout_s``)."""
    for _ in range(int(timeout_s / 0.2)):
        if not await _pending(db):
            return
        await asyncio.sleep(0.2)


async def measure(settings: Settings, scenario: str, rate: float, seconds: float) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from services.mailer import Mailer
    from services.notifier import Notifier
    from services.notify_links import Links
    from services.presence import Presence
    from services.secrets import Keys
    from services.webpush import WebPush

    url, redis_url = settings.database_url, settings.redis_url
    assert url and redis_url
    sinks = Sinks() if scenario == "deliver" else None
    if sinks is not None:
        await sinks.start()
        settings = settings.model_copy(update={"smtp_url": sinks.smtp_url})
    db = await create_pool(url, min_size=2, max_size=10)
    # what a notifier of these settings writes when it opens: the channels the trigger may queue on
    await notifications_store.sync_channels(db, open_channels(bool(settings.smtp_url)))
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(settings)
    push = WebPush(settings, db, keys)
    probe = await asyncpg.connect(url)
    task: asyncio.Task[None] | None = None
    try:
        await push.start()
        links = Links(settings, db, keys)
        await links.start()
        presence = Presence(redis, "cost", settings.presence_ttl_s)
        mailer = Mailer(settings) if settings.smtp_url else None
        notifier = Notifier(settings, db, redis, keys, presence, push, mailer, links)
        pairs = await _seed(db, max(50, int(rate * seconds)), sinks)
        windows: dict[str, tuple[int, int, int, int, float]] = {}

        t0, (c0, r0, x0) = time.monotonic(), await _stats(probe)
        await asyncio.sleep(seconds)
        t1, (c1, r1, x1) = time.monotonic(), await _stats(probe)
        windows["idle"] = (c1 - c0, r1 - r0, x1 - x0, 0, t1 - t0)

        made = await _produce(url, pairs, rate, seconds)
        t2, (c2, r2, x2) = time.monotonic(), await _stats(probe)
        windows["producer"] = (c2 - c1, r2 - r1, x2 - x1, made, t2 - t1)
        # what the producer left: the notifier's first batches drain it, outside the windows
        task = asyncio.create_task(notifier.run())
        await _drain(db, 120 + settings.notify_poll_s)
        await asyncio.sleep(2)

        t3, (c3, r3, x3) = time.monotonic(), await _stats(probe)
        made = await _produce(url, pairs, rate, seconds)
        await _drain(db, 60 + settings.notify_poll_s)
        left = await _pending(db)
        t4, (c4, r4, x4) = time.monotonic(), await _stats(probe)
        windows["producer+notifier"] = (c4 - c3, r4 - r3, x4 - x3, made, t4 - t3)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await probe.close()
        await push.close()
        await redis.aclose()
        await db.close()
        if sinks is not None:
            await sinks.stop()
    idle = windows["idle"]  # the probe's own reads and the background

    def net(name: str) -> tuple[float, float, float, int]:
        commits, rows, xids, made, took = windows[name]
        share = took / idle[4]
        return commits - idle[0] * share, rows - idle[1] * share, xids - idle[2] * share, made

    alone_c, alone_r, alone_x, alone_n = net("producer")
    with_c, with_r, with_x, with_n = net("producer+notifier")
    per_txn_c, per_txn_r, per_txn_x = alone_c / alone_n, alone_r / alone_n, alone_x / alone_n
    events = 2 * with_n
    return {
        "scenario": scenario,
        "poll_s": settings.notify_poll_s,
        "windows": windows,
        "left_pending": left,
        "events": events,
        "producer_commits_per_event": per_txn_c / 2,
        "producer_rows_per_event": per_txn_r / 2,
        "notifier_commits_per_event": (with_c - per_txn_c * with_n) / events,
        "notifier_rows_per_event": (with_r - per_txn_r * with_n) / events,
        "notifier_writing_commits_per_event": (with_x - per_txn_x * with_n) / events,
        "sent": (sinks.emails, sinks.pushes) if sinks else (0, 0),
    }


def main(argv: list[str] | None = None) -> int:
    from cluster.runtime import Runtime

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=("flash", "deliver"), default="flash")
    p.add_argument("--rate", type=float, default=25.0, help="producer transactions per second")
    p.add_argument("--seconds", type=float, default=10.0, help="each window")
    p.add_argument("--poll-s", type=float, help="HL_NOTIFY_POLL_S (default: the configured)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hl-bench-ncost-"))
    extra: dict[str, Any] = {"push_allow_private": True, "notify_rate_per_hour": 10**6}
    if args.poll_s is not None:
        extra["notify_poll_s"] = args.poll_s
    runtime = Runtime(load_settings(data_dir=root, **extra))
    try:
        settings = runtime.start_services()
        out = asyncio.run(measure(settings, args.scenario, args.rate, args.seconds))
    finally:
        runtime.stop()
        shutil.rmtree(root, ignore_errors=True)
    for key, value in out.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
