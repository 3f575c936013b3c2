"""Servers under test as child processes, where they run, and what they cost (CPU and RSS).

``ServerProcess`` starts a command in its own session, waits for its ready line on stdout and
stops it with SIGINT (what Ctrl-C sends), reporting the exit code. ``TreeMeter`` samples the
process tree of a server — its descendants plus any daemon whose command line names its data
dir (``pg_ctl`` detaches Postgres from its parent) and that daemon's own children — and reports
CPU seconds and RSS per component (``component``) over a measurement window.

Per-core runs (``Pinning``, the benchmarks' default on a machine with two cores or more): the
whole server side runs on one core and the load generator on another. A server is started with
that core as its affinity, which every process and thread it starts inherits; since Ray and
Postgres start processes and threads lazily (Ray workers, Postgres backends), and anything may
reset an affinity, ``TreeMeter`` sets it again on **every thread** of every process of the tree
each time it samples (``pin_process``: ``sched_setaffinity`` on a pid moves one thread), and the
load generator's own threads likewise. What it found elsewhere it reports (``off_core``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; child servers inherit it. The new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 16)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True)
class Pinning:
    """Per-core runs: every server thread on ``server``, every load-generator thread on
    ``loadgen`` (disjoint CPU sets; one CPU each by default)."""

    server: frozenset[int]
    loadgen: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Pinning:
        """``"0,1"``: the server on CPU 0, the load generator on CPU 1 (``"0-1,2-3"`` for sets)."""
        server, sep, loadgen = text.partition(",")
        if not sep:
            raise ValueError(f"--cpus wants SERVER,LOADGEN (e.g. 0,1), not {text!r}")
        pin = cls(cpu_set(server), cpu_set(loadgen))
        if pin.server & pin.loadgen:
            raise ValueError(f"--cpus {text}: the server and the load generator share a CPU")
        missing = (pin.server | pin.loadgen) - set(range(os.cpu_count() or 1))
        if missing:
            raise ValueError(f"--cpus {text}: no CPU {cpu_list(frozenset(missing))} here")
        return pin

    def spec(self) -> str:
        """The ``--cpus`` text of this pinning (what a per-target child is given)."""
        return f"{cpu_list(self.server)},{cpu_list(self.loadgen)}"

    def describe(self) -> str:
        return (
            f"pinned: every server process and thread on CPU {cpu_list(self.server)}, the load"
            f" generator on CPU {cpu_list(self.loadgen)} (per core; --unpinned for the old way)"
        )


def cpu_set(text: str) -> frozenset[int]:
    """``"0"``, ``"2-3"`` (a range; ``-`` only, so ``,`` can separate the two sets)."""
    low, _, high = text.strip().partition("-")
    return frozenset(range(int(low), int(high or low) + 1))


def cpu_list(cpus: frozenset[int]) -> str:
    ordered = sorted(cpus)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return "+".join(map(str, ordered))


def choose_pinning(spec: str | None, unpinned: bool) -> tuple[Pinning | None, str]:
    """The run's pinning (None: unpinned) and the line saying so.

    ``spec`` (``--cpus``) wins; else the first CPU this process may use hosts the server and
    the second the load generator. Fewer than two: unpinned, and the line says why.
    """
    if unpinned:
        return None, "unpinned (--unpinned): server processes and load generator share every core"
    if spec:
        pin = Pinning.parse(spec)
        return pin, pin.describe()
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None, (
            f"only {len(usable)} core usable here (CPU {cpu_list(frozenset(usable))}): running"
            " unpinned, server and load generator share it; figures are not per core"
        )
    pin = Pinning(frozenset(usable[:1]), frozenset(usable[1:2]))
    return pin, pin.describe()


def threads_of(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (empty if it is gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


@dataclass(frozen=True)
class Stray:
    """A thread found allowed off its CPUs (then set back): who, what it allowed, when."""

    pid: int
    tid: int
    part: str
    name: str
    allowed: tuple[int, ...]
    at_s: float  # since the meter's window started (< 0: before it, found at the first sample)


def pin_process(pid: int, cpus: frozenset[int]) -> tuple[int, list[tuple[int, tuple[int, ...]]]]:
    """Give every thread of ``pid`` the affinity ``cpus``; (threads seen, [(tid, what it
    allowed)] for those that were allowed elsewhere). Threads that exit meanwhile are skipped."""
    seen, moved = 0, []
    for tid in threads_of(pid):
        try:
            allowed = os.sched_getaffinity(tid)
            if allowed != cpus:
                os.sched_setaffinity(tid, cpus)
                moved.append((tid, tuple(sorted(allowed))))
            seen += 1
        except (ProcessLookupError, PermissionError):
            continue
    return seen, moved


@contextlib.contextmanager
def thread_affinity(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the block with the *calling thread's* affinity set to ``cpus`` (None: unchanged).

    A child process starts with the affinity of the thread that forked it, so a server spawned
    inside this block starts (and its every descendant, unless one resets it) on ``cpus``,
    while the rest of this process stays where it is. No ``preexec_fn`` (not safe with threads).
    """
    if cpus is None:
        yield
        return
    own = os.sched_getaffinity(0)  # 0: this thread
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def core_times() -> dict[int, tuple[float, float]]:
    """(busy, stolen) seconds of each CPU since boot, from /proc/stat: busy is user, nice,
    system, irq and softirq (whoever ran); stolen is time the hypervisor gave to someone else."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
                out[int(name[3:])] = ((user + nice + system + irq + softirq) / tick, steal / tick)
    return out


@dataclass
class ServerProcess:
    """A server started as ``argv`` with ``env``, ready once a stdout line contains ``ready``;
    with ``cpus``, started with that affinity (inherited by all it starts)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: str
    log_path: Path
    cwd: Path | None = None
    cpus: frozenset[int] | None = None
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
        with open(self.log_path, "a") as log, thread_affinity(self.cpus):
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


PARTS = ("gateway", "shards", "notifier", "ray workers", "ray system", "postgres", "redis")
"""The components ``component`` tells apart, in report order."""
LOADGEN = "load generator"
"""The part name of this process's own threads in ``TreeMeter.strays``."""
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
"""Ray's per-node agents: titled like workers (``ray::...``), but part of Ray's system."""


def component(proc: psutil.Process) -> str:
    """Which part of the stack a process is, by its name and command line (``PARTS``).

    Ray names a worker process after what it runs: ``ray::CellShard`` (``.method`` while in a
    call) hosts a shard actor (actors/shard.py), ``ray::NotifierActor`` the notifier
    (cluster/notifier.py), ``ray::IDLE`` is a pooled worker with nothing
    yet; Ray's own processes are ``gcs_server``, ``raylet``, the agents (``RAY_AGENTS``) and the
    Python monitors under ``ray/`` (dashboard, log monitor, autoscaler monitor).
    """
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    title = cmd or name
    if "postgres" in name or "postgres" in cmd.split(" ")[0]:
        return "postgres"
    if "redis-server" in name or "redis-server" in cmd:
        return "redis"
    if title.startswith(RAY_AGENTS):
        return "ray system"
    if title.startswith("ray::"):
        head = title.split(" ")[0]
        return "shards" if "Shard" in head else "notifier" if "Notifier" in head else "ray workers"
    if "ray" in cmd and ("raylet" in cmd or "gcs_server" in cmd or "/ray/" in cmd):
        return "ray system"
    return "gateway"


@dataclass
class TreeMeter:
    """CPU and RSS of a server's process tree, sampled every ``every_s`` while running; with
    ``pinning``, every thread of the tree (and of this load generator) put back on its CPUs at
    each sample (``sample``)."""

    root_pid: int
    data_dir: Path | None = None
    pinning: Pinning | None = None
    every_s: float = 0.25
    cpu: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # pid -> comp, t0, t
    rss_samples: list[dict[str, int]] = field(default_factory=list)
    pinned: dict[int, tuple[str, str, int, int]] = field(default_factory=dict)  # part, name,
    # threads, nice
    strays: list[Stray] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    cores0: dict[int, tuple[float, float]] = field(default_factory=dict)
    cores1: dict[int, tuple[float, float]] = field(default_factory=dict)
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
            if self.pinning is not None:
                self._pin(proc, comp, self.pinning.server)
        if self.pinning is not None:
            self._pin(psutil.Process(), LOADGEN, self.pinning.loadgen)
        self.rss_samples.append(rss)

    def _pin(self, proc: psutil.Process, part: str, cpus: frozenset[int]) -> None:
        threads, moved = pin_process(proc.pid, cpus)
        if not threads:
            return
        try:
            name, nice = proc.name(), proc.nice()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            name, nice = "?", 0
        self.pinned[proc.pid] = (part, name, threads, nice)
        at = time.perf_counter() - self.started if self._task is not None else -1.0
        self.strays += [Stray(proc.pid, tid, part, name, allowed, at) for tid, allowed in moved]

    def pin_now(self) -> None:
        """One pass of pinning (and sampling) outside a window: right after a server starts."""
        self.sample()

    async def __aenter__(self) -> TreeMeter:
        self.cpu.clear()
        self.rss_samples.clear()
        self.pinned.clear()
        self.strays.clear()
        self._task = None
        self.started = time.perf_counter()
        self.cores0 = core_times()
        await asyncio.to_thread(self.sample)
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.sample)
        self.stopped = time.perf_counter()
        self.cores1 = core_times()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await asyncio.to_thread(self.sample)

    def report(self) -> dict[str, Any]:
        """CPU as % of one core over the window, RSS peak (MB), per component and in total;
        each CPU's busy % (all processes on it, not only ours); with pinning, ``pinning``."""
        wall = max(self.stopped - self.started, 1e-9)
        cpu: dict[str, float] = {}
        for comp, first, last in self.cpu.values():
            cpu[comp] = cpu.get(comp, 0.0) + (last - first)
        totals = [sum(s.values()) for s in self.rss_samples] or [0]
        peak = {c: max(s.get(c, 0) for s in self.rss_samples) for c in cpu}
        out: dict[str, Any] = {
            "cpu_s": sum(cpu.values()),
            "cpu_pct": 100 * sum(cpu.values()) / wall,
            "cpu_pct_by": {c: round(100 * v / wall) for c, v in ordered(cpu).items()},
            "cpu_s_by": {c: round(v, 4) for c, v in ordered(cpu).items()},
            "rss_peak_mb": max(totals) / 2**20,
            "rss_peak_mb_by": {c: round(v / 2**20) for c, v in ordered(peak).items()},
            "processes": len(self.cpu),
            "core_busy_pct": self.per_core(0, wall),
        }
        stolen = self.per_core(1, wall)
        if any(stolen.values()):
            out["core_stolen_pct"] = stolen
        if self.pinning is not None:
            out["pinning"] = self.pinning_report()
        return out

    def per_core(self, which: int, wall: float) -> dict[int, int]:
        """Busy (``which`` 0) or stolen (1) % of each CPU over the window."""
        return {
            c: round(100 * (self.cores1[c][which] - self.cores0.get(c, (0.0, 0.0))[which]) / wall)
            for c in sorted(self.cores1)
        }

    def pinning_report(self) -> dict[str, Any]:
        """What was pinned (processes and threads by part) and what was found off its CPUs:
        ``off_core_threads`` during the window, ``repinned_at_start`` at its first sample."""
        assert self.pinning is not None
        parts: dict[str, list[int]] = {}
        nice: dict[str, set[int]] = {}
        for part, _, threads, niceness in self.pinned.values():
            if part != LOADGEN:
                parts.setdefault(part, [0, 0])
                parts[part][0] += 1
                parts[part][1] += threads
                nice.setdefault(part, set()).add(niceness)
        server = [s for s in self.strays if s.part != LOADGEN]
        during = [s for s in server if s.at_s >= 0]
        loadgen = [s for s in self.strays if s.part == LOADGEN and s.at_s >= 0]
        return {
            "server_cpus": sorted(self.pinning.server),
            "loadgen_cpus": sorted(self.pinning.loadgen),
            "processes_by": {p: parts[p][0] for p in ordered(parts)},
            "threads_by": {p: parts[p][1] for p in ordered(parts)},
            "nice_by": {p: sorted(nice[p]) for p in ordered(parts)},
            "off_core_threads": len(during),
            "repinned_at_start": len(server) - len(during),
            "loadgen_off_core_threads": len(loadgen),
            "off_core": [vars(s) for s in (during + loadgen)[:10]],
        }


def ordered(by_part: dict[str, Any]) -> dict[str, Any]:
    """``by_part`` in ``PARTS`` order (anything else after, by name)."""
    rank = {p: i for i, p in enumerate(PARTS)}
    return {p: by_part[p] for p in sorted(by_part, key=lambda p: (rank.get(p, len(PARTS)), p))}


def pinned_line(report: dict[str, Any]) -> str:
    """``N processes, M threads on CPU 0 (gateway 1/29, shards 2/50 at nice 15, ...)`` of
    ``pinning``: sharing one CPU, a part's scheduling priority (nice) matters."""
    procs, threads, nice = report["processes_by"], report["threads_by"], report["nice_by"]
    parts = ", ".join(
        f"{p} {procs[p]}/{threads[p]}"
        + (f" at nice {'/'.join(map(str, nice[p]))}" if nice[p] != [0] else "")
        for p in procs
    )
    return (
        f"{sum(procs.values())} processes, {sum(threads.values())} threads on CPU"
        f" {cpu_list(frozenset(report['server_cpus']))} (part processes/threads: {parts});"
        f" load generator on CPU {cpu_list(frozenset(report['loadgen_cpus']))}"
    )


def stray_warning(report: dict[str, Any]) -> str | None:
    """A warning line if threads were found off their CPUs during the window, else None."""
    server, loadgen = report["off_core_threads"], report["loadgen_off_core_threads"]
    if not server and not loadgen:
        return None
    who = sorted({f"{s['part']} {s['name']} (pid {s['pid']})" for s in report["off_core"]})
    return (
        f"warning: {server} server and {loadgen} load-generator thread(s) found allowed off"
        f" their CPU during the measured step, set back: {', '.join(who)}"
    )


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
