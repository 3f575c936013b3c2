"""Servers under test as child processes, and what they cost (CPU and RSS over their tree).

``ServerProcess`` starts a command in its own session, waits for its ready line on stdout and
stops it with SIGINT (what Ctrl-C sends), reporting the exit code. ``TreeMeter`` samples the
process tree of a server — its descendants plus any daemon whose command line names its data
dir (``pg_ctl`` detaches Postgres from its parent) and that daemon's own children — and reports
CPU seconds and RSS per component over a measurement window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class ServerProcess:
    """A server started as ``argv`` with ``env``, ready once a stdout line contains ``ready``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: str
    log_path: Path
    cwd: Path | None = None
    proc: subprocess.Popen[str] | None = None

    async def start(self, timeout_s: float = 180.0) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(
                asyncio.to_thread(self.proc.stdout.readline), deadline - time.monotonic()
            )
            if self.ready in line:
                return
            if not line and self.proc.poll() is not None:
                break
        tail = self.log_path.read_text()[-3000:] if self.log_path.exists() else ""
        raise RuntimeError(f"{self.name} did not start (exit {self.proc.poll()}):\n{tail}")

    def _spawn(self) -> subprocess.Popen[str]:
        with open(self.log_path, "a") as log:
            return subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.cwd,
                text=True,
                start_new_session=True,
            )

    async def stop(self, timeout_s: float = 120.0) -> int:
        """SIGINT, then wait; the exit code (or -9 after a forced kill on timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)
            return -9


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def component(proc: psutil.Process) -> str:
    """Which part of the stack a process is, by its name and command line."""
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if "postgres" in name or "postgres" in cmd.split(" ")[0]:
        return "postgres"
    if "redis-server" in name or "redis-server" in cmd:
        return "redis"
    if "ray::" in cmd or "ray::" in name:
        return "ray workers"
    if "ray" in cmd and ("raylet" in cmd or "gcs_server" in cmd or "/ray/" in cmd):
        return "ray system"
    return "gateway"


@dataclass
class TreeMeter:
    """CPU and RSS of a server's process tree, sampled every ``every_s`` while running."""

    root_pid: int
    data_dir: Path | None = None
    every_s: float = 0.25
    cpu: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # pid -> comp, t0, t
    rss_samples: list[dict[str, int]] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    _task: asyncio.Task[None] | None = None
    _procs: dict[int, psutil.Process] = field(default_factory=dict)

    def tree(self) -> list[psutil.Process]:
        roots = []
        with contextlib.suppress(psutil.NoSuchProcess):
            roots.append(psutil.Process(self.root_pid))
        if self.data_dir is not None:
            marker = str(self.data_dir)
            for proc in psutil.process_iter(["cmdline"]):
                if marker in " ".join(proc.info["cmdline"] or []):
                    roots.append(proc)
        found: dict[int, psutil.Process] = {}
        for root in roots:
            with contextlib.suppress(psutil.NoSuchProcess):
                for proc in [root, *root.children(recursive=True)]:
                    found.setdefault(proc.pid, self._procs.get(proc.pid, proc))
        self._procs = found
        return list(found.values())

    def sample(self) -> None:
        rss: dict[str, int] = {}
        for proc in self.tree():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    used = times.user + times.system
                    mem = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            comp, first, _ = self.cpu.get(proc.pid, (component(proc), used, used))
            self.cpu[proc.pid] = (comp, first, used)
            rss[comp] = rss.get(comp, 0) + mem
        self.rss_samples.append(rss)

    async def __aenter__(self) -> TreeMeter:
        self.cpu.clear()
        self.rss_samples.clear()
        self.started = time.perf_counter()
        await asyncio.to_thread(self.sample)
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.sample)
        self.stopped = time.perf_counter()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await asyncio.to_thread(self.sample)

    def report(self) -> dict[str, object]:
        """CPU as % of one core over the window, RSS peak (MB), per component and in total."""
        wall = max(self.stopped - self.started, 1e-9)
        cpu: dict[str, float] = {}
        for comp, first, last in self.cpu.values():
            cpu[comp] = cpu.get(comp, 0.0) + (last - first)
        totals = [sum(s.values()) for s in self.rss_samples] or [0]
        peak = {c: max(s.get(c, 0) for s in self.rss_samples) for c in cpu}
        return {
            "cpu_s": sum(cpu.values()),
            "cpu_pct": 100 * sum(cpu.values()) / wall,
            "cpu_pct_by": {c: round(100 * v / wall) for c, v in sorted(cpu.items())},
            "rss_peak_mb": max(totals) / 2**20,
            "rss_peak_mb_by": {c: round(v / 2**20) for c, v in sorted(peak.items())},
            "processes": len(self.cpu),
        }


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import aiohttp

    load = os.getloadavg()
    return {
        "cores": str(os.cpu_count()),
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "load_avg_1_5_15": " ".join(f"{x:.2f}" for x in load),
        "mem_gb": f"{psutil.virtual_memory().total / 2**30:.1f}",
    }
