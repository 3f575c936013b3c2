"""The `hyperlocal` command: up, gateway, migrate, shards, config, admin, keys, recommend,
cluster, scale, cells.

`hyperlocal up` is what `make run` calls: it starts embedded Postgres and Redis (unless
DATABASE_URL / REDIS_URL are set), migrates, starts or joins Ray (RAY_ADDRESS), the shard actors,
and serves the gateway (``--gateways N``: N gateway processes on consecutive ports) until
Ctrl-C, then stops everything it started, in reverse order. `hyperlocal gateway` is one more
gateway process joining a running deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any

import uvloop
from aiohttp import web

from cluster import gcpolicy
from cluster.config import Settings, load_settings
from cluster.logs import setup_logging
from cluster.runtime import Runtime

log = logging.getLogger("hyperlocal.cli")


def run_loop(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run a gateway's main coroutine on the event loop ``settings.event_loop`` names."""
    factory = uvloop.new_event_loop if settings.event_loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


async def serve(settings: Settings, ready_line: bool = True) -> None:
    """Serve the gateway on settings.host:port until SIGINT/SIGTERM."""
    from gateway.app import build_app

    runner = web.AppRunner(build_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    gcpolicy.settle(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready_line:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        print(
            f"hyperlocal gateway on http://{settings.host}:{settings.port}  (Ctrl-C stops)\n"
            f"open the web app: http://{host}:{settings.port}/",
            flush=True,
        )
    await stop.wait()
    log.info("stopping gateway")
    await runner.cleanup()


def cmd_up(args: argparse.Namespace) -> int:
    if args.gateways < 1:
        print("--gateways must be at least 1", file=sys.stderr)
        return 2
    runtime = Runtime(load_settings(port=args.port))
    extra: list[subprocess.Popen[bytes]] = []
    try:
        settings = runtime.start()
        extra = [
            spawn_gateway(settings, runtime.ray_address(), settings.port + i)
            for i in range(1, args.gateways)
        ]
        from cluster.analytics_jobs import with_rollups  # the scheduled analytics rollup
        from cluster.trainer import with_retrain  # the scheduled retrain, beside this gateway

        run_loop(settings, with_retrain(settings, with_rollups(settings, serve(settings))))
    finally:
        stop_gateways(extra)
        runtime.stop()
    return 0


def spawn_gateway(settings: Settings, ray_address: str, port: int) -> subprocess.Popen[bytes]:
    """Another gateway process on ``port`` over the same Ray, Postgres and Redis."""
    env = {
        **os.environ,
        "RAY_ADDRESS": ray_address,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "HL_DATA_DIR": str(settings.data_dir.resolve()),  # the shared JWT key lives there
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "gateway", "--port", str(port)], env=env
    )
    log.info("started gateway pid %d on port %d", proc.pid, port)
    return proc


def stop_gateways(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            log.warning("gateway pid %d did not stop in 30 s, killing it", proc.pid)
            proc.kill()
            proc.wait()


def cmd_gateway(args: argparse.Namespace) -> int:
    """One more gateway joining a running deployment (RAY_ADDRESS, DATABASE_URL, REDIS_URL)."""
    import ray

    settings = load_settings(port=args.port)
    missing = [
        name
        for name, value in (
            ("RAY_ADDRESS", settings.ray_address),
            ("DATABASE_URL", settings.database_url),
            ("REDIS_URL", settings.redis_url),
        )
        if not value
    ]
    if missing:
        print(
            f"hyperlocal gateway joins a running deployment: set {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    ray.init(address=settings.ray_address, namespace=settings.ray_namespace, log_to_driver=False)
    try:
        run_loop(settings, serve(settings))
    finally:
        ray.shutdown()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    runtime = Runtime(load_settings())
    try:
        runtime.start_services()
    finally:
        runtime.stop()
    print("migrations up to date")
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    """Print each shard's stats (needs a running cluster: RAY_ADDRESS)."""
    import ray

    settings = load_settings()
    if not settings.ray_address:
        print("set RAY_ADDRESS to the running cluster", file=sys.stderr)
        return 2
    ray.init(address=settings.ray_address, namespace=settings.ray_namespace, log_to_driver=False)
    for name in settings.shard_names():
        with contextlib.suppress(ValueError):
            handle = ray.get_actor(name, namespace=settings.ray_namespace)
            print(json.dumps(ray.get(handle.stats.remote(), timeout=10)))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print every setting: the markdown table of docs/config.md, or the current values."""
    from cluster.config import config_markdown, env_name

    if args.markdown:
        print(config_markdown(), end="")
        return 0
    settings = load_settings()
    for name, value in settings.model_dump().items():
        secret = any(word in name for word in ("secret", "key", "password", "_url"))
        print(f"{env_name(name)}={'(set)' if secret and value else value}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hyperlocal", description=__doc__.splitlines()[0])
    top.add_argument("--log-level", default="INFO")
    sub = top.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything and serve the gateway (make run)")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--gateways", type=int, default=1)
    up.set_defaults(func=cmd_up)
    gateway = sub.add_parser("gateway", help="serve one more gateway of a running deployment")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.set_defaults(func=cmd_gateway)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("shards", help="print shard stats").set_defaults(func=cmd_shards)
    config = sub.add_parser("config", help="print the settings in effect (or --markdown docs)")
    config.add_argument("--markdown", action="store_true", help="the docs/config.md table")
    config.set_defaults(func=cmd_config)
    from cluster.admin_cli import register as register_admin
    from cluster.analytics_jobs import register as register_analytics
    from cluster.keys_cli import register as register_keys
    from cluster.ops_cli import register as register_ops

    register_admin(sub)
    register_analytics(sub)
    register_keys(sub)
    register_ops(sub)
    try:
        from cluster.recommend_eval import register
    except ImportError:  # pragma: no cover - recommendation extras not installed
        pass
    else:
        register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.log_level)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
