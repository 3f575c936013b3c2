"""Gateway memory per idle located websocket, against a raw aiohttp server, in one run.

An *idle located websocket* is a client that signs up, opens ``/ws`` and sends ``locate`` (so the
session follows the 7 feed streams of its k-ring, its neighbourhood room and its inbox, and is
present in its cell and room), then does nothing. For each target of ``--targets`` — ``raw``
(bench/raw_broadcast.py: the same frames, bare aiohttp) and ``ours`` (``hyperlocal up`` on a
fresh temp data dir, started exactly as the fanout benchmarks start it, bench/targets.py) — this
script, the client process, starts the server as a child and:

1. warms it with 128 located clients (closed again), so one-time allocations are not counted
   (among them the argon2id buffer each hashing thread keeps in its malloc arena);
2. **RSS**: signs ``--sockets`` users up (REST), waits until the server is quiet, reads the server
   process's RSS, then opens one websocket per user, each on a connection of its own, with its
   ``locate``, in two halves; once the server is quiet again, the RSS after minus before,
   divided by the sockets, is the memory per idle located websocket (also by kind of mapping).
   The second half alone is a check: the first may have reused memory the signups freed, the
   second cannot. What the signups left is reported apart, per user. Then all are closed;
3. **tracemalloc** (``--trace-sockets`` > 0): in the same server, signs that many more users up,
   starts tracemalloc, opens their websockets, and reports what is still allocated per socket,
   by the file:line that allocated it (the innermost frame) and by the innermost first-party
   line on the stack (what in our code caused it). Tracing costs memory itself, so it is
   measured after the RSS step, never during it. The server's part runs in a thread of the
   server process, driven through a FIFO (``--serve`` wraps the server's own entry point).

    python -m bench.socket_memory                                  # 5,000 sockets, raw and ours
    python -m bench.socket_memory --targets ours --sockets 1000 --trace-sockets 1000
    python -m bench.socket_memory --source HEAD~1 --targets ours   # a commit, from a snapshot

The server half (``--serve``) runs this file as a script and imports nothing of the project:
it may serve a snapshot's tree. The open files limit is raised to the hard limit, for this
process and the servers it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import runpy
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.targets import Target

CTL_ENV = "HL_SOCKET_MEMORY_CTL"
"""The FIFO the server's tracing thread reads commands from (set by this script)."""
REPO = Path(__file__).resolve().parent.parent


# -- the server side: a thread that starts tracemalloc and reports what is allocated --------------
def serve(argv: list[str]) -> None:
    """Run ``python -m <argv[0]> <argv[1:]>`` (the server) with the tracing thread beside it."""
    ctl = os.environ.get(CTL_ENV)
    if ctl:
        threading.Thread(target=_control, args=(ctl,), name="socket-memory", daemon=True).start()
    sys.argv = list(argv)
    sys.path[0] = os.getcwd()  # as under `python -m`, not this file's directory
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


def _control(path: str) -> None:
    """Commands, one a line: ``start <frames>``, ``report <json path>``, ``stop``."""
    census: dict[str, int] = {}
    while True:
        with open(path) as fifo:  # blocks until the client opens it to write
            for line in fifo:
                cmd, *rest = line.split()
                if cmd == "start":
                    census = _census()
                    tracemalloc.start(int(rest[0]))
                elif cmd == "report":
                    doc = _breakdown(tracemalloc.take_snapshot())
                    now = _census()
                    grown = {k: n - census.get(k, 0) for k, n in now.items()}
                    doc["objects"] = sorted(grown.items(), key=lambda kv: -kv[1])[:40]
                    _write_json(Path(rest[0]), doc)
                elif cmd == "stop":
                    tracemalloc.stop()


def _census() -> dict[str, int]:
    """Live objects the collector tracks, by type (coroutines and tasks by their function)."""
    import asyncio as aio
    import gc

    counts: dict[str, int] = defaultdict(int)
    for obj in gc.get_objects():
        kind = type(obj)
        if kind.__name__ == "coroutine":
            name = f"coroutine {getattr(obj, '__qualname__', '?')}"
        elif isinstance(obj, aio.Task):
            name = f"Task of {getattr(obj.get_coro(), '__qualname__', '?')}"
        else:
            name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
    return counts


def _first_party(filename: str) -> bool:
    return filename.startswith(str(REPO)) and "/.venv/" not in filename and filename != __file__


_STDLIB = os.path.dirname(os.__file__)
_LOOP_FRAME = os.path.join(_STDLIB, "asyncio", "events.py")
"""Where the event loop runs a callback or a task step: frames beyond it are the loop's own
(and the entry point's, ``asyncio.run``), never what caused an allocation."""


def _cause(frames: list[tracemalloc.Frame]) -> str:
    """The innermost first-party frame below the loop; else the innermost library frame."""
    library = None
    for frame in frames:  # innermost first
        if frame.filename == _LOOP_FRAME:
            break
        if _first_party(frame.filename):
            return _short(frame.filename, frame.lineno)
        if library is None and not frame.filename.startswith(_STDLIB):
            library = frame
    where = library or frames[0]
    return f"({_short(where.filename, where.lineno)})"


def _short(filename: str, lineno: int) -> str:
    for root in sorted((str(REPO), *sys.path), key=len, reverse=True):
        if root and filename.startswith(root + os.sep):
            filename = filename[len(root) + 1 :]
            break
    return f"{filename}:{lineno}"


def _breakdown(snap: tracemalloc.Snapshot) -> dict[str, Any]:
    """What is allocated now (since ``start``), by innermost frame and by first-party frame."""
    snap = snap.filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
        ]
    )
    by_line: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_ours: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    stacks: dict[tuple[str, tracemalloc.Traceback], int] = defaultdict(int)
    lines_of: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    total = [0, 0]
    for trace in snap.traces:
        frames = list(reversed(trace.traceback))  # innermost first
        inner = frames[0]
        line = _short(inner.filename, inner.lineno)
        cause = _cause(frames)
        for table_, key in ((by_line, line), (by_ours, cause)):
            table_[key][0] += trace.size
            table_[key][1] += 1
        stacks[cause, trace.traceback] += trace.size
        lines_of[cause][line][0] += trace.size
        lines_of[cause][line][1] += 1
        total[0] += trace.size
        total[1] += 1

    def top(rows: dict[str, list[int]]) -> list[tuple[str, int, int]]:
        ranked = sorted(rows.items(), key=lambda kv: kv[1][0], reverse=True)
        return [(key, size, count) for key, (size, count) in ranked[:60]]

    biggest: dict[str, tuple[int, tracemalloc.Traceback]] = {}
    for (cause, traceback), size in stacks.items():
        if size > biggest.get(cause, (0, traceback))[0]:
            biggest[cause] = (size, traceback)
    causes = top(by_ours)
    return {
        "total": total,
        "by_line": top(by_line),
        "by_first_party": causes,
        "stacks": {  # the heaviest stack of each cause, innermost frame first
            cause: [_short(f.filename, f.lineno) for f in reversed(biggest[cause][1])]
            for cause, _, _ in causes
        },
        "lines": {  # what each cause allocated, by the line that allocated
            cause: top(lines_of[cause])[:8] for cause, _, _ in causes
        },
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.rename(path)


# -- the client side ------------------------------------------------------------------------------
class Control:
    """The client's end of a server's tracing FIFO."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)

    async def send(self, line: str) -> None:
        def write() -> None:
            with open(self.path, "w") as fifo:
                fifo.write(line + "\n")

        await asyncio.wait_for(asyncio.to_thread(write), 30)

    async def report(self, out: Path, timeout_s: float = 600) -> dict[str, Any]:
        await self.send(f"report {out}")
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(out.exists):
            if time.monotonic() > deadline:
                raise RuntimeError("the server wrote no tracemalloc report")
            await asyncio.sleep(0.2)
        doc: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
        return doc


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def rss_by_kind(pid: int) -> dict[str, int]:
    """The process's resident memory (bytes) by kind of mapping (/proc/<pid>/smaps):
    ``brk heap`` (malloc's main arena), ``thread arenas`` (the heaps of malloc's per-thread
    arenas: 64 MiB-aligned, the rest of their 64 MiB reserved without access), ``other
    anonymous`` (CPython's object arenas, big blocks malloc maps on their own, threads'
    stacks), ``files`` (code, shared memory)."""
    maps: list[tuple[int, int, str, str, int]] = []  # start, end, perms, path, rss
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                low, high = (int(x, 16) for x in head[0].split("-"))
                maps.append((low, high, head[1], head[5] if len(head) > 5 else "", 0))
            elif head and head[0] == "Rss:" and maps:
                low, high, perms, path, _ = maps[-1]
                maps[-1] = (low, high, perms, path, int(head[1]) * 1024)
    kinds: dict[str, int] = defaultdict(int)
    arena = 64 << 20
    for i, (low, high, perms, path, rss) in enumerate(maps):
        after = maps[i + 1] if i + 1 < len(maps) else None
        if path == "[heap]":
            kind = "brk heap"
        elif path:
            kind = "files"
        elif perms.startswith("---"):
            continue  # reserved, never resident
        elif (
            low % arena == 0
            and after is not None
            and after[0] == high
            and after[2].startswith("---")
            and after[1] - low == arena
        ) or (low % arena == 0 and high - low == arena):
            kind = "thread arenas"
        else:
            kind = "other anonymous"
        kinds[kind] += rss
    return dict(kinds)


def tree_cpu_s(target: Target) -> float:
    """CPU seconds used so far by the server's processes (its children, and what names its
    data dir: ``pg_ctl`` detaches Postgres)."""
    import psutil

    assert target.server.proc is not None
    roots = [psutil.Process(target.server.proc.pid)]
    marker = str(target.data_dir)
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            roots.append(proc)
    seen: dict[int, float] = {}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    seen[proc.pid] = times.user + times.system
    return sum(seen.values())


async def settle(
    target: Target, pause_s: float, below_pct: float = 20.0, max_s: float = 90.0
) -> None:
    """Pause, then wait until the server's processes use < ``below_pct`` % of a core over 1 s."""
    await asyncio.sleep(pause_s)
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        used = await asyncio.to_thread(tree_cpu_s, target)
        await asyncio.sleep(1.0)
        if 100 * (await asyncio.to_thread(tree_cpu_s, target) - used) < below_pct:
            return


def say(text: str) -> None:
    print(text, flush=True)


class Idle:
    """``n`` idle located clients: signed up first (``sign_up``), then each opens ``/ws`` with
    its token, reads the ``hello`` and sends ``locate`` (``open``); from then on each only
    reads (aiohttp answers the server's pings), until ``close``. Through the client package
    (hyperlocal_client: ``Api.signup``, a ``Socket`` per client that stops decoding what it
    reads once located: an idle client's cost here is a raw one's)."""

    PASSWORD = "socket memory horse staple"
    CONCURRENCY = 64

    def __init__(self, url: str, n: int, cells: int) -> None:
        from bench.workloads import place_clients

        self.url = url
        self.spots = place_clients(n, cells)
        self.tokens: list[str] = []
        self.sockets: list[Any] = []
        self.closed = 0
        self._http: Any = None

    async def _each(self, n: int, one: Any) -> list[Any]:
        gate = asyncio.Semaphore(self.CONCURRENCY)

        async def gated(i: int) -> Any:
            async with gate:
                return await one(i)

        return list(await asyncio.gather(*(gated(i) for i in range(n))))

    async def sign_up(self) -> None:
        import aiohttp

        from hyperlocal_client import Api

        async def one(i: int) -> str:
            email = f"sm-{i}-{uuid.uuid4().hex[:8]}@bench.test"
            return (await api.signup(email, self.PASSWORD, f"sm{i}")).access_token

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            api = Api(self.url, http)
            self.tokens = await self._each(len(self.spots), one)

    async def open(self) -> None:
        """Each websocket on a connection of its own (the signups' are closed)."""
        import aiohttp

        from hyperlocal_client.ws import ENDS, Socket, open_ws

        idle = self

        class Quiet(Socket):
            """Decodes frames until located, then only reads."""

            quiet = False

            def receive(self, msg: aiohttp.WSMessage) -> bool:
                return msg.type not in ENDS if self.quiet else super().receive(msg)

            def on_closed(self) -> None:
                idle.closed += 1

        self._http = http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def one(i: int) -> Any:
            ws = await open_ws(http, self.url, self.tokens[i], heartbeat=None, max_msg_size=0)
            sock = Quiet(ws)
            self.sockets.append(sock)
            sock.start()
            await sock.wait_hello(30)
            spot = self.spots[i]
            here = await sock.request("locate", {"lat": spot.lat, "lng": spot.lng}, timeout_s=30)
            if here["cell"] != spot.cell:
                raise RuntimeError(f"located elsewhere: {here}")
            sock.quiet = True
            sock.events = asyncio.Queue()  # what came before the reply: not kept

        await self._each(len(self.spots), one)

    async def close(self) -> None:
        await asyncio.gather(*(sock.close() for sock in self.sockets), return_exceptions=True)
        if self._http is not None:
            await self._http.close()


async def measure(target: Target, args: argparse.Namespace, ctl: Control) -> dict[str, Any]:
    assert target.server.proc is not None
    pid = target.server.proc.pid
    # A warm-up first, closed again: one-time allocations (pools, caches, the first request of
    # each kind, the argon2 buffer each hashing thread keeps in its malloc arena) are not
    # counted against the sockets.
    warm = Idle(target.url, 2 * Idle.CONCURRENCY, 5)
    await warm.sign_up()
    await warm.open()
    await warm.close()
    await settle(target, args.settle)
    rss0 = rss_of(pid)
    n = args.sockets
    halves = [Idle(target.url, n // 2, args.cells), Idle(target.url, n - n // 2, args.cells)]
    started = time.perf_counter()
    for half in halves:
        await half.sign_up()
    signup_s = time.perf_counter() - started
    await settle(target, args.settle)
    rss1, kinds1 = rss_of(pid), rss_by_kind(pid)
    started = time.perf_counter()
    try:
        await halves[0].open()
        await settle(target, args.settle)
        rss_half = rss_of(pid)
        await halves[1].open()
        connect_s = time.perf_counter() - started
        await settle(target, args.settle)
        rss2, kinds2 = rss_of(pid), rss_by_kind(pid)
        still_open = sum(len(h.sockets) - h.closed for h in halves)
    finally:
        for half in halves:
            await half.close()
    result: dict[str, Any] = {
        "sockets": n,
        "open_at_measure": still_open,
        "signup_s": signup_s,
        "connect_s": connect_s,
        "rss_before_mb": rss1 / 2**20,
        "rss_after_mb": rss2 / 2**20,
        "kb_per_socket": (rss2 - rss1) / n / 1024,
        "kb_per_socket_2nd_half": (rss2 - rss_half) / (n - n // 2) / 1024,
        "kb_per_socket_by_kind": {
            kind: (kinds2.get(kind, 0) - kinds1.get(kind, 0)) / n / 1024 for kind in sorted(kinds2)
        },
        "kb_per_signup": (rss1 - rss0) / n / 1024,
    }
    say(
        f"[{target.name}] {n:,} signups in {signup_s:.1f}s ({result['kb_per_signup']:.1f} KB"
        f" each), then {n:,} idle located websockets in {connect_s:.1f}s:"
        f" RSS {result['rss_before_mb']:.0f} -> {result['rss_after_mb']:.0f} MB"
        f" = {result['kb_per_socket']:.1f} KB/socket"
        f" ({result['kb_per_socket_2nd_half']:.1f} over the second half)"
    )
    await settle(target, 0)
    if args.trace_sockets:
        result["trace"] = await trace(target, args, ctl)
    return result


async def trace(target: Target, args: argparse.Namespace, ctl: Control) -> dict[str, Any]:
    n = args.trace_sockets
    idle = Idle(target.url, n, args.cells)
    await idle.sign_up()
    await settle(target, 0)
    await ctl.send(f"start {args.trace_frames}")
    try:
        try:
            await idle.open()
            await settle(target, args.settle)
            doc = await ctl.report(target.data_dir / "tracemalloc.json")
        finally:
            await idle.close()
    finally:
        await ctl.send("stop")
    doc["sockets"] = n
    size, count = doc["total"]
    say(
        f"[{target.name}] tracemalloc over {n:,} more sockets: {size / n / 1024:.1f} KB"
        f" in {count / n:.0f} blocks per socket still allocated by Python"
    )
    await settle(target, 0)
    return doc


def trace_table(doc: dict[str, Any], key: str, title: str, top: int) -> str:
    from bench.report import table

    n = doc["sockets"]
    rows = [
        (where, [size / n, count / n, f"{100 * size / max(doc['total'][0], 1):.0f}%"])
        for where, size, count in doc[key][:top]
    ]
    return f"{title}\n" + table(rows, ["B/socket", "blocks/socket", "share"])


async def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from bench.targets import make_target, snapshot

    root = Path(tempfile.mkdtemp(prefix="hl-sockmem-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in args.targets:
            source = None
            if name == "ours" and args.source:
                source, sha = snapshot(args.source, root / "src-ours")
                say(f"[ours] runs commit {sha[:12]} ({args.source}), from {source}")
            target = make_target(name, root, source, dict(args.ours_env))
            ctl = Control(root / f"{name}.ctl")
            target.server.env[CTL_ENV] = str(ctl.path)
            # This file as a script (it imports nothing of the tree it serves, which may be a
            # snapshot), then the server's module and arguments (``python -m`` dropped).
            here = [sys.executable, __file__, "--serve"]
            target.server.argv = here + target.server.argv[2:]
            say(f"[{name}] starting on {target.url}")
            await target.server.start()
            try:
                results[name] = await measure(target, args, ctl)
            finally:
                code, left = await target.stop()
                say(f"[{name}] stopped: exit {code}, leftover services {left or 'none'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, dict[str, Any]], top: int) -> str:
    from bench.report import table

    names = list(results)
    rows: list[tuple[str, list[Any]]] = [
        (label, [results[n][key] for n in names])
        for label, key in (
            ("idle located websockets", "sockets"),
            ("still open when measured", "open_at_measure"),
            ("signup time s (not measured)", "signup_s"),
            ("server KB / signup (not in the figure)", "kb_per_signup"),
            ("websockets + locate time s", "connect_s"),
            ("server RSS before MB", "rss_before_mb"),
            ("server RSS after MB", "rss_after_mb"),
            ("server KB / socket", "kb_per_socket"),
            ("  over the second half alone", "kb_per_socket_2nd_half"),
        )
    ]
    header = list(names)
    if "ours" in results and "raw" in results:
        header.append("ours-raw")
        for values in (rows[-2][1], rows[-1][1]):
            values.append(values[names.index("ours")] - values[names.index("raw")])
    kinds = sorted({k for n in names for k in results[n]["kb_per_socket_by_kind"]})
    for kind in kinds:
        values = [results[n]["kb_per_socket_by_kind"].get(kind, 0.0) for n in names]
        rows.append((f"  of which {kind} mappings", values))
    out = [table(rows, header)]
    for name in names:
        doc = results[name].get("trace")
        if doc is None:
            continue
        n = doc["sockets"]
        out += [
            "",
            f"[{name}] tracemalloc, {n:,} sockets: {doc['total'][0] / n / 1024:.1f} KB/socket"
            f" allocated by Python (of {results[name]['kb_per_socket']:.1f} KB RSS)",
            trace_table(doc, "by_line", f"top {top} by the line that allocated:", top),
            "",
            f"objects the collector tracks, grown per socket (top {top}): "
            + ", ".join(f"{name} {count / n:.2f}" for name, count in doc["objects"][:top]),
            "",
            trace_table(
                doc,
                "by_first_party",
                f"top {top} by the first-party line on the stack (in brackets: none, the innermost"
                " library line):",
                top,
            ),
        ]
    return "\n".join(out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sockets", type=int, default=5000, help="idle located websockets for RSS")
    p.add_argument("--cells", type=int, default=50, help="home cells the clients are spread over")
    p.add_argument(
        "--trace-sockets", type=int, default=1000, help="then this many under tracemalloc (0: no)"
    )
    p.add_argument("--trace-frames", type=int, default=12, help="frames kept per allocation")
    p.add_argument("--top", type=int, default=15, help="rows of each tracemalloc table (<= 60)")
    p.add_argument("--targets", nargs="+", choices=("raw", "ours"), default=["raw", "ours"])
    p.add_argument("--settle", type=float, default=3.0, help="pause before reading RSS")
    p.add_argument("--source", metavar="REV", help="run `ours` from a snapshot of this revision")
    p.add_argument("--ours-env", metavar="KEY=VALUE", action="append", default=[])
    p.add_argument("--json", type=Path, help="also write the figures (and stacks) here")
    args = p.parse_args(argv)
    args.ours_env = dict(item.split("=", 1) for item in args.ours_env)
    if args.source:
        from bench.targets import rev_parse

        args.source = rev_parse(args.source)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(argv[1:])
        return 0
    from bench.procs import machine, raise_fd_limit
    from bench.report import fmt

    args = parse(argv)
    nofile = raise_fd_limit()
    say(f"machine: {fmt(machine())}, open files limit {nofile}")
    if nofile < 2 * max(args.sockets, args.trace_sockets) + 1000:
        say(f"warning: open files limit {nofile} may be too low for {args.sockets:,} sockets")
    results = asyncio.run(run(args))
    print()
    print(report(results, args.top))
    if args.json:
        doc = {"machine": machine(), "args": vars(args) | {"json": str(args.json)}}
        args.json.write_text(json.dumps(doc | {"results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
