"""A shard process that outlives its raylet exits at once.

Ray starts every worker process as a child of its node's raylet. When the raylet dies (its
node removed, the raylet crashed or was OOM-killed), the worker notices only after a second or
so and meanwhile still listens on its direct channel: the failover watcher's pings are
answered by a process that can no longer be restarted, reached by its node's scheduler, or
trusted to stay (docs/operations.md "Node failure and failover"). The lifeline is a daemon
thread that waits on a pidfd of the parent (Linux 5.3+: readable once that process has exited)
and never wakes before; where pidfds are missing it reads the parent's pid every ``period_s``
instead. Once the parent is gone, it exits with status 1, so the kernel resets its connections
and the watcher fails its cells over at once, as for a SIGKILL of the shard itself. (Polling
woke the thread 20 times a second in every shard, each time taking the GIL from the event loop;
the pidfd also sees the parent go at once rather than within a period.)

A worker whose parent is not a raylet (a test calling this outside Ray) is left alone.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path


def parent_is_raylet(ppid: int) -> bool:
    """Is process ``ppid`` a raylet (what Ray's workers are children of)?"""
    try:
        return Path(f"/proc/{ppid}/comm").read_text().strip() == "raylet"
    except OSError:
        return False


def watch_parent(
    period_s: float,
    on_orphaned: Callable[[], None] | None = None,
    parent: int | None = None,
) -> threading.Thread | None:
    """Start the lifeline: ``on_orphaned`` (default: exit the process at once) runs when this
    process's parent (``parent``: its pid as known, default ``os.getppid()`` if that is a
    raylet) is gone, i.e. the process was re-parented. None (no
    thread) when the period is 0 or the parent is not a raylet."""
    ppid = os.getppid() if parent is None else parent
    if period_s <= 0 or (parent is None and not parent_is_raylet(ppid)):
        return None
    act = on_orphaned or _exit_now
    pidfd = _pidfd(ppid)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the parent has exited, not before
        else:
            while os.getppid() == ppid:  # until re-parented: the raylet is gone
                time.sleep(period_s)
        act()

    thread = threading.Thread(target=watch, name="hl-lifeline", daemon=True)
    thread.start()
    return thread


def _pidfd(pid: int) -> int | None:
    """A pidfd of ``pid``, this process's parent, or None (then the lifeline polls): where this
    kernel or Python has no pidfds, or the parent is already gone (the open fails, or it
    succeeds on a reused pid while this process has been re-parented; the poll's first look
    sees either)."""
    open_pidfd = getattr(os, "pidfd_open", None)
    if open_pidfd is None:
        return None
    try:
        fd = int(open_pidfd(pid))
    except OSError:
        return None
    if os.getppid() != pid:  # it died between the caller's look and the open: poll decides
        os.close(fd)
        return None
    return fd


def _exit_now() -> None:
    # straight to the descriptor and out: no logging handler (Ray's may block) in the way
    os.write(2, b"hyperlocal.lifeline: the raylet is gone: this shard process exits\n")
    os._exit(1)
