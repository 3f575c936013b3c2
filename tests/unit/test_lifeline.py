"""actors/lifeline.py: a process whose parent dies exits at once (waiting on a pidfd) or within
a few periods (polling, where pidfds are missing); nothing is started outside Ray (the parent
is no raylet) or with the period 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from actors import lifeline

_GRANDCHILD = textwrap.dedent(
    """
    import os, time
    from actors import lifeline
    if os.environ.get("NO_PIDFD"):
        del os.pidfd_open
    lifeline.watch_parent(0.05, parent=os.getppid())
    print(os.getpid(), flush=True)
    time.sleep(30)
    """
)
_CHILD = textwrap.dedent(
    f"""
    import subprocess, sys, time
    proc = subprocess.Popen([sys.executable, "-c", {_GRANDCHILD!r}], stdout=sys.stdout)
    time.sleep(30)
    """
)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # exited (a zombie until its new parent reaps it)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_a_process_whose_parent_dies_exits_soon(pidfd: bool) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    if not pidfd:
        env["NO_PIDFD"] = "1"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True, cwd=root, env=env
    )
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        time.sleep(0.2)
        assert not _gone(grandchild)  # its parent alive: it stays
        child.send_signal(signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 5
        while not _gone(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _gone(grandchild)
    finally:
        child.kill()
        child.wait()


def test_nothing_is_watched_outside_ray_or_with_period_zero() -> None:
    assert not lifeline.parent_is_raylet(os.getppid())
    assert lifeline.watch_parent(0.05) is None  # pytest's parent is no raylet
    assert lifeline.watch_parent(0, parent=os.getppid()) is None


def test_the_parent_is_watched_through_a_pidfd_where_there_is_one() -> None:
    fd = lifeline._pidfd(os.getppid())
    assert fd is not None  # Linux 5.3+ (every machine this runs on)
    os.close(fd)
    assert lifeline._pidfd(os.getpid()) is None  # not this process's parent: poll decides
