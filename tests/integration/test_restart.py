"""The whole stack, as `make run` starts it, stopped with Ctrl-C and started again: nothing
acknowledged is lost, and Ctrl-C leaves no server running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import psutil
import pytest

from store.embedded import free_port
from tests.integration.client import Api

pytestmark = pytest.mark.integration


class Stack:
    """`hyperlocal up` in a child process on its own data dir and port."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        env = {
            **os.environ,
            "HL_DATA_DIR": str(self.data_dir),
            "HL_SHARD_COUNT": "2",
            "HL_SHARD_NUM_CPUS": "0.1",
            "HL_RAY_NUM_CPUS": "1",
        }
        for name in ("RAY_ADDRESS", "DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        self.proc = await asyncio.to_thread(self._spawn, env)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 120)
        assert "hyperlocal gateway on" in line, (self.data_dir / "stack.log").read_text()[-3000:]

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[str]:
        with open(self.data_dir / "stack.log", "a") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "cluster.cli", "up", "--port", str(self.port)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(self.proc.wait, 90)
        return code


def _servers_on(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline and ("postgres" in cmdline or "redis-server" in cmdline):
            found.append(proc)
    return found


async def test_acknowledged_writes_survive_a_full_restart(http: aiohttp.ClientSession) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="hl-restart-"))
    stack = Stack(data_dir, free_port())
    api = Api(f"http://127.0.0.1:{stack.port}", http)
    await stack.start()
    try:
        user = await api.signup("durable")
        ws = await api.connect(user)
        await ws.ok("locate", {"lat": 48.8566, "lng": 2.3522})
        posts = [
            (await ws.mutate("post.create", {"text": f"keep {i}"}))["post"]["id"] for i in range(5)
        ]
        await ws.close()
    finally:
        assert await stack.stop() == 0
    assert _servers_on(data_dir) == [], "Ctrl-C left a server running"

    await stack.start()
    try:
        status, body = await api.post(
            "/api/v1/auth/login", {"email": user.email, "password": "correct horse battery"}
        )
        assert status == 200, body
        user.access_token = body["access_token"]
        ws = await api.connect(user)
        feed = await ws.ok("feed.get", {"lat": 48.8566, "lng": 2.3522})
        assert [p["id"] for p in feed["items"]] == list(reversed(posts))
        await ws.close()
    finally:
        assert await stack.stop() == 0
