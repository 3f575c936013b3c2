"""The servers a fanout benchmark measures: ``raw`` (bench/raw_broadcast.py), ``ours``, ``before``.

``make_target`` prepares one as a child process on a free loopback port with its own data dir
under the run's temp root: ``raw`` is the in-process aiohttp broadcast, ``ours`` is
``hyperlocal up`` (embedded Postgres, Redis, local Ray, the gateway) with the REST and websocket
rate limits raised and a cheaper argon2id, optionally from a ``git archive`` of a commit
(``snapshot``). ``before`` is the same stack, started the same way, from a snapshot of an
earlier commit (``--baseline-rev``): the same benchmark run measures a change before and after.
``Target.stop`` sends SIGINT and reports the exit code and any Postgres or Redis left running on
the data dir; a clean stop is exit 0 with none left. In a per-core run (bench/runner.py) a target
is started with the server's CPU as its affinity (``make_target(..., cpus)``), which everything
it starts inherits.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.procs import ServerProcess, python_module
from store.embedded import EmbeddedPostgres, free_port

TARGETS = ("raw", "before", "ours")
"""Every target, in the order they are measured and reported (``before`` only with a baseline)."""
DEFAULT_TARGETS = ("raw", "ours")
STACKS = ("before", "ours")
"""The targets that run ``hyperlocal up`` (the rest is ``raw``)."""


@dataclass
class Target:
    name: str
    server: ServerProcess
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> tuple[int, list[int]]:
        """SIGINT and wait; (exit code, pids of services still running on the data dir)."""
        code = await self.server.stop()
        return code, leftovers(self.data_dir) if self.name in STACKS else []


REPO = Path(__file__).resolve().parent.parent


def rev_parse(rev: str) -> str:
    """The full sha of commit ``rev`` of this repository; ValueError if it names none."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ValueError(f"{rev!r} is not a commit of {REPO}")
    return done.stdout.strip()


def snapshot(rev: str, dest: Path) -> tuple[Path, str]:
    """Export commit ``rev`` of this repository into ``dest`` (new); (the tree, its full sha)."""
    sha = rev_parse(rev)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", sha], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest, sha


def make_target(
    name: str,
    root: Path,
    source: Path | None,
    extra_env: dict[str, str],
    cpus: frozenset[int] | None = None,
) -> Target:
    """Target ``name`` (not started), run from the tree ``source`` (None: this checkout); with
    ``cpus``, its server process starts with that affinity, and so every process it starts
    (for a stack: Postgres, Redis, Ray and its workers, more gateways) unless one resets it."""
    port = free_port()
    data_dir = root / name
    data_dir.mkdir(parents=True)
    env = dict(os.environ)
    if source is not None:  # the gateway, and Ray's shard workers, import from this tree
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    if name == "raw":
        argv = python_module("bench.raw_broadcast", "--port", str(port))
        ready = "raw broadcast on"
    else:
        for var in ("RAY_ADDRESS", "DATABASE_URL", "REDIS_URL"):
            env.pop(var, None)
        env.update(
            HL_DATA_DIR=str(data_dir),
            HL_REST_RATE_PER_MIN="100000000",  # the fleet signs up from one address
            HL_WS_RATE_PER_S="100000",  # measure fanout, not the per-socket limiter
            HL_WS_RATE_BURST="100000",
            HL_ARGON2_TIME_COST="1",  # real argon2id, cheaper: the fleet signs up many users
            HL_ARGON2_MEMORY_KIB="8192",
            HL_SANDBOX_PAYMENTS="1",  # the flash sale and checkout benches pay with test cards
            # the rankers' scheduled retraining (Ray tasks every minute until a model exists)
            # is its own workload (bench.recommend_scoring): not inside the serving figures
            HL_RECOMMEND_RETRAIN_S="0",
            HL_LOGIN_FREE_FAILURES_ADDRESS="100000",
        )
        env.update(extra_env)
        argv = python_module("cluster.cli", "--log-level", "WARNING", "up", "--port", str(port))
        ready = "hyperlocal gateway on"
    server = ServerProcess(name, argv, env, ready, data_dir / "server.log", cwd=source, cpus=cpus)
    return Target(name, server, port, data_dir)


def leftovers(data_dir: Path) -> list[int]:
    """Postgres or Redis processes still running on ``data_dir`` (there must be none)."""
    marker = str(data_dir)
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if marker in " ".join(p.info["cmdline"] or [])
    ]


def stack_dsn(data_dir: Path) -> str:
    """The DSN of the embedded Postgres running on a stack's data dir."""
    pg = EmbeddedPostgres(data_dir.resolve())
    pg.port = int((pg.pgdata / "postmaster.pid").read_text().splitlines()[3])
    return pg.url
