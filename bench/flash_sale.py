"""Flash-sale benchmark: a neighbourhood racing for hot listings, ours vs one SQL transaction.

**The sale.** ``--vendors`` vendors (40) over the 37 cells of a radius-3 H3 disk around a centre
(Paris), each with ``--listings`` ordinary listings (10) of generous stock (``--stock``), and,
fresh for every step, ``--hot`` hot listings (10, on 10 vendors spread over the disk) of
``--hot-stock`` units (50) each. ``--buyers`` buyers (2,000), each on its own real websocket,
``locate`` at the centre of their vendor's cell or of one of its k-ring neighbours (buyer ``i``
belongs to vendor ``i mod vendors``), so they follow that neighbourhood's feed streams as a real
client does and receive its ``listing.updated`` events (as the stack publishes them: since
27d2e3e at most one per listing per ``HL_LISTING_UPDATE_MS``; since this commit the neighbourhood
hears of a sale only when a listing sells out or comes back). ``--watchers`` buyers (200) keep
the sale's page open: each follows the ``listing:<id>`` stream of every hot listing of the step,
its live stock.
A checkout is 1-3 distinct lines (each hot with probability ``--hot-share``, 0.5, qty 1-2), put in
the cart with ``cart.add`` one at a time (each awaited, as a client does), then ``checkout`` with
the sandbox card. Demand exceeds the hot stock on purpose: they sell out, then answer
``out_of_stock``; a buyer whose checkout failed then empties its cart with ``cart.remove`` (not
timed; the buyer is busy meanwhile), as the cart outlives a failed checkout.

**Open loop.** For each rate of ``--rates`` (checkouts/s), one step of ``--step-seconds``: checkout
``i`` is due at ``start + i/rate`` whatever came back, on an idle buyer (a buyer does one checkout
at a time; none idle is an error). The plan (which lines, which quantities) is seeded, the same
for both targets. **Latency** is measured from the checkout's scheduled start: ``total`` includes
the ``cart.add`` round trips (the pass criterion), ``checkout`` is the ``checkout`` request alone,
``cart`` the scheduled start to the ``checkout`` send. A step **passes** with total p99 <= 250 ms,
every checkout answered and no error other than ``out_of_stock``. Per step: orders/s completed
(orders of ok checkouts over the step, one order per vendor of a checkout), outcomes, events/s
received by the buyers, server CPU by part (bench/procs.py ``TreeMeter``), each core's busy %.

**Baseline, same run** (bench/flash_baseline.py): the same checkouts as one plain asyncpg
transaction each, behind a small aiohttp HTTP endpoint: per line ``UPDATE ... SET stock = stock
- qty WHERE id = ... AND stock >= qty`` (all or nothing: a line short is ``out_of_stock``), then
the order rows, committed; in its own schema of the **same** embedded Postgres (fsync on) as
``ours``, its own fresh stock, the same plan and the same open-loop clock, one HTTP request per
checkout (no websockets, no carts, no auth, no idempotency, no payment rows, no events).

**Oversell**, from Postgres after the sweep, for both: per listing, units sold in paid (or later)
orders beyond its initial stock, plus any mismatch ``initial - remaining != sold``. Must be 0.

**Where it runs.** One ``hyperlocal up`` (bench/targets.py, from ``--source REV`` if given: a git
snapshot) on a fresh temp data dir; the baseline server against its Postgres. Per core (two CPUs
or more, unless ``--unpinned``): every process and thread of the server side (the whole stack:
gateway, Ray, shards, Postgres, Redis; and the baseline's server) on CPU 0, set at start and
again on every thread every 0.25 s while measuring; the load generators on CPU 1. Each target is
driven by a fresh load-generator process (this module, ``--part``): the baseline first (the
stack idle beside it: its idle CPU is reported), then ours.

    python -m bench.flash_sale --source HEAD --json flash.json   # the sweep (~6 min)
    python -m bench.flash_sale --quick                           # smoke run (~1 min)
    python -m bench.flash_sale --quick --buyers 100 --vendors 10 --rates 10,20 --step-seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import asyncpg
import h3
import psutil

from bench import flash_baseline
from bench.loadgen import percentile
from bench.procs import ServerProcess, TreeMeter, machine, python_module
from bench.report import fmt, table
from bench.targets import REPO, Target, make_target, rev_parse, snapshot, stack_dsn
from cluster import gcpolicy
from cluster.config import Settings, load_settings
from hyperlocal_client import Api, SignIn
from hyperlocal_client.ws import open_ws
from store.db import one
from store.embedded import free_port

T = TypeVar("T")
BASE = (48.8566, 2.3522)  # Paris, as bench/checkout.py
CARD = {"provider": "sandbox", "card": "4242424242424242"}
P99_LIMIT_MS = 250.0
PASSWORD = "bench flash sale password"
SOLD = ("paid", "accepted", "fulfilled", "completed")
WORDS = ["bread", "cheese", "fresh", "organic", "honey", "wine", "coffee", "flowers"]
DATA_DIR_ENV = "HL_FLASH_STACK_DATA_DIR"
"""How a part learns the stack's data dir (never on its command line: see measure_in_child)."""
TARGETS = ("baseline", "ours")
"""Measured in this order, each by its own load-generator process."""


def say(text: str) -> None:
    print(text, flush=True)


# -- where everything runs -------------------------------------------------------------------------
def threads_of(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def pin_threads(pid: int, cpus: frozenset[int]) -> tuple[int, int]:
    """Every thread of ``pid`` allowed only ``cpus``; (threads, threads that were not)."""
    seen = moved = 0
    for tid in threads_of(pid):
        try:
            if os.sched_getaffinity(tid) != cpus:
                os.sched_setaffinity(tid, cpus)
                moved += 1
            seen += 1
        except (ProcessLookupError, PermissionError, OSError):
            continue
    return seen, moved


def pinned_argv(cpus: frozenset[int] | None, argv: list[str]) -> list[str]:
    """``argv`` started with affinity ``cpus`` (inherited by all it starts); unchanged if None."""
    if cpus is None:
        return argv
    code = "import os, sys; os.sched_setaffinity(0, {%s}); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", code % ",".join(map(str, sorted(cpus))), *argv]


def choose_cpus(args: argparse.Namespace) -> tuple[frozenset[int], frozenset[int]] | None:
    """(server CPUs, load generator CPUs), or None (unpinned: fewer than two CPUs, --unpinned)."""
    if args.unpinned:
        return None
    usable = sorted(os.sched_getaffinity(0))
    if args.cpus:
        server, _, loadgen = args.cpus.partition(",")
        return frozenset({int(server)}), frozenset({int(loadgen)})
    if len(usable) < 2:
        return None
    return frozenset(usable[:1]), frozenset(usable[1:2])


def core_times() -> dict[int, float]:
    """Busy seconds of each CPU since boot (user, nice, system, irq, softirq), /proc/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
                out[int(name[3:])] = (user + nice + system + irq + softirq) / tick
    return out


@dataclass
class Pinner:
    """Keeps every thread of every process the ``meters`` see on ``cpus`` (every ``every_s``),
    and this process on ``own``; counts threads found elsewhere."""

    meters: list[TreeMeter]
    cpus: frozenset[int] | None
    own: frozenset[int] | None
    every_s: float = 0.25
    moved: int = 0
    threads: int = 0
    processes: int = 0
    _task: asyncio.Task[None] | None = None

    def pass_once(self, full: bool = False) -> int:
        """One pass; ``full``: over each meter's whole tree now (else the pids it sampled)."""
        if self.cpus is None:
            return 0
        moved = threads = procs = 0
        for meter in self.meters:
            pids = [p.pid for p in meter.tree()] if full else list(meter.cpu)
            for pid in pids:
                if pid == os.getpid():
                    continue  # never this load generator, whatever matched
                seen, off = pin_threads(pid, self.cpus)
                threads, moved, procs = threads + seen, moved + off, procs + (seen > 0)
        if self.own is not None:
            pin_threads(os.getpid(), self.own)
        self.threads, self.processes = threads, procs
        return moved

    async def __aenter__(self) -> Pinner:
        self.moved = 0
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self.moved += await asyncio.to_thread(self.pass_once)


# -- the sale: who, where, what --------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """A listing to create."""

    vendor: int
    title: str
    description: str
    category: str
    price: int
    stock: int


@dataclass(frozen=True)
class Catalog:
    vendor_cells: list[str]
    ordinary: list[Item]
    hot: list[list[Item]]  # per step
    buyer_cells: list[str]


Line = tuple[str, int, int]  # ("hot" | "ordinary", index, qty)


def region(settings: Settings, radius: int = 3) -> list[str]:
    center = h3.latlng_to_cell(BASE[0], BASE[1], settings.h3_resolution)
    return sorted(h3.grid_disk(center, radius))


def catalog(args: argparse.Namespace, settings: Settings) -> Catalog:
    rand = random.Random(args.seed)
    cells = region(settings)
    vendor_cells = [cells[v % len(cells)] for v in range(args.vendors)]

    def item(vendor: int, name: str, stock: int) -> Item:
        words = " ".join(rand.sample(WORDS, 2))
        category = rand.choice(["bread", "cheese", "drinks"])
        price = rand.randrange(100, 2000)
        return Item(vendor, f"{words} {name}", f"{words} from vendor {vendor}", category, price,
                    stock)  # fmt: skip

    ordinary = [
        item(v, f"#{i}", args.stock) for v in range(args.vendors) for i in range(args.listings)
    ]
    hot_vendors = [h * args.vendors // args.hot for h in range(args.hot)]
    hot = [
        [item(hot_vendors[h], f"flash {s}.{h}", args.hot_stock) for h in range(args.hot)]
        for s in range(len(args.rates))
    ]
    buyer_cells = []
    for b in range(args.buyers):
        near = sorted(h3.grid_disk(vendor_cells[b % args.vendors], settings.k_ring))
        buyer_cells.append(rand.choice(near))
    return Catalog(vendor_cells, ordinary, hot, buyer_cells)


def plan(
    args: argparse.Namespace, step: int, rate: float, seconds: float, hot_share: float
) -> list[list[Line]]:
    """The seeded checkouts of one step (the same for every target): lists of ``Line``."""
    rand = random.Random(args.seed * 1000 + step)
    out: list[list[Line]] = []
    for _ in range(max(1, round(rate * seconds))):
        picks: dict[tuple[str, int], int] = {}
        want = rand.randint(1, 3)
        while len(picks) < want:
            if rand.random() < hot_share:
                ref = ("hot", rand.randrange(args.hot))
            else:
                ref = ("ordinary", rand.randrange(args.vendors * args.listings))
            picks.setdefault(ref, rand.randint(1, 2))
        out.append([(kind, index, qty) for (kind, index), qty in picks.items()])
    return out


# -- the two targets, as a load generator sees them ------------------------------------------------
@dataclass
class Outcome:
    code: str  # "ok", "out_of_stock" or another error code
    sent_checkout: float = 0.0  # perf_counter when the checkout request left
    answered: float = 0.0  # perf_counter of its answer
    orders: int = 0
    units: int = 0


class Driver(Protocol):
    name: str
    events: Counter[str]
    ordinary_ids: list[str]
    initial: dict[str, int]  # listing id -> initial stock, of every listing it created
    join_ms: dict[str, list[float]]
    answered: Counter[str]  # every answer of the run, late ones included (and ``units`` ok)

    async def setup(self, cat: Catalog) -> None: ...

    async def add_hot(self, items: list[Item]) -> list[str]: ...

    async def watch(self, listing_ids: list[str], watchers: int) -> None: ...

    async def checkout(self, buyer: int, lines: list[tuple[str, int]]) -> Outcome: ...

    async def after(self, buyer: int, outcome: Outcome, lines: list[tuple[str, int]]) -> None: ...

    async def close(self) -> None: ...


async def gated(count: int, limit: int, job: Callable[[int], Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> T:
        async with gate:
            return await job(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class Buyer:
    """One websocket: requests by id; events counted (by kind) without decoding them."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, events: Counter[str]) -> None:
        self.ws = ws
        self.events = events
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = False
        self.closing = False  # we close it: not an error
        self.reader = asyncio.create_task(self._read())

    async def request(self, op: str, data: dict[str, Any], mutating: bool = False,
                      timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        if self.closed:
            return {"ok": False, "error": {"code": "closed"}}
        ident = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[ident] = future
        frame: dict[str, Any] = {"id": ident, "op": op, "data": data}
        if mutating:
            frame["key"] = uuid.uuid4().hex
        try:
            await self.ws.send_str(json.dumps(frame))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return {"ok": False, "error": {"code": "timeout"}}
        except (ConnectionError, RuntimeError):
            return {"ok": False, "error": {"code": "closed"}}
        finally:
            self.waiting.pop(ident, None)

    async def _read(self) -> None:
        events = self.events
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data: str = msg.data
                if data.startswith('{"re"'):
                    frame = json.loads(data)
                    future = self.waiting.get(frame["re"])
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif '"listing.updated"' in data[:40]:
                    events["listing.updated"] += 1
                else:
                    events["other"] += 1
        finally:
            self.closed = True
            if not self.closing:
                events[f"closed:{self.ws.close_code}"] += 1
            for future in self.waiting.values():
                if not future.done():
                    future.set_result({"ok": False, "error": {"code": "closed"}})


class Ours:
    """The stack, over its public protocol only: REST for vendors and sign-up, websockets."""

    name = "ours"

    def __init__(self, url: str, args: argparse.Namespace, settings: Settings) -> None:
        self.url, self.args, self.settings = url, args, settings
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.api = Api(url, self.http, retries=4)  # 429 and 5xx retried, as before
        self.events: Counter[str] = Counter()
        self.vendor_users: list[SignIn] = []
        self.buyers: list[Buyer] = []
        self.watching: list[str] = []  # the hot listings the watchers follow
        self.ordinary_ids: list[str] = []
        self.initial: dict[str, int] = {}
        self.join_ms: dict[str, list[float]] = {"signup": [], "connect_locate": []}
        self.answered: Counter[str] = Counter()

    async def signup(self, name: str) -> SignIn:
        email = f"{name}-{uuid.uuid4().hex[:8]}@bench.test"
        t0 = time.perf_counter()
        user = await self.api.signup(email, PASSWORD, name)
        self.join_ms["signup"].append(1000 * (time.perf_counter() - t0))
        return user

    async def create(self, items: list[Item]) -> list[str]:
        """The items as listings, each by its vendor (vendors in parallel, each in order)."""
        ids: list[str] = [""] * len(items)
        by_vendor: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            by_vendor.setdefault(it.vendor, []).append(i)

        async def vendor(v: int) -> None:
            for i in by_vendor[v]:
                it = items[i]
                body = {"title": it.title, "description": it.description,
                        "category": it.category, "price": it.price, "stock": it.stock}  # fmt: skip
                listing = await self.api.create_listing(self.vendor_users[v], **body)
                ids[i] = str(listing["id"])
                self.initial[ids[i]] = it.stock

        await asyncio.gather(*(vendor(v) for v in by_vendor))
        return ids

    async def setup(self, cat: Catalog) -> None:
        async def vendor(v: int) -> SignIn:
            user = await self.signup(f"vendor{v}")
            lat, lng = h3.cell_to_latlng(cat.vendor_cells[v])
            await self.api.become_vendor(user, f"vendor {v}", "grocery", lat, lng)
            return user

        self.vendor_users = await gated(len(cat.vendor_cells), 16, vendor)
        self.ordinary_ids = await self.create(cat.ordinary)
        tokens = await gated(len(cat.buyer_cells), 32, lambda b: self.signup(f"buyer{b}"))

        async def join(b: int) -> Buyer:
            t0 = time.perf_counter()
            ws = await open_ws(self.http, self.url, tokens[b].access_token, heartbeat=None,
                               max_msg_size=0)  # fmt: skip
            hello = await ws.receive_json(timeout=60)
            if hello.get("ev") != "hello":
                raise RuntimeError(f"expected hello, got {hello}")
            buyer = Buyer(ws, self.events)
            lat, lng = h3.cell_to_latlng(cat.buyer_cells[b])
            reply = await buyer.request("locate", {"lat": lat, "lng": lng})
            if not reply.get("ok"):
                raise RuntimeError(f"locate failed: {reply}")
            self.join_ms["connect_locate"].append(1000 * (time.perf_counter() - t0))
            return buyer

        self.buyers = await gated(len(tokens), 32, join)

    async def add_hot(self, items: list[Item]) -> list[str]:
        return await self.create(items)

    async def watch(self, listing_ids: list[str], watchers: int) -> None:
        """The first ``watchers`` buyers keep the sale's page open: each follows the
        ``listing:<id>`` stream of every listing of ``listing_ids`` (and no longer the last
        step's), as a client showing live stock does; the other buyers hear of a listing only
        on their neighbourhood's feed (docs/protocol.md, ``listing.updated``)."""

        async def one(buyer: int) -> None:
            sock = self.buyers[buyer]
            for old in self.watching:
                await sock.request("unsubscribe", {"stream": f"listing:{old}"})
            for listing_id in listing_ids:
                reply = await sock.request("subscribe", {"stream": f"listing:{listing_id}"})
                if not reply.get("ok"):
                    raise RuntimeError(f"subscribe failed: {reply}")

        await gated(min(watchers, len(self.buyers)), 32, one)
        self.watching = list(listing_ids)

    async def checkout(self, buyer: int, lines: list[tuple[str, int]]) -> Outcome:
        sock = self.buyers[buyer]
        if self.args.buy_now:  # one request: the lines with the payment, no cart
            sent = time.perf_counter()
            body = {"payment": CARD, "lines": [{"listing_id": i, "qty": q} for i, q in lines]}
            reply = await sock.request("checkout", body, True)
            answered = time.perf_counter()
            if not reply.get("ok"):
                return Outcome(str(reply["error"]["code"]), sent, answered)
            orders = reply["data"]["orders"]
            return Outcome("ok", sent, answered, len(orders), sum(q for _, q in lines))
        for listing_id, qty in lines:
            reply = await sock.request("cart.add", {"listing_id": listing_id, "qty": qty}, True)
            if not reply.get("ok"):
                return Outcome(f"cart.add:{reply['error']['code']}", answered=time.perf_counter())
        sent = time.perf_counter()
        reply = await sock.request("checkout", {"payment": CARD}, True)
        answered = time.perf_counter()
        if not reply.get("ok"):
            return Outcome(str(reply["error"]["code"]), sent, answered)
        orders = reply["data"]["orders"]
        return Outcome("ok", sent, answered, len(orders), sum(q for _, q in lines))

    async def after(self, buyer: int, outcome: Outcome, lines: list[tuple[str, int]]) -> None:
        """A checkout that failed leaves the cart as it was: empty it (not timed)."""
        if outcome.code != "ok" and not self.args.buy_now:
            for listing_id, _ in lines:
                await self.buyers[buyer].request("cart.remove", {"listing_id": listing_id}, True)

    async def close(self) -> None:
        for buyer in self.buyers:
            buyer.closing = True
        await asyncio.gather(*(b.ws.close() for b in self.buyers), return_exceptions=True)
        await asyncio.gather(*(b.reader for b in self.buyers), return_exceptions=True)
        await self.http.close()


class Baseline:
    """bench/flash_baseline.py over HTTP: one request (one transaction) per checkout."""

    name = "baseline"

    def __init__(self, url: str, args: argparse.Namespace, settings: Settings) -> None:
        self.url, self.args, self.settings = url, args, settings
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.events: Counter[str] = Counter()  # it sends none
        self.ordinary_ids: list[str] = []
        self.initial: dict[str, int] = {}
        self.cells: list[str] = []
        self.join_ms: dict[str, list[float]] = {}
        self.answered: Counter[str] = Counter()

    async def create(self, items: list[Item]) -> list[str]:
        rows = []
        for it in items:
            cell = self.cells[it.vendor]
            lat, lng = h3.cell_to_latlng(cell)
            rows.append({"vendor_id": f"vendor-{it.vendor}", "cell": cell, "title": it.title,
                         "description": it.description, "category": it.category,
                         "price": it.price, "stock": it.stock, "lat": lat, "lng": lng})  # fmt: skip
        async with self.http.post(self.url + "/listings", json={"listings": rows}) as resp:
            ids = [str(i) for i in (await resp.json())["ids"]]
        self.initial.update({i: it.stock for i, it in zip(ids, items, strict=True)})
        return ids

    async def setup(self, cat: Catalog) -> None:
        self.cells = cat.vendor_cells
        self.ordinary_ids = await self.create(cat.ordinary)

    async def add_hot(self, items: list[Item]) -> list[str]:
        return await self.create(items)

    async def watch(self, listing_ids: list[str], watchers: int) -> None:
        """No events here: nothing to follow."""

    async def checkout(self, buyer: int, lines: list[tuple[str, int]]) -> Outcome:
        body = {"buyer_id": f"buyer-{buyer}",
                "lines": [{"listing_id": i, "qty": q} for i, q in lines]}  # fmt: skip
        sent = time.perf_counter()
        try:
            async with self.http.post(self.url + "/checkout", json=body) as resp:
                out = await resp.json()
                answered = time.perf_counter()
        except aiohttp.ClientError as e:
            return Outcome(f"http:{type(e).__name__}", sent, time.perf_counter())
        if resp.status == 200:
            return Outcome("ok", sent, answered, len(out["orders"]), sum(q for _, q in lines))
        code = out.get("error", {}).get("code") if isinstance(out, dict) else None
        return Outcome(str(code or f"http:{resp.status}"), sent, answered)

    async def after(self, buyer: int, outcome: Outcome, lines: list[tuple[str, int]]) -> None:
        return None

    async def close(self) -> None:
        await self.http.close()


# -- one step --------------------------------------------------------------------------------------
@dataclass
class Step:
    rate: float
    seconds: float
    total_ms: list[float] = field(default_factory=list)
    checkout_ms: list[float] = field(default_factory=list)
    cart_ms: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    lag_ms: list[float] = field(default_factory=list)
    orders: int = 0
    units: int = 0
    scheduled: int = 0
    last_answer: float = 0.0
    open: bool = True
    unanswered: int = 0


async def offer(driver: Driver, checkouts: list[list[tuple[str, int]]], step: Step,
                idle: deque[int], drain_s: float) -> set[asyncio.Task[None]]:  # fmt: skip
    """The open-loop clock: checkout ``i`` is due at ``start + i/rate``, on an idle buyer.
    Returns the checkouts still running once ``drain_s`` after the last is due has passed."""

    async def one(buyer: int, lines: list[tuple[str, int]], due: float) -> None:
        try:
            try:
                outcome = await driver.checkout(buyer, lines)
            except Exception as e:  # counted as an error of its own kind, never lost
                outcome = Outcome(f"exception:{type(e).__name__}", answered=time.perf_counter())
            driver.answered[outcome.code] += 1
            driver.answered["units"] += outcome.units
            if not step.open:
                driver.answered["after_their_step"] += 1
            if step.open:
                step.codes[outcome.code] += 1
                step.total_ms.append(1000 * (outcome.answered - due))
                if outcome.sent_checkout:
                    step.checkout_ms.append(1000 * (outcome.answered - outcome.sent_checkout))
                    step.cart_ms.append(1000 * (outcome.sent_checkout - due))
                step.orders += outcome.orders
                step.units += outcome.units
                step.last_answer = max(step.last_answer, outcome.answered)
            await driver.after(buyer, outcome, lines)
        finally:
            idle.append(buyer)

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.01
    step.scheduled = len(checkouts)
    for i, lines in enumerate(checkouts):
        due = start + i / step.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        step.lag_ms.append(max(0.0, time.perf_counter() - due) * 1000)
        if not idle:
            step.codes["no_idle_buyer"] += 1
            continue
        task = asyncio.create_task(one(idle.popleft(), lines, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    pending: set[asyncio.Task[None]] = set()
    if tasks:  # wait, never cancel: a late checkout still ends (and gives its buyer back)
        _, pending = await asyncio.wait(set(tasks), timeout=drain_s)
    step.open = False
    step.unanswered = len(pending)
    return pending


def resolve(driver: Driver, hot_ids: list[str], lines: list[Line]) -> list[tuple[str, int]]:
    return [
        (hot_ids[i] if kind == "hot" else driver.ordinary_ids[i], qty) for kind, i, qty in lines
    ]


@dataclass
class Meters:
    """The server side's CPU while a step runs: ``parts`` name each meter's share."""

    meters: list[tuple[Callable[[str], str], TreeMeter]]
    pinner: Pinner

    @contextlib.asynccontextmanager
    async def window(self) -> Any:
        cores0, me0 = core_times(), sum(psutil.Process().cpu_times()[:2])
        t0 = time.perf_counter()
        out: dict[str, Any] = {}
        async with contextlib.AsyncExitStack() as stack:
            for _, meter in self.meters:
                await stack.enter_async_context(meter)
            await stack.enter_async_context(self.pinner)
            yield out
        wall = max(time.perf_counter() - t0, 1e-9)
        cores1, me1 = core_times(), sum(psutil.Process().cpu_times()[:2])
        by: dict[str, float] = {}
        top: list[tuple[float, str, int]] = []
        for label, meter in self.meters:
            for pid, (comp, first, last) in meter.cpu.items():
                if pid == os.getpid():
                    continue
                part = label(comp)
                by[part] = by.get(part, 0.0) + (last - first)
                top.append((last - first, part, pid))
        out["server_cpu_pct"] = 100 * sum(by.values()) / wall
        out["server_cpu_pct_by"] = {k: round(100 * v / wall, 1) for k, v in sorted(by.items())}
        out["top_processes_cpu_pct"] = [
            (f"{part} {pid} {title_of(pid)}", round(100 * used / wall, 1))
            for used, part, pid in sorted(top, reverse=True)[:6]
        ]
        out["server_processes"] = sum(len(m.cpu) for _, m in self.meters)
        out["core_busy_pct"] = {c: round(100 * (cores1[c] - cores0.get(c, 0)) / wall)
                                for c in sorted(cores1)}  # fmt: skip
        out["loadgen_cpu_pct"] = 100 * (me1 - me0) / wall
        out["pinned_threads"] = self.pinner.threads
        out["off_core_threads"] = self.pinner.moved
        out["window_s"] = wall


def title_of(pid: int) -> str:
    """A process's title, short: ``ray::CellShard``, ``postgres: hyperlocal ... idle``."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        title = " ".join(" ".join(proc.cmdline()).split()) or proc.name()
        return title.split(" --")[0][-60:]
    return "(gone)"


async def pg_statements_reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def pg_statements_read(dsn: str) -> dict[tuple[str, bool], list[float]]:
    """Every statement since the reset: (query, top level) -> [calls, ms, plans, plan ms,
    rows]; the bench's own reads of the statistics left out."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT query, toplevel, calls, total_exec_time, plans, total_plan_time, rows"
            " FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%'"
        )
    finally:
        await conn.close()
    out: dict[tuple[str, bool], list[float]] = {}
    for r in rows:
        key = (" ".join(r["query"].split())[:150], bool(r["toplevel"]))
        got = out.setdefault(key, [0.0] * 5)
        for i, name in enumerate(("calls", "total_exec_time", "plans", "total_plan_time", "rows")):
            got[i] += float(r[name])
    return out


def pg_statements_top(
    seen: dict[tuple[str, bool], list[float]], n: int, checkouts: int
) -> dict[str, Any]:
    """Per checkout answered: the top-level statements (each a round trip; ``BEGIN`` and
    ``COMMIT`` included) and the ones triggers and functions ran (with
    ``pg_stat_statements.track=all``) summed, and the ``n`` statements of most calls."""
    per = max(checkouts, 1)
    top = [v for (_, toplevel), v in seen.items() if toplevel]
    nested = [v for (_, toplevel), v in seen.items() if not toplevel]
    ordered = sorted(seen.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))[:n]
    return {
        "toplevel_calls": sum(v[0] for v in top) / per,
        "toplevel_ms": sum(v[1] for v in top) / per,
        "nested_calls": sum(v[0] for v in nested) / per,
        "nested_ms": sum(v[1] for v in nested) / per,
        "statements": [
            {
                "calls": v[0] / per,
                "ms": v[1] / per,
                "mean_ms": v[1] / max(v[0], 1),
                "plans": v[2] / per,
                "plan_ms": v[3] / per,  # with pg_stat_statements.track_planning
                "rows": v[4] / per,
                "toplevel": toplevel,
                "query": query,
            }
            for (query, toplevel), v in ordered
        ],
    }


def merge_statements(
    into: dict[tuple[str, bool], list[float]], more: dict[tuple[str, bool], list[float]]
) -> None:
    for key, values in more.items():
        got = into.setdefault(key, [0.0] * len(values))
        for i, value in enumerate(values):
            got[i] += value


async def pg_work(dsn: str) -> tuple[int, int, dict[str, int], dict[str, int]]:
    """The server's Postgres so far: transactions committed and rows written, every database
    (pg_stat_database; backends report at most a second late, and these two reads count too).
    Per checkout, what shape the path has on any machine, busy or quiet. Third: where the
    commits come from beside the statements ``--pg-statements`` sees (``commits_<database>``;
    ``sessions``: connections opened, each its own commits at start-up; ``autovacuum``: the
    autovacuum and autoanalyze runs of every table, each one or more transactions;
    ``wal_bytes``, the WAL the whole server wrote, ``wal_fpi`` its full-page images). Fourth:
    the rows each table (``<schema>.<table>``) had inserted, updated or deleted."""
    conn = await asyncpg.connect(dsn)
    try:
        await asyncio.sleep(1.1)  # what backends have not reported yet (PGSTAT_MIN_INTERVAL)
        row = one(
            await conn.fetchrow(
                "SELECT sum(xact_commit)::bigint AS commits, sum(tup_inserted + tup_updated"
                " + tup_deleted)::bigint AS rows FROM pg_stat_database"
            )
        )
        by_db = await conn.fetch(
            "SELECT coalesce(datname, 'shared') AS db, xact_commit, sessions FROM pg_stat_database"
        )
        vacuums = await conn.fetchval(
            "SELECT sum(autovacuum_count + autoanalyze_count)::bigint FROM pg_stat_all_tables"
        )
        parts = {f"commits_{r['db']}": int(r["xact_commit"]) for r in by_db}
        parts["sessions"] = sum(int(r["sessions"] or 0) for r in by_db)
        parts["autovacuum"] = int(vacuums or 0)
        wal = one(await conn.fetchrow("SELECT wal_bytes, wal_fpi FROM pg_stat_wal"))
        parts["wal_bytes"], parts["wal_fpi"] = int(wal["wal_bytes"]), int(wal["wal_fpi"])
        tables = await conn.fetch(
            "SELECT schemaname || '.' || relname AS name,"
            " (n_tup_ins + n_tup_upd + n_tup_del)::bigint AS rows FROM pg_stat_all_tables"
        )
        by_table = {r["name"]: int(r["rows"]) for r in tables if r["rows"]}
        return int(row["commits"]), int(row["rows"]), parts, by_table
    finally:
        await conn.close()


def per_checkout(before: dict[str, int], after: dict[str, int], answered: int) -> dict[str, float]:
    """What each named count grew by in a step, per checkout answered (the counts that moved)."""
    return {
        name: (n - before.get(name, 0)) / max(answered, 1)
        for name, n in after.items()
        if n != before.get(name, 0)
    }


async def run_step(driver: Driver, meters: Meters, idle: deque[int], hot_ids: list[str],
                   lines: list[list[Line]], rate: float, args: argparse.Namespace,
                   ) -> tuple[dict[str, Any], set[asyncio.Task[None]]]:  # fmt: skip
    checkouts = [resolve(driver, hot_ids, c) for c in lines]
    step = Step(rate, len(checkouts) / rate)
    events0 = Counter(driver.events)
    dsn = stack_dsn(Path(os.environ[DATA_DIR_ENV]))
    pg0 = await pg_work(dsn)
    if args.pg_statements and args.part == "ours":
        await pg_statements_reset(dsn)  # the step's window only (not the watchers' subscribes)
    async with meters.window() as cost:
        started = time.perf_counter()
        late = await offer(driver, checkouts, step, idle, args.drain)
        ended = time.perf_counter()
    statements = None
    if args.pg_statements and args.part == "ours":
        statements = await pg_statements_read(dsn)
    pg1 = await pg_work(dsn)
    events = Counter(driver.events)
    events.subtract(events0)
    answered = sum(step.codes.values()) - step.codes["no_idle_buyer"]
    unanswered = step.unanswered
    errors = {c: n for c, n in step.codes.items() if c not in ("ok", "out_of_stock")}
    if unanswered:
        errors["no_answer"] = unanswered
    closed = {k: v for k, v in events.items() if k.startswith("closed:")}
    errors.update(closed)
    span = max(step.seconds, (step.last_answer or started) - started, 1e-9)
    window = max(ended - started, 1e-9)
    result = {
        "offered_per_s": rate,
        "seconds": step.seconds,
        "scheduled": step.scheduled,
        "answered": answered,
        "ok": step.codes["ok"],
        "out_of_stock": step.codes["out_of_stock"],
        "errors": errors,
        "orders": step.orders,
        "units": step.units,
        "orders_per_s": step.orders / span,
        "ok_checkouts_per_s": step.codes["ok"] / span,
        "total_p50_ms": percentile(step.total_ms, 50),
        "total_p99_ms": percentile(step.total_ms, 99),
        "total_max_ms": max(step.total_ms, default=float("nan")),
        "checkout_p50_ms": percentile(step.checkout_ms, 50),
        "checkout_p99_ms": percentile(step.checkout_ms, 99),
        "cart_p50_ms": percentile(step.cart_ms, 50),
        "cart_p99_ms": percentile(step.cart_ms, 99),
        "listing_events_per_s": events["listing.updated"] / window,
        "other_events_per_s": events["other"] / window,
        "send_lag_p99_ms": percentile(step.lag_ms, 99),
        **cost,
    }
    cpu_ms = cost["server_cpu_pct"] * cost["window_s"] * 10
    result["server_cpu_ms_per_checkout"] = cpu_ms / answered if answered else float("nan")
    # a step's late checkouts may still commit after pg1: an upper bound of the step's share
    result["pg_commits_per_checkout"] = (pg1[0] - pg0[0]) / answered if answered else float("nan")
    result["pg_rows_per_checkout"] = (pg1[1] - pg0[1]) / answered if answered else float("nan")
    result["pg_commit_sources"] = per_checkout(pg0[2], pg1[2], answered)
    by_table = per_checkout(pg0[3], pg1[3], answered)
    result["pg_rows_by_table"] = dict(sorted(by_table.items(), key=lambda kv: -kv[1]))
    if statements is not None:
        result["pg_statements_seen"] = statements
    result["pass"] = bool(
        not errors and answered == step.scheduled and result["total_p99_ms"] <= P99_LIMIT_MS
    )
    return result, late


# -- oversell, from Postgres -----------------------------------------------------------------------
async def audit(dsn: str, schema: str, initial: dict[str, int]) -> dict[str, Any]:
    """Oversell of ``initial``'s listings: units sold in paid (or later) orders beyond the
    initial stock, plus any mismatch initial - remaining != sold; after pending orders end."""
    conn = await asyncpg.connect(dsn)
    try:
        pending_sql = f"SELECT count(*) FROM {schema}.orders WHERE status = 'pending_payment'"
        for _ in range(60):  # at most 30 s for checkouts still running to end
            if not await conn.fetchval(pending_sql):
                break
            await asyncio.sleep(0.5)
        rows = await conn.fetch(
            f"SELECT l.id, l.stock,"
            f" COALESCE(sum(ol.qty) FILTER (WHERE o.status = ANY($1::text[])), 0) AS sold,"
            f" COALESCE(sum(ol.qty) FILTER (WHERE o.status = 'pending_payment'), 0) AS held"
            f" FROM {schema}.listings l LEFT JOIN {schema}.order_lines ol ON ol.listing_id = l.id"
            f" LEFT JOIN {schema}.orders o ON o.id = ol.order_id GROUP BY l.id, l.stock",
            list(SOLD),
        )
        by_status = await conn.fetch(f"SELECT status, count(*) FROM {schema}.orders GROUP BY 1")
    finally:
        await conn.close()
    over = beyond = mismatch = sold = held = 0
    seen = 0
    for r in rows:
        if r["id"] not in initial:
            continue
        seen += 1
        start = initial[r["id"]]
        sold, held = sold + r["sold"], held + r["held"]
        beyond += max(0, r["sold"] - start)
        mismatch += abs(start - r["stock"] - r["sold"])
    over = beyond + mismatch
    return {
        "oversell": int(over),
        "sold_beyond_stock": int(beyond),
        "stock_mismatch": int(mismatch),
        "units_sold": int(sold),
        "units_held_pending": int(held),
        "listings_checked": seen,
        "listings_expected": len(initial),
        "orders_by_status": {str(r[0]): int(r[1]) for r in by_status},
    }


# -- a part: one target, driven by this (fresh) process --------------------------------------------
async def drive(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    cat = catalog(args, settings)
    cpus = frozenset(args.server_cpus) if args.server_cpus else None
    own = frozenset(args.loadgen_cpus) if args.loadgen_cpus else None
    if own is not None:
        pin_threads(os.getpid(), own)
    data_dir = Path(os.environ[DATA_DIR_ENV])
    stack = TreeMeter(args.stack_pid, data_dir=data_dir)
    driver: Driver
    meters: list[tuple[Callable[[str], str], TreeMeter]]
    if args.part == "ours":
        driver = Ours(args.url, args, settings)
        meters = [(str, stack)]
    else:
        driver = Baseline(args.url, args, settings)
        meters = [
            (lambda _: "baseline server", TreeMeter(args.server_pid)),
            (lambda part: part if part == "postgres" else f"idle stack: {part}", stack),
        ]
    metered = Meters(meters, Pinner([m for _, m in meters], cpus, own))
    say(f"[{driver.name}] moved {metered.pinner.pass_once(full=True)} thread(s) onto their CPU")
    out: dict[str, Any] = {"target": driver.name, "steps": []}
    try:
        t0 = time.perf_counter()
        await driver.setup(cat)
        out["setup_s"] = time.perf_counter() - t0
        out["join_ms"] = {
            f"{k}_{p}": percentile(v, p) for k, v in driver.join_ms.items() for p in (50, 99)
        }
        say(f"[{driver.name}] set up in {out['setup_s']:.1f}s: {args.vendors} vendors,"
            f" {len(cat.ordinary)} listings, {args.buyers} buyers")  # fmt: skip
        gcpolicy.settle(settings)  # as the servers do: freeze what is alive, collect rarely
        idle = deque(random.Random(args.seed).sample(range(args.buyers), args.buyers))
        if args.warmup > 0:
            rate = min(20.0, args.rates[0])
            warm = plan(args, 999, rate, args.warmup, 0.0)
            result, late = await run_step(driver, metered, idle, [], warm, rate, args)
            result.pop("pg_statements_seen", None)  # the steps' statements only
            await settle_late(late)
            out["warmup"] = result
            say(f"[{driver.name}] warm-up: {summary(result)}")
        seen: dict[tuple[str, bool], list[float]] = {}
        for s, rate in enumerate(args.rates):
            hot_ids = await driver.add_hot(cat.hot[s])
            await driver.watch(hot_ids, args.watchers)
            await asyncio.sleep(args.pause)
            lines = plan(args, s, rate, args.step_seconds, args.hot_share)
            result, late = await run_step(driver, metered, idle, hot_ids, lines, rate, args)
            step_seen = result.pop("pg_statements_seen", {})
            merge_statements(seen, step_seen)
            if step_seen:  # this step's sums too: the sweep's list below is of every step
                sums = pg_statements_top(step_seen, 0, result["answered"])
                result["pg_statements"] = {k: v for k, v in sums.items() if k != "statements"}
            out["steps"].append(result)
            say(f"[{driver.name}] {rate:,.0f}/s: {'pass' if result['pass'] else 'FAIL'}"
                f" {summary(result)}")  # fmt: skip
            say(f"[{driver.name}]   {cpu_summary(result)}")
            rows = ", ".join(f"{t} {n:.2f}" for t, n in result["pg_rows_by_table"].items())
            say(f"[{driver.name}]   rows written per checkout answered, by table: {rows}")
            if step_seen:
                sums = result["pg_statements"]
                say(f"[{driver.name}]   Postgres statements per checkout answered:"
                    f" {sums['toplevel_calls']:.2f} top-level, {sums['nested_calls']:.2f} run"
                    " by triggers and functions")  # fmt: skip
            await settle_late(late)
        if seen:
            answered = sum(r["answered"] for r in out["steps"])
            out["pg_statements"] = top = pg_statements_top(seen, args.pg_statements, answered)
            say(f"[{driver.name}] Postgres statements in the steps' windows, per checkout"
                f" answered: {top['toplevel_calls']:.2f} top-level (round trips, BEGIN/COMMIT"
                f" included) {top['toplevel_ms']:.3f} ms; {top['nested_calls']:.2f} run by"
                f" triggers and functions (with pg_stat_statements.track=all)"
                f" {top['nested_ms']:.3f} ms. By calls (calls x mean ms = ms, then planning:"
                " plans x = ms, with -c pg_stat_statements.track_planning=on):")  # fmt: skip
            for row in top["statements"]:
                where = "top" if row["toplevel"] else "nested"
                say(f"  {row['calls']:6.2f} x {row['mean_ms']:6.3f} ms = {row['ms']:6.3f} ms"
                    f" + plan {row['plans']:5.2f} x = {row['plan_ms']:6.3f} ms"
                    f"  {row['rows']:6.2f} rows  {where:6} {row['query']}")  # fmt: skip
    finally:
        await driver.close()
    dsn = stack_dsn(data_dir)
    schema = "public" if args.part == "ours" else flash_baseline.SCHEMA
    out["audit"] = await audit(dsn, schema, driver.initial)
    out["units_answered_ok"] = driver.answered["units"]
    out["answered_after_their_step"] = driver.answered["after_their_step"]
    say(f"[{driver.name}] oversell {out['audit']['oversell']}: {fmt(out['audit'])}")
    return out


async def settle_late(late: set[asyncio.Task[None]], limit_s: float = 120.0) -> None:
    """Let checkouts still running after a step end (their buyers come back) before the next;
    any still running after ``limit_s`` go on, their buyers busy."""
    if late:
        _, pending = await asyncio.wait(late, timeout=limit_s)
        if pending:
            say(f"warning: {len(pending)} checkouts still running {limit_s:.0f}s after a step")


def summary(r: dict[str, Any]) -> str:
    return (
        f"{r['orders_per_s']:.1f} orders/s, total p50 {r['total_p50_ms']:.0f} / p99"
        f" {r['total_p99_ms']:.0f} ms (checkout alone p99 {r['checkout_p99_ms']:.0f}),"
        f" ok {r['ok']}, out_of_stock {r['out_of_stock']}, errors {r['errors'] or 0},"
        f" events {r['listing_events_per_s']:,.0f}/s, lag p99 {r['send_lag_p99_ms']:.0f} ms"
    )


def cpu_summary(r: dict[str, Any]) -> str:
    parts = ", ".join(f"{k} {v:.0f}" for k, v in r["server_cpu_pct_by"].items() if v >= 0.5)
    cores = ", ".join(f"CPU {c} {v}%" for c, v in r["core_busy_pct"].items())
    return (
        f"server CPU {r['server_cpu_pct']:.0f}% ({parts}); loadgen {r['loadgen_cpu_pct']:.0f}%;"
        f" {cores}; off-core threads set back {r['off_core_threads']}; Postgres per checkout:"
        f" {r['pg_commits_per_checkout']:.1f} commits, {r['pg_rows_per_checkout']:.1f} rows"
        f" ({', '.join(f'{k} {v:.2f}' for k, v in r.get('pg_commit_sources', {}).items())})"
    )


# -- the run: start the servers, a fresh load generator per target, the report ---------------------
async def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    pinning = choose_cpus(args)
    server_cpus, loadgen_cpus = pinning if pinning else (None, None)
    if loadgen_cpus is not None:
        pin_threads(os.getpid(), loadgen_cpus)
    root = Path(tempfile.mkdtemp(prefix="hl-bench-flash-"))
    doc: dict[str, Any] = {"machine": machine(), "args": vars(args) | {"json": str(args.json)}}
    doc["pinning"] = (
        f"server side on CPU {sorted(server_cpus)}, load generators on CPU {sorted(loadgen_cpus)}"
        if server_cpus and loadgen_cpus
        else "unpinned"
    )
    say(f"machine: {fmt(doc['machine'])}; {doc['pinning']}")
    source = None
    if args.source:
        source, sha = snapshot(rev_parse(args.source), root / "src")
        doc["commit"] = sha
        say(f"[ours] runs commit {sha[:12]} ({args.source}), from {source}")
    else:
        doc["commit"] = "working tree"
    target = make_target("ours", root, source, dict(e.split("=", 1) for e in args.ours_env))
    target.server.argv = pinned_argv(server_cpus, target.server.argv)
    baseline: ServerProcess | None = None
    results: dict[str, Any] = {}
    try:
        say(f"[ours] starting on {target.url}")
        await target.server.start()
        assert target.server.proc is not None
        dsn = stack_dsn(target.data_dir)
        for name in TARGETS:
            url, pid = target.url, target.server.proc.pid
            if name == "baseline":
                port = free_port()
                argv = python_module("bench.flash_baseline", "--port", str(port), "--dsn", dsn)
                baseline = ServerProcess("baseline", pinned_argv(server_cpus, argv),
                                         dict(os.environ), flash_baseline.READY,
                                         root / "baseline.log", cwd=REPO)  # fmt: skip
                await baseline.start()
                assert baseline.proc is not None
                url, pid = f"http://127.0.0.1:{port}", baseline.proc.pid
            results[name] = await measure_in_child(
                args, name, url, pid, target, server_cpus, loadgen_cpus, root
            )
            if baseline is not None:
                code = await baseline.stop()
                baseline = None
                say(f"[baseline] server stopped: exit {code}")
    finally:
        if baseline is not None:
            await baseline.stop()
        code, left = await target.stop()
        say(f"[ours] stopped: exit {code}, leftover services {left or 'none'}")
        doc["server_log"] = log_summary(target.data_dir / "server.log")
        shutil.rmtree(root, ignore_errors=True)
    doc["results"] = results
    doc["stopped_clean"] = code == 0 and not left
    return doc


def log_summary(path: Path, keep: int = 8) -> dict[str, Any]:
    """What the stack logged (at WARNING and above: anything there is worth a look): how many
    lines, and the first ``keep`` distinct messages with their counts."""
    if not path.exists():
        return {"lines": 0, "messages": []}
    counts: Counter[str] = Counter()
    lines = path.read_text(errors="replace").splitlines()
    for line in lines:
        try:
            record = json.loads(line)
            text = f"{record.get('level', '?')} {record.get('logger', '')}: {record.get('msg', '')}"
        except (ValueError, AttributeError):
            text = line
        counts[text[:200]] += 1
    return {"lines": len(lines), "messages": counts.most_common(keep)}


async def measure_in_child(
    args: argparse.Namespace,
    name: str,
    url: str,
    pid: int,
    target: Target,
    server_cpus: frozenset[int] | None,
    loadgen_cpus: frozenset[int] | None,
    root: Path,
) -> dict[str, Any]:
    """Drive target ``name`` (at ``url``, server ``pid``) from a fresh process; its figures."""
    assert target.server.proc is not None
    # Not a word of the data dir on the child's command line: the meters find Postgres by it.
    env = dict(os.environ, **{DATA_DIR_ENV: str(target.data_dir)})
    with tempfile.TemporaryDirectory(prefix="hl-flash-part-") as tmp:
        part = Path(tmp) / f"{name}.json"
        argv = python_module("bench.flash_sale", *args.given, "--part", name, "--url", url,
                             "--server-pid", str(pid), "--stack-pid", str(target.server.proc.pid),
                             "--part-json", str(part))  # fmt: skip
        if server_cpus and loadgen_cpus:
            argv += ["--server-cpus", *map(str, server_cpus)]
            argv += ["--loadgen-cpus", *map(str, loadgen_cpus)]
        say(f"[{name}] measured by a fresh load-generator process")
        proc = await asyncio.create_subprocess_exec(
            *pinned_argv(loadgen_cpus, argv), env=env, cwd=REPO
        )
        code = await proc.wait()
        if not part.exists():
            raise RuntimeError(f"the run measuring {name} failed (exit {code})")
        return dict(json.loads(part.read_text()))


# -- the report ------------------------------------------------------------------------------------
def ratio(a: Any, b: Any) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and b and math.isfinite(a / b):
        return f"{a / b:.2f}"
    return ""


SHORT = {"gateway": "gw", "shards": "shards", "ray workers": "ray-wk", "ray system": "ray-sys",
         "postgres": "pg", "redis": "redis", "baseline server": "server"}  # fmt: skip


def parts_line(step: dict[str, Any]) -> str:
    """``gw 40 shards 30 pg 20``: a step's server CPU by part (the stack idle beside the
    baseline summed as ``idle``)."""
    by: dict[str, float] = {}
    for part, pct in step.get("server_cpu_pct_by", {}).items():
        name = "idle" if part.startswith("idle stack") else SHORT.get(part, part)
        by[name] = by.get(name, 0.0) + pct
    return " ".join(f"{k} {v:.0f}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))


def cores_line(step: dict[str, Any]) -> str:
    return "/".join(str(v) for v in step.get("core_busy_pct", {}).values()) or "-"


def best(steps: list[dict[str, Any]]) -> float:
    passed = [s["offered_per_s"] for s in steps if s["pass"]]
    return max(passed, default=0.0)


def report(doc: dict[str, Any]) -> str:
    res = doc["results"]
    ours, base = res.get("ours", {}).get("steps", []), res.get("baseline", {}).get("steps", [])
    empty: dict[str, Any] = {}
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = list(
        itertools.zip_longest(ours, base, fillvalue=empty)
    )
    lines = [f"ours: {doc['commit']}; {doc['pinning']}; machine {fmt(doc['machine'])}", ""]

    def g(step: dict[str, Any], key: str) -> Any:
        return step.get(key, float("nan"))

    rows = []
    for o, b in pairs:
        rate = o.get("offered_per_s") or b.get("offered_per_s")
        rows.append((f"{rate:,.0f}/s", [
            g(o, "orders_per_s"), g(b, "orders_per_s"), ratio(g(o, "orders_per_s"),
                                                              g(b, "orders_per_s")),
            g(o, "total_p50_ms"), g(b, "total_p50_ms"),
            g(o, "total_p99_ms"), g(b, "total_p99_ms"),
            ratio(g(o, "total_p99_ms"), g(b, "total_p99_ms")),
            g(o, "checkout_p99_ms"),
            f"{o.get('ok', '-')}/{o.get('out_of_stock', '-')}/{sum(o.get('errors', {}).values())}",
            f"{b.get('ok', '-')}/{b.get('out_of_stock', '-')}/{sum(b.get('errors', {}).values())}",
            g(o, "listing_events_per_s"),
            "pass" if o.get("pass") else "FAIL", "pass" if b.get("pass") else "FAIL",
        ]))  # fmt: skip
    header = ["ord/s ours", "base", "ours/base", "p50 ours", "base", "p99 ours", "base",
              "ours/base", "ckout p99", "ours ok/oos/err", "base ok/oos/err", "events/s",
              "ours", "base"]  # fmt: skip
    lines += ["checkouts (latency ms from the scheduled start; ours includes its cart.adds;"
              " 'ckout p99': ours' checkout request alone)", table(rows, header), ""]  # fmt: skip
    cpu_rows = []
    for o, b in pairs:
        rate = o.get("offered_per_s") or b.get("offered_per_s")
        cpu_rows.append((f"{rate:,.0f}/s", [
            g(o, "server_cpu_pct"), parts_line(o), g(b, "server_cpu_pct"), parts_line(b),
            g(o, "server_cpu_ms_per_checkout"), g(b, "server_cpu_ms_per_checkout"),
            g(o, "pg_commits_per_checkout"), g(b, "pg_commits_per_checkout"),
            cores_line(o), cores_line(b), g(o, "loadgen_cpu_pct"), g(b, "loadgen_cpu_pct"),
        ]))  # fmt: skip
    cpu_header = ["ours", "ours by part", "base", "base by part", "ms/ck ours", "ms/ck base",
                  "PG commits/ck ours", "base", "cores ours", "cores base", "lg ours",
                  "lg base"]  # fmt: skip
    lines += [
        "server CPU, % of one core over each step (by part; the baseline's: its server, the"
        " Postgres it shares, the rest of the stack idle beside it); server CPU ms per checkout"
        " answered; Postgres transactions committed per checkout answered (the whole server's,"
        " pg_stat_database); each CPU's busy % (anyone's: CPU 0/CPU 1); load generator CPU %",
        table(cpu_rows, cpu_header),
        "",
    ]
    for name in TARGETS:
        if name not in res:
            continue
        a = res[name]["audit"]
        lines.append(
            f"{name}: oversell {a['oversell']} (sold beyond stock {a['sold_beyond_stock']},"
            f" initial-remaining!=sold {a['stock_mismatch']}); units sold {a['units_sold']:,}"
            f" (answered ok to the client: {res[name]['units_answered_ok']:,}; checkouts"
            f" answered after their step's drain: {res[name].get('answered_after_their_step', 0):,}"
            f"), held"
            f" {a['units_held_pending']}, orders {fmt(a['orders_by_status'])},"
            f" {a['listings_checked']}/{a['listings_expected']} listings"
        )
    log = doc.get("server_log", {})
    lines.append(f"stack log (WARNING and above): {log.get('lines', 0)} lines")
    lines += [f"  {n} x {text}" for text, n in log.get("messages", [])]
    o_best = best(ours) if ours else float("nan")
    b_best = best(base) if base else float("nan")
    lines.append(
        f"highest passing rate (p99 <= {P99_LIMIT_MS:.0f} ms, no error but out_of_stock):"
        f" ours {o_best:,.0f}/s, baseline {b_best:,.0f}/s, ours/baseline {ratio(o_best, b_best)}"
    )
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rates = lambda text: [float(r) for r in text.split(",")]  # noqa: E731
    p.add_argument("--buyers", type=int, default=2000)
    p.add_argument("--vendors", type=int, default=40)
    p.add_argument("--listings", type=int, default=10, help="ordinary listings per vendor")
    p.add_argument("--stock", type=int, default=100_000, help="stock of an ordinary listing")
    p.add_argument("--hot", type=int, default=10, help="hot listings (fresh every step)")
    p.add_argument("--hot-stock", type=int, default=50)
    p.add_argument("--buy-now", action="store_true",
                   help="ours' buyers send their lines with the checkout (docs/protocol.md,"
                        " buy now) instead of a cart.add per line first")  # fmt: skip
    p.add_argument("--hot-share", type=float, default=0.5, help="chance a line is a hot one")
    p.add_argument(
        "--watchers",
        type=int,
        default=200,
        help="buyers following every hot listing's own stream (its live stock)",
    )
    p.add_argument("--rates", type=rates, default=[25, 50, 100, 200, 400, 500, 700],
                   metavar="R1,R2,...", help="offered checkouts/s, one step each")  # fmt: skip
    p.add_argument("--step-seconds", type=float, default=10.0)
    p.add_argument("--drain", type=float, default=15.0, help="max wait for a step's answers")
    p.add_argument("--pause", type=float, default=2.0, help="between steps")
    p.add_argument("--warmup", type=float, default=3.0, help="s at <= 20/s, ordinary lines only")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="a smoke run of about two minutes")
    p.add_argument("--source", metavar="REV", help="run ours from a git snapshot of REV")
    p.add_argument("--ours-env", metavar="KEY=VALUE", action="append", default=[])
    p.add_argument("--cpus", metavar="S,L", help="server CPU, load generator CPU (default 0,1)")
    p.add_argument("--unpinned", action="store_true")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--pg-statements", type=int, default=0, metavar="N",
                   help="count ours' Postgres statements per checkout in the steps' windows"
                   " (each step's sums, then every step's N of most calls; needs --ours-env"
                   " 'HL_EMBEDDED_PG_OPTIONS=-c shared_preload_libraries=pg_stat_statements"
                   " -c pg_stat_statements.track=all')")  # fmt: skip
    hidden = argparse.SUPPRESS  # a part's own flags, given by the parent
    p.add_argument("--part", choices=TARGETS, help=hidden)
    p.add_argument("--url", help=hidden)
    p.add_argument("--server-pid", type=int, help=hidden)
    p.add_argument("--stack-pid", type=int, help=hidden)
    p.add_argument("--part-json", type=Path, help=hidden)
    p.add_argument("--server-cpus", type=int, nargs="+", help=hidden)
    p.add_argument("--loadgen-cpus", type=int, nargs="+", help=hidden)
    args = p.parse_args(argv)
    args.given = list(argv if argv is not None else sys.argv[1:])
    if args.quick:
        given = set(args.given)
        defaults = {"--buyers": ("buyers", 300), "--rates": ("rates", [25.0, 100.0]),
                    "--step-seconds": ("step_seconds", 6.0), "--drain": ("drain", 8.0),
                    "--warmup": ("warmup", 2.0), "--pause": ("pause", 1.0)}  # fmt: skip
        for flag, (attr, value) in defaults.items():
            if not any(g == flag or g.startswith(flag + "=") for g in given):
                setattr(args, attr, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.part:
        result = asyncio.run(drive(args))
        args.part_json.write_text(json.dumps(result, default=str))
        return 0
    doc = asyncio.run(orchestrate(args))
    text = report(doc)
    say("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    oversold = any(r["audit"]["oversell"] for r in doc["results"].values())
    if oversold:
        say("OVERSOLD")
    return 1 if oversold or not doc["stopped_clean"] or len(doc["results"]) < 2 else 0


if __name__ == "__main__":
    raise SystemExit(main())
