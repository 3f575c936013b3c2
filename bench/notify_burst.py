"""Notifications benchmark: the notifier's throughput, and chat fanout with and without a burst.

The deployment is ``hyperlocal up`` as a child process (bench/targets.py: embedded Postgres and
Redis, a local Ray with the shards, the control actor and the **notifier actor**
(cluster/notifier.py), the gateway), as ``make run`` starts it. Per core by default
(bench/procs.py): that whole server side on one CPU, and on the other this process: the load
generator **and the loopback SMTP server and push service**, which stand for the outside world
(a mail relay, a browser vendor's push service), so their work is not counted as the server's.
Server CPU is sampled per part (gateway, shards, notifier, Postgres, Redis, Ray) in each step.

1. **Throughput**: ``--deliveries`` users, each with one push subscription, get one email and
   one push delivery queued in the outbox (``order.status``, on by default for both channels);
   the deployment's notifier drains them (real SMTP client, RFC 8291 encryption and a VAPID
   signature per push) at its ``HL_NOTIFY_RATE_PER_S`` (``--notify-rate``; 0 for no limit,
   what the notifier can do). Reported: emails/s and pushes/s, each counted when settled
   ``sent`` in Postgres, and the server's CPU by part while it drained.
2. **Chat during a burst**: the chat workload of bench/chat_fanout.py (group rooms,
   ``chat.send`` at a fixed offered rate, every member must get each message once) against the
   gateway, measured twice in one run: quiet, then while ``--burst`` push and email deliveries
   are queued at once and the notifier drains them. Reported: delivery p50/p99, ack p99 and loss
   of both phases side by side, the server's CPU by part in each, and how much of the burst was
   sent during the phase.

Measure on a quiet box; figures from a shared machine say little.

    python -m bench.notify_burst                      # full: 2,000 deliveries, 200 chat clients
    python -m bench.notify_burst --notify-rate 0      # the notifier unpaced: its capacity
    python -m bench.notify_burst --quick              # smoke (~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
from bench.procs import TreeMeter, choose_pinning, machine, raise_fd_limit
from bench.report import table
from bench.targets import make_target, stack_dsn
from cluster.config import env_name
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


async def _drain(dsn: str, tag: str, total: int, timeout_s: float) -> tuple[dict[str, int], float]:
    """Wait until ``total`` deliveries of ``tag`` are settled ``sent`` (or ``timeout_s``);
    (sent by channel, seconds from now)."""
    db = await create_pool(dsn, min_size=1, max_size=2)
    started = time.monotonic()
    try:
        done = await settled(db, tag)
        while sum(done.values()) < total and time.monotonic() - started < timeout_s:
            await asyncio.sleep(0.05)
            done = await settled(db, tag)
    finally:
        await db.close()
    return done, time.monotonic() - started


MeterOf = Callable[[], TreeMeter] | None
"""Makes a meter of the server's process tree for one step (None: on the tests' stack)."""


@contextlib.asynccontextmanager
async def _metered(meter_of: MeterOf, into: dict[str, Any]) -> AsyncIterator[None]:
    """Sample the server's CPU by part over the block into ``into["server"]``."""
    if meter_of is None:
        yield
        return
    async with meter_of() as meter:
        yield
    into["server"] = meter.report()


async def throughput(
    dsn: str, sinks: Sinks, count: int, meter_of: MeterOf = None, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Step 1: the deployment's notifier drains ``count`` emails and ``count`` pushes."""
    db = await create_pool(dsn, min_size=1, max_size=4)
    try:
        tag = uuid.uuid4().hex[:6]
        out: dict[str, Any] = {"deliveries": 2 * count}
        async with _metered(meter_of, out):
            await seed(db, sinks, count, tag)
            done, elapsed = await _drain(dsn, tag, 2 * count, timeout_s)
    finally:
        await db.close()
    return out | {
        "seconds": elapsed,
        "sent": sum(done.values()),
        "emails_per_s": done.get("email", 0) / elapsed,
        "pushes_per_s": done.get("push", 0) / elapsed,
    }


async def _phase(
    url: str, clients: int, rate: float, seconds: float, meter_of: MeterOf,
    before: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One chat phase, the server metered from its first send (``before`` runs first)."""
    workload = ChatWorkload(clients, max(1, clients // 20))
    fleet = Fleet(url, workload, FleetConfig(clients=clients, senders_fraction=0.1))
    out: dict[str, Any] = {}
    try:
        await fleet.connect()
        async with _metered(meter_of, out):
            if before is not None:
                await before()
            result = (await fleet.run_phase(rate, seconds, drain_s=8.0)).result()
    finally:
        await fleet.close()
    return result | out


async def chat_with_burst(
    url: str,
    dsn: str,
    sinks: Sinks,
    clients: int,
    rate: float,
    seconds: float,
    burst: int,
    meter_of: MeterOf = None,
) -> dict[str, Any]:
    """Step 2: the chat phase quiet, then with ``burst`` deliveries queued at its start."""
    quiet = await _phase(url, clients, rate, seconds, meter_of)
    db = await create_pool(dsn, min_size=1, max_size=4)
    tag = uuid.uuid4().hex[:6]
    try:

        async def queue_burst() -> None:
            await seed(db, sinks, burst, tag)

        busy = await _phase(url, clients, rate, seconds, meter_of, queue_burst)
        sent_during = sum((await settled(db, tag)).values())
    finally:
        await db.close()
    return {"quiet": quiet, "burst": busy, "burst_deliveries": 2 * burst, "burst_sent": sent_during}


def _cpu(step: dict[str, Any]) -> str:
    """``91 % of a core: gateway 30, shards 20, notifier 25, ...`` (empty off a meter)."""
    server = step.get("server")
    if not server:
        return "(not metered)"
    parts = ", ".join(f"{p} {v}" for p, v in server["cpu_pct_by"].items())
    return f"{server['cpu_pct']:.0f} % of a core ({parts})"


def report(tp: dict[str, Any], chat: dict[str, Any], pinning: str = "") -> str:
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
    lines = [
        table(rows, ["notifier"]),
        f"server CPU while the notifier drained: {_cpu(tp)}",
        table(chat_rows, ["quiet", "burst"]),
        f"server CPU, quiet chat: {_cpu(chat['quiet'])}",
        f"server CPU, chat + burst: {_cpu(chat['burst'])}",
        f"burst: {sent} of {queued} deliveries sent during the burst phase",
    ]
    return "\n".join(([pinning] if pinning else []) + lines)


def bench_overrides(smtp_url: str, notify_rate_per_s: float = 100.0) -> dict[str, Any]:
    """The deployment's settings for this benchmark: the loopback receivers, no per-user
    hourly cap in the way of the load (the delivery rate limit is ``notify_rate_per_s``)."""
    return dict(
        port=0, smtp_url=smtp_url, push_allow_private=True, notify_rate_per_s=notify_rate_per_s,
        notify_rate_per_hour=10**6, ws_rate_per_s=1000, ws_rate_burst=1000,
        rest_rate_per_min=10**6, login_free_failures_address=100_000, argon2_time_cost=1,
        argon2_memory_kib=8192, sandbox_payments=True, recommend_retrain_s=0,
    )  # fmt: skip


def bench_env(overrides: dict[str, Any]) -> dict[str, str]:
    """``overrides`` as the environment of ``hyperlocal up`` (the port is its flag)."""
    return {env_name(k): str(v) for k, v in overrides.items() if k != "port"}


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    pinning, line = choose_pinning(args.cpus, args.unpinned)
    raise_fd_limit()
    sinks = Sinks()
    await sinks.start()
    root = Path(tempfile.mkdtemp(prefix="hl-bench-notify-"))
    env = bench_env(bench_overrides(sinks.smtp_url, args.notify_rate)) | dict(args.env)
    target = make_target("ours", root, None, env, pinning.server if pinning else None)
    try:
        await target.server.start()
        assert target.server.proc is not None
        pid = target.server.proc.pid

        def meter_of() -> TreeMeter:
            return TreeMeter(pid, target.data_dir, pinning)

        meter_of().pin_now()  # the whole tree on the server's CPU before anything is measured
        dsn = stack_dsn(target.data_dir)
        tp = await throughput(dsn, sinks, args.deliveries, meter_of)
        chat = await chat_with_burst(
            target.url, dsn, sinks, args.clients, args.rate, args.seconds, args.burst, meter_of
        )
    finally:
        code, left = await target.stop()
        await sinks.stop()
        shutil.rmtree(root, ignore_errors=True)
    if code != 0 or left:
        raise RuntimeError(f"the deployment did not stop cleanly (exit {code}, {left})")
    return {"throughput": tp, "chat": chat, "pinning": line, "machine": machine()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deliveries", type=int, default=2000, help="users with one email + one push")
    p.add_argument("--clients", type=int, default=200, help="chat clients (rooms of 20)")
    p.add_argument("--rate", type=float, default=100.0, help="chat.send per second, offered")
    p.add_argument("--seconds", type=float, default=15.0, help="each chat phase")
    p.add_argument("--burst", type=int, default=2000, help="users given an email + push at once")
    p.add_argument(
        "--notify-rate", type=float, default=100.0, help="HL_NOTIFY_RATE_PER_S (0: no limit)"
    )
    p.add_argument("--cpus", help="SERVER,LOADGEN CPUs (default: the first two usable)")
    p.add_argument("--unpinned", action="store_true", help="server and load generator unpinned")
    p.add_argument(
        "--env", action="append", default=[], type=lambda t: tuple(t.split("=", 1)),
        help="NAME=VALUE for the deployment (repeatable), e.g. HL_NOTIFIER_NICENESS=0",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a smoke run: everything small")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.deliveries, args.clients, args.rate, args.seconds, args.burst = 100, 40, 20.0, 3.0, 200
    result = asyncio.run(run_all(args))
    print(report(result["throughput"], result["chat"], result["pinning"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
