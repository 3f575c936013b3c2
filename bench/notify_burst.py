"""Notifications benchmark: the notifier's throughput, and chat fanout with and without a burst.

1. **Throughput**: ``--deliveries`` users, each with one push subscription, get one email and
   one push delivery queued in the outbox (``order.status``, on by default for both channels);
   one ``Notifier`` (services/notifier.py, the gateway's own class, with its real SMTP client
   and Web Push sender: RFC 8291 encryption and a VAPID signature per push) drains them against
   a loopback SMTP server (aiosmtpd) and a loopback push service that answers 201. Reported:
   emails/s and pushes/s, each counted when settled ``sent`` in Postgres.
2. **Chat during a burst**: the chat workload of bench/chat_fanout.py (group rooms,
   ``chat.send`` at a fixed offered rate, every member must get each message once) against a
   gateway, measured twice in one run: quiet, then while ``--burst`` push and email deliveries
   are queued at once and the gateway's own notifier drains them. Reported: delivery p50/p99 and
   loss of both phases side by side, and how much of the burst was sent during the phase.

The stack is the tests' (cluster/runtime.py: embedded Postgres and Redis, a local Ray, the
gateway in this process on a loopback port), so the load generator shares the gateway's
process: the comparison (same run, same process, with and without) is what this measures, not
absolute chat figures (bench/chat_fanout.py measures those per core). Measure on a quiet box;
figures from a shared machine say little.

    python -m bench.notify_burst                      # full: 2,000 deliveries, 200 chat clients
    python -m bench.notify_burst --quick              # smoke (~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.chat_workload import ChatWorkload
from bench.loadgen import Fleet, FleetConfig
from bench.report import table
from cluster.config import Settings, load_settings
from store.db import create_pool


@dataclass
class Sinks:
    """A loopback SMTP server and push service that count what they accepted."""

    emails: int = 0
    pushes: int = 0
    smtp_port: int = 0
    controller: Controller | None = None
    push_server: TestServer | None = None
    started: float = field(default_factory=time.monotonic)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.emails += 1
        return "250 OK"

    async def _push(self, request: web.Request) -> web.Response:
        await request.read()
        self.pushes += 1
        return web.Response(status=201)

    async def start(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.smtp_port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.smtp_port)
        self.controller.start()
        app = web.Application()
        app.router.add_post("/push/{device}", self._push)
        self.push_server = TestServer(app, host="127.0.0.1", port=0)
        await self.push_server.start_server()

    async def stop(self) -> None:
        if self.push_server is not None:
            await self.push_server.close()
        if self.controller is not None:
            self.controller.stop()

    @property
    def smtp_url(self) -> str:
        return f"smtp://127.0.0.1:{self.smtp_port}"

    def push_endpoint(self, device: str) -> str:
        assert self.push_server is not None
        return str(self.push_server.make_url(f"/push/{device}"))


def _keys() -> tuple[str, str]:
    """A browser's subscription keys (one pair serves every bench device)."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    enc = base64.urlsafe_b64encode
    return enc(point).decode().rstrip("="), enc(os.urandom(16)).decode().rstrip("=")


async def seed(db: asyncpg.Pool, sinks: Sinks, count: int, tag: str) -> list[str]:
    """``count`` users, one push device each, one email and one push delivery each."""
    p256dh, auth = _keys()
    users = [f"nb{tag}{i:06d}" for i in range(count)]
    async with db.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO users (id, email, email_norm, password_hash, display_name)"
            " VALUES ($1, $2, $2, 'x', 'bench') ON CONFLICT DO NOTHING",
            [(u, f"{u}@bench.invalid") for u in users],
        )
        await conn.executemany(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [(sinks.push_endpoint(u), u, p256dh, auth) for u in users],
        )
        payload = {"order": {"id": "bench", "status": "paid"}}
        await conn.executemany(
            "INSERT INTO notification_deliveries (user_id, kind, channel, source, payload)"
            " VALUES ($1, 'order.status', $2, $3, $4)",
            [(u, ch, f"bench:{tag}:{u}", payload) for u in users for ch in ("email", "push")],
        )
    return users


async def settled(db: asyncpg.Pool, tag: str) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT channel, count(*) AS n FROM notification_deliveries"
        " WHERE source LIKE $1 AND status = 'sent' GROUP BY channel",
        f"bench:{tag}:%",
    )
    return {r["channel"]: int(r["n"]) for r in rows}


async def throughput(settings: Settings, sinks: Sinks, count: int) -> dict[str, Any]:
    """Step 1: one notifier of its own drains ``count`` emails and ``count`` pushes."""
    import redis.asyncio as aioredis

    from services.mailer import Mailer
    from services.notifier import Notifier
    from services.notify_links import Links
    from services.presence import Presence
    from services.secrets import Keys
    from services.webpush import WebPush

    assert settings.database_url and settings.redis_url
    db = await create_pool(settings.database_url, min_size=2, max_size=20)
    redis = aioredis.Redis.from_url(settings.redis_url)
    keys = Keys(settings)
    push = WebPush(settings, db, keys)
    try:
        await push.start()
        links = Links(settings, db, keys)
        await links.start()
        presence = Presence(redis, "bench", settings.presence_ttl_s)
        notifier = Notifier(settings, db, redis, keys, presence, push, Mailer(settings), links)
        tag = uuid.uuid4().hex[:6]
        await seed(db, sinks, count, tag)
        started = time.monotonic()
        while sum((await settled(db, tag)).values()) < 2 * count:
            if not await notifier.run_once():
                await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        done = await settled(db, tag)
    finally:
        await push.close()
        await redis.aclose()
        await db.close()
    return {
        "deliveries": 2 * count,
        "seconds": elapsed,
        "emails_per_s": done.get("email", 0) / elapsed,
        "pushes_per_s": done.get("push", 0) / elapsed,
    }


async def chat_phase(
    url: str, clients: int, rooms: int, rate: float, seconds: float
) -> dict[str, Any]:
    workload = ChatWorkload(clients, rooms)
    fleet = Fleet(url, workload, FleetConfig(clients=clients, senders_fraction=0.1))
    try:
        await fleet.connect()
        return (await fleet.run_phase(rate, seconds, drain_s=8.0)).result()
    finally:
        await fleet.close()


async def chat_with_burst(
    url: str,
    settings: Settings,
    sinks: Sinks,
    clients: int,
    rate: float,
    seconds: float,
    burst: int,
) -> dict[str, Any]:
    """Step 2: the chat phase quiet, then with ``burst`` deliveries queued at its start."""
    rooms = max(1, clients // 20)
    quiet = await chat_phase(url, clients, rooms, rate, seconds)
    assert settings.database_url
    db = await create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        tag = uuid.uuid4().hex[:6]
        await seed(db, sinks, burst, tag)
        busy = await chat_phase(url, clients, rooms, rate, seconds)
        sent_during = sum((await settled(db, tag)).values())
    finally:
        await db.close()
    return {"quiet": quiet, "burst": busy, "burst_deliveries": 2 * burst, "burst_sent": sent_during}


def report(tp: dict[str, Any], chat: dict[str, Any]) -> str:
    rows = [
        ("notifier emails/s", [tp["emails_per_s"]]),
        ("notifier pushes/s", [tp["pushes_per_s"]]),
    ]
    chat_rows = [
        (name, [chat["quiet"][key], chat["burst"][key]])
        for name, key in (
            ("chat delivery p50 ms", "delivery_p50_ms"),
            ("chat delivery p99 ms", "delivery_p99_ms"),
            ("chat ack p99 ms", "ack_p99_ms"),
            ("chat loss", "loss"),
        )
    ]
    sent, queued = chat["burst_sent"], chat["burst_deliveries"]
    burst = f"burst: {sent} of {queued} deliveries sent during the burst phase"
    return "\n".join([table(rows, ["notifier"]), table(chat_rows, ["quiet", "burst"]), burst])


def bench_overrides(smtp_url: str) -> dict[str, Any]:
    """The deployment's settings for this benchmark: no rate limit in the way of the load."""
    return dict(
        port=0, smtp_url=smtp_url, push_allow_private=True,
        notify_rate_per_hour=10**6, ws_rate_per_s=1000, ws_rate_burst=1000,
        rest_rate_per_min=10**6, login_free_failures_address=100_000, argon2_time_cost=1,
        argon2_memory_kib=8192, sandbox_payments=True, recommend_retrain_s=0,
    )  # fmt: skip


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from cluster.runtime import Runtime
    from gateway.app import build_app

    sinks = Sinks()
    await sinks.start()
    root = Path(tempfile.mkdtemp(prefix="hl-bench-notify-"))
    runtime = Runtime(load_settings(data_dir=root, **bench_overrides(sinks.smtp_url)))
    try:
        settings = await asyncio.to_thread(runtime.start)
        tp = await throughput(settings, sinks, args.deliveries)
        server = TestServer(build_app(settings), host="127.0.0.1", port=0)
        await server.start_server()
        try:
            chat = await chat_with_burst(
                str(server.make_url("")), settings, sinks, args.clients, args.rate,
                args.seconds, args.burst,
            )  # fmt: skip
        finally:
            await server.close()
    finally:
        await asyncio.to_thread(runtime.stop)
        await sinks.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {"throughput": tp, "chat": chat}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deliveries", type=int, default=2000, help="users with one email + one push")
    p.add_argument("--clients", type=int, default=200, help="chat clients (rooms of 20)")
    p.add_argument("--rate", type=float, default=100.0, help="chat.send per second, offered")
    p.add_argument("--seconds", type=float, default=15.0, help="each chat phase")
    p.add_argument("--burst", type=int, default=2000, help="users given an email + push at once")
    p.add_argument("--quick", action="store_true", help="a smoke run: everything small")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.deliveries, args.clients, args.rate, args.seconds, args.burst = 100, 40, 20.0, 3.0, 200
    result = asyncio.run(run_all(args))
    print(report(result["throughput"], result["chat"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
