"""Extra gateway processes for multi-gateway tests: `hyperlocal gateway` on its own port,
joined to the session's Ray, Postgres and Redis. Stopped (or killed) by the test that made it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from cluster.config import Settings, env_name
from store.embedded import free_port


def _differing_settings(settings: Settings) -> dict[str, str]:
    """Environment variables for every setting that differs from its default."""
    out: dict[str, str] = {}
    skip = {"port", "data_dir", "database_url", "redis_url", "ray_address"}
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if name in skip or value == info.default:
            continue
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, tuple):
            text = ",".join(value)
        elif isinstance(value, dict):
            text = json.dumps(value)
        else:
            text = str(value)
        out[env_name(name)] = text
    return out


class GatewayProcess:
    def __init__(
        self, settings: Settings, ray_address: str, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.ray_address = ray_address
        self.extra_env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(settings.data_dir) / f"gateway-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self) -> subprocess.Popen[bytes]:
        s = self.settings
        env = {
            **os.environ,
            **_differing_settings(s),  # the same configuration as the in-process test gateway
            "RAY_ADDRESS": self.ray_address,
            "DATABASE_URL": s.database_url or "",
            "REDIS_URL": s.redis_url or "",
            "HL_DATA_DIR": str(Path(s.data_dir).resolve()),
            **self.extra_env,
        }
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "cluster.cli", "gateway", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def start(self, http: aiohttp.ClientSession, timeout_s: float = 90) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-3000:]}")
            try:
                async with http.get(self.base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
        raise TimeoutError(f"gateway not ready: {self.log.read_text()[-3000:]}")

    async def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self.proc.wait, 30)

    async def kill(self) -> None:
        """Die like a crashed process: no goodbyes to clients, Redis or Ray."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait, 30)
