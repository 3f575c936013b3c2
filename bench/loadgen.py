"""An open-loop websocket load generator for Hyperlocal and for the raw broadcast baseline.

N clients sign up over REST, open one websocket each (``Authorization: Bearer``), both through
the typed client package (hyperlocal_client: ``Api.signup``, ``open_ws``, a ``Socket`` per
client whose per-message path this module keeps as lean as a raw client's), and run a
workload's setup (the feed workload sends ``locate``). A fraction of them are senders: one clock
fires sends at a fixed total offered rate, round-robin over the senders, whatever the replies do
(open loop: a slow server makes latency grow, never the offered rate shrink). Every sent text
carries ``lg <phase> <sender> <seq> <scheduled wall ns>``; receivers parse it from the event and
measure scheduled-send to delivery, so a loadgen that falls behind its clock inflates latency
instead of hiding it (no coordinated omission). Who must receive what is computed here, from the
workload's own geometry (for the feed: H3 grid distance <= k), not from what the server says.

One ``Fleet`` connects once and runs any number of phases (the step search reuses it); each
phase stops by itself: ``duration_s`` of sending, then at most ``drain_s`` waiting for the last
replies and deliveries. ``Fleet.sign_up`` before ``connect`` signs every client up first, so that
a measurement around ``connect`` sees only websockets (the chat benchmark's idle connections).
Each phase reports the generator's own CPU, in all and per delivery. Only loopback targets are
accepted.

Reused by bench/runner.py, the run of both fanout benchmarks, through the ``Workload`` protocol
(bench/workloads.py, with the ``Session`` a workload sees of a ``Client``).
Command line (against a server already running on this machine)::

    python -m bench.loadgen --url http://127.0.0.1:8080 --clients 200 --rate 100 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import psutil

from bench.report import result_rows, table
from bench.workloads import FeedWorkload, Workload, place_clients
from hyperlocal_client import Api
from hyperlocal_client.ws import ENDS, Socket, open_ws

T = TypeVar("T")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PASSWORD = "bench horse battery staple"


def check_loopback(url: str) -> str:
    """The base URL, refused unless it points at this machine (never load a remote host)."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"the load generator only targets loopback, not {host!r}")
    return url.rstrip("/")


# -- one phase's bookkeeping -----------------------------------------------------------------------
@dataclass
class Phase:
    """Everything measured while one offered rate ran."""

    tag: str
    rate: float
    duration_s: float
    receivers: dict[int, frozenset[int]]
    sent: int = 0
    replies: int = 0
    acked: int = 0
    expected: int = 0
    matched: int = 0
    duplicates: int = 0
    unexpected: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    ack_ms: list[float] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    by_second: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    lag_ms: list[float] = field(default_factory=list)
    stall_ms: float = 0.0
    """The longest this process's event loop was late (a 5 ms timer's lateness) while the
    phase ran: a stall here shows as every target's latency, so the report prints it."""
    seen: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    """Per receiver, the (sender, seq) pairs it got, packed in one int: many small sets, not
    one of every delivery, whose resizes (a rehash of hundreds of thousands of tuples) stalled
    this loop for 30-60 ms at the same seconds of every run and showed as the server's p99."""
    first_ns: int = 0
    last_delivery_ns: int = 0
    offering: bool = True
    done: asyncio.Event = field(default_factory=asyncio.Event)
    wall_s: float = 0.0
    loadgen_cpu_s: float = 0.0

    def on_reply(self, sender: int, scheduled_ns: int, frame: dict[str, Any]) -> None:
        self.replies += 1
        self.ack_ms.append((time.time_ns() - scheduled_ns) / 1e6)
        if frame.get("ok"):
            self.acked += 1
            self.expected += len(self.receivers[sender])
        else:
            self.errors[str(frame.get("error", {}).get("code", "error"))] += 1
        self.check()

    def on_delivery(self, receiver: int, sender: int, seq: int, scheduled_ns: int) -> None:
        now = time.time_ns()
        seen = self.seen[receiver]
        key = (sender << 32) | seq
        if key in seen:
            self.duplicates += 1
            return
        seen.add(key)
        if receiver not in self.receivers.get(sender, ()):
            self.unexpected += 1
            return
        self.matched += 1
        self.last_delivery_ns = now
        latency_ms = (now - scheduled_ns) / 1e6
        self.delivery_ms.append(latency_ms)
        self.by_second[(scheduled_ns - self.first_ns) // 1_000_000_000].append(latency_ms)
        self.check()

    def check(self) -> None:
        """Signal ``done`` once sending is over and every reply and delivery is in."""
        if not self.offering and self.replies == self.sent and self.matched >= self.expected:
            self.done.set()

    def result(self) -> dict[str, Any]:
        """The phase's figures (latencies in ms, rates per second)."""
        span_s = max((self.last_delivery_ns - self.first_ns) / 1e9, self.duration_s, 1e-9)
        return {
            "tag": self.tag,
            "offered_per_s": self.rate,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "acked": self.acked,
            "errors": dict(self.errors),
            "no_reply": self.sent - self.replies,
            "expected": self.expected,
            "delivered": self.matched,
            "loss": self.expected - self.matched,
            "duplicates": self.duplicates,
            "unexpected": self.unexpected,
            "fanout": self.expected / self.acked if self.acked else 0.0,
            "delivered_per_s": self.matched / span_s,
            "acked_per_s": self.acked / span_s,
            "delivery_p50_ms": percentile(self.delivery_ms, 50),
            "delivery_p95_ms": percentile(self.delivery_ms, 95),
            "delivery_p99_ms": percentile(self.delivery_ms, 99),
            "delivery_max_ms": max(self.delivery_ms, default=float("nan")),
            "ack_p50_ms": percentile(self.ack_ms, 50),
            "ack_p99_ms": percentile(self.ack_ms, 99),
            "send_lag_p99_ms": percentile(self.lag_ms, 99),
            "loadgen_stall_max_ms": self.stall_ms,
            "loadgen_cpu_pct": 100 * self.loadgen_cpu_s / max(self.wall_s, 1e-9),
            "loadgen_us_per_delivery": (
                1e6 * self.loadgen_cpu_s / self.matched if self.matched else float("nan")
            ),
            "delivery_p99_ms_by_second": [
                round(percentile(self.by_second[s], 99), 1) for s in sorted(self.by_second)
            ],
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct * len(ordered) / 100 - 1e-9)))
    return ordered[rank - 1]


# -- one client ------------------------------------------------------------------------------------
class Client(Socket):
    """One websocket session of the fleet: a hyperlocal_client ``Socket`` (its setup requests,
    the ``hello``, the close are the package's) whose hot path is this class's own, as lean as
    a hand-written client: ``send`` encodes its frame once and writes it on the raw socket,
    ``receive`` (the reader's one call per message) routes a send's reply and the workload's
    events to the running phase, drops other events unqueued and hands setup replies and the
    ``hello`` to the package."""

    def __init__(self, fleet: Fleet, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__(ws)
        self.fleet = fleet
        self.index = index
        self.sends: dict[int, tuple[Phase, int, int]] = {}  # request id -> (phase, seq, sched ns)
        self.user_id = ""  # from the server's hello frame

    async def send(self, phase: Phase, seq: int, scheduled_ns: int) -> None:
        ident = next(self.ids)
        text = f"lg {phase.tag} {self.index} {seq} {scheduled_ns}"
        workload = self.fleet.workload
        frame = {
            "id": ident,
            "op": workload.op,
            "key": uuid.uuid4().hex,
            "data": workload.payload(self, text),
        }
        self.sends[ident] = (phase, seq, scheduled_ns)
        phase.sent += 1
        await self.ws.send_str(json.dumps(frame))  # the raw fast path: no per-send future

    def receive(self, msg: aiohttp.WSMessage) -> bool:
        if msg.type != aiohttp.WSMsgType.TEXT:
            return msg.type not in ENDS
        frame = json.loads(msg.data)
        if "re" in frame:
            sent = self.sends.pop(frame["re"], None)
            if sent is None:
                self.resolve(frame)  # a setup request's reply
                return True
            phase, _, scheduled_ns = sent
            phase.on_reply(self.index, scheduled_ns, frame)
            return True
        ev = frame.get("ev")
        if ev != self.fleet.workload.event:
            if ev == "hello":
                self.dispatch(frame)  # wait_hello reads it
            return True
        text = self.fleet.workload.text_of(frame)
        current = self.fleet.phase
        if not text or current is None:
            return True
        parts = text.split()
        if len(parts) == 5 and parts[0] == "lg" and parts[1] == current.tag:
            current.on_delivery(self.index, int(parts[2]), int(parts[3]), int(parts[4]))
        return True

    def on_closed(self) -> None:
        self.fleet.on_closed(self)


# -- the fleet -------------------------------------------------------------------------------------
@dataclass
class FleetConfig:
    clients: int = 200
    senders_fraction: float = 0.1
    connect_concurrency: int = 32
    seed: int = 7


class Fleet:
    """All clients of one target: connect once, run phases, close."""

    def __init__(self, base_url: str, workload: Workload, config: FleetConfig) -> None:
        self.base = check_loopback(base_url)
        self.workload = workload
        self.config = config
        self.clients: list[Client] = []
        self.senders: list[Client] = []
        self.phase: Phase | None = None
        self.closed_during_phase = 0
        self.join_ms: dict[str, list[float]] = defaultdict(list)  # signup, connect, setup
        self._http: aiohttp.ClientSession | None = None
        self._tokens: dict[int, str] = {}  # client index -> access token, from ``sign_up``
        self._closing = False

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._http

    async def _each(self, join: Callable[[int], Awaitable[T]]) -> list[T]:
        """``join(i)`` for every client, ``connect_concurrency`` at a time, in index order."""
        gate = asyncio.Semaphore(self.config.connect_concurrency)

        async def one(index: int) -> T:
            async with gate:
                return await join(index)

        return list(await asyncio.gather(*(one(i) for i in range(self.config.clients))))

    async def sign_up(self) -> None:
        """Sign every client up now (REST), so that ``connect`` only opens websockets and runs
        the workload's setup: what a signup costs the server (an argon2id hash, whose buffer
        malloc keeps in the hashing thread's arena) stays out of what is measured around
        ``connect`` (bench/chat_fanout.py's idle connections)."""
        tokens = await self._each(self._signup)
        self._tokens = dict(enumerate(tokens))

    async def connect(self) -> None:
        self.clients = await self._each(self._join)
        count = max(1, round(self.config.clients * self.config.senders_fraction))
        picks = random.Random(self.config.seed).sample(range(len(self.clients)), count)
        self.senders = [self.clients[i] for i in sorted(picks)]
        prepare = getattr(self.workload, "prepare", None)
        if prepare is not None:
            t0 = time.perf_counter()
            await prepare(self.clients)
            self.join_ms["prepare"].append(1000 * (time.perf_counter() - t0))

    async def _signup(self, index: int) -> str:
        """A new user for client ``index``; its access token."""
        t0 = time.perf_counter()
        email = f"lg-{index}-{uuid.uuid4().hex[:8]}@bench.test"
        user = await Api(self.base, self._session()).signup(email, PASSWORD, f"lg{index}")
        self.join_ms["signup"].append(1000 * (time.perf_counter() - t0))
        return user.access_token

    async def _join(self, index: int) -> Client:
        token = self._tokens.pop(index, None) or await self._signup(index)
        t1 = time.perf_counter()
        ws = await open_ws(self._session(), self.base, token, heartbeat=None, max_msg_size=0)
        client = Client(self, index, ws)
        client.start()
        hello = await client.wait_hello(30)
        t2 = time.perf_counter()
        client.user_id = str(hello.get("user_id", ""))
        await self.workload.setup(client)
        self.join_ms["connect"].append(1000 * (t2 - t1))
        self.join_ms["setup"].append(1000 * (time.perf_counter() - t2))
        return client

    def join_report(self) -> dict[str, float]:
        """p50/p99 of each joining step (ms): REST signup, websocket+hello, workload setup."""
        out = {}
        for step, values in self.join_ms.items():
            out[f"{step}_p50_ms"] = percentile(values, 50)
            out[f"{step}_p99_ms"] = percentile(values, 99)
        return out

    def on_closed(self, client: Client) -> None:
        if not self._closing and self.phase is not None:
            self.closed_during_phase += 1
            self.phase.errors[f"closed:{client.close_code}"] += 1

    async def run_phase(self, rate: float, duration_s: float, drain_s: float = 10.0) -> Phase:
        """Offer ``rate`` sends/s for ``duration_s``, then drain; the phase's measurements."""
        receivers = {c.index: frozenset(self.workload.receivers(c.index)) for c in self.senders}
        phase = Phase(uuid.uuid4().hex[:8], rate, duration_s, receivers)
        self.phase = phase
        me = psutil.Process()
        cpu0 = sum(me.cpu_times()[:2])
        t0 = time.perf_counter()
        phase.first_ns = time.time_ns()
        stalls = LoopStalls()
        watch = asyncio.create_task(stalls.watch())
        try:
            await self._offer(phase)
            phase.offering = False
            phase.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(phase.done.wait(), drain_s)
        finally:
            watch.cancel()
            phase.stall_ms = 1000 * stalls.worst_s
        phase.wall_s = time.perf_counter() - t0
        phase.loadgen_cpu_s = sum(me.cpu_times()[:2]) - cpu0
        self.phase = None
        for client in self.senders:  # forget replies that never came; they count as no_reply
            client.sends.clear()
        return phase

    async def _offer(self, phase: Phase) -> None:
        """The open-loop clock: send number i is due at start + i/rate, whatever came back."""
        total = max(1, int(phase.rate * phase.duration_s))
        interval_ns = int(1e9 / phase.rate)
        start_perf = time.perf_counter_ns()
        start_wall = phase.first_ns
        senders = self.senders
        for i in range(total):
            due = i * interval_ns
            wait_ns = due - (time.perf_counter_ns() - start_perf)
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            phase.lag_ms.append(max(0, (time.perf_counter_ns() - start_perf) - due) / 1e6)
            client = senders[i % len(senders)]
            if client.close_code is None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await client.send(phase, i // len(senders), start_wall + due)

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        if self._http is not None:
            await self._http.close()


class LoopStalls:
    """The longest lateness of a ``tick_s`` timer on this event loop while ``watch`` runs (in
    ``worst_s``; ``reset`` starts over): how long the loop was held at once."""

    def __init__(self, tick_s: float = 0.005) -> None:
        self.tick_s = tick_s
        self.worst_s = 0.0

    def reset(self) -> None:
        self.worst_s = 0.0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.tick_s)
            self.worst_s = max(self.worst_s, loop.time() - started - self.tick_s)


# -- command line ----------------------------------------------------------------------------------
async def run(
    url: str,
    *,
    clients: int,
    cells: int,
    senders_fraction: float,
    rate: float,
    duration_s: float,
    drain_s: float = 10.0,
    spread: str = "ring",
    k_ring: int = 1,
) -> dict[str, Any]:
    """Connect a feed fleet to ``url``, run one phase, close; the phase's figures."""
    workload = FeedWorkload(place_clients(clients, cells, k_ring=k_ring, spread=spread), k_ring)
    fleet = Fleet(url, workload, FleetConfig(clients=clients, senders_fraction=senders_fraction))
    try:
        await fleet.connect()
        return (await fleet.run_phase(rate, duration_s, drain_s)).result()
    finally:
        await fleet.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--cells", type=int, default=10)
    p.add_argument("--senders-fraction", type=float, default=0.1)
    p.add_argument("--rate", type=float, default=100.0, help="offered sends per second")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--drain", type=float, default=10.0)
    p.add_argument("--spread", choices=("ring", "cell"), default="ring")
    args = p.parse_args(argv)
    result = asyncio.run(
        run(
            args.url,
            clients=args.clients,
            cells=args.cells,
            senders_fraction=args.senders_fraction,
            rate=args.rate,
            duration_s=args.duration,
            drain_s=args.drain,
            spread=args.spread,
        )
    )
    print(table(result_rows(result), [args.url]))
    return 0 if result["loss"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
