"""Photo upload benchmark: uploads per second and CPU seconds per upload.

Each upload is a distinct phone-sized JPEG (default 4032x3024, with GPS EXIF and an EXIF
orientation), made before the clock starts. Two modes:

- default: the pipeline itself (models/media.py ``process``: sniff, bomb guard, decode, orient,
  strip, two WebP variants) in a pool of spawned worker processes set up as the gateway's
  (services/media.py), ``--concurrency`` uploads in flight. CPU per upload is the workers' own
  CPU time (user + system, read from the processes) divided by the uploads.
- ``--url http://host:port``: the same uploads to a running gateway's ``POST /api/v1/media`` over
  HTTP, as one new user; ``--pid`` adds the CPU of that server's process tree per upload.
- ``--deploy``: the bench starts its own deployment (``hyperlocal up`` on a free loopback port
  with its own data dir: embedded Postgres, Redis, local Ray, the gateway, as bench/targets.py
  starts ``ours`` for the fanout benches) and uploads through its ``POST /api/v1/media``; then,
  in the same run and with the same photos, the baseline ``inline``: a tiny aiohttp server of
  this file (``--serve-inline``) that decodes with the same pipeline *in its handler*, on its
  event loop (Pillow in the event loop, what rule 6 forbids). During each, a probe asks the
  server's ``/healthz`` every 20 ms: its latency is what every other request of that process
  waits while uploads are decoded. Both servers are stopped whatever happens (``stopped_clean``:
  exit 0 and no Postgres or Redis left on the data dir).

    python -m bench.media                       # 40 uploads, 2 in flight
    python -m bench.media --quick               # a smoke run: 4 small uploads
    python -m bench.media --url http://127.0.0.1:8080 --pid 12345
    python -m bench.media --deploy --quick --json out.json

Figures are to be measured on a quiet machine (docs/media.md).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web
from PIL import Image

from bench.procs import ServerProcess, python_module
from bench.targets import make_target
from cluster.config import load_settings
from hyperlocal_client import Api
from models.media import ImageLimits, init_worker, process
from store.embedded import free_port


def make_photos(count: int, width: int, height: int) -> list[bytes]:
    """``count`` distinct JPEGs (each its own noise), each with GPS EXIF and orientation 6."""
    photos = []
    for i in range(count):
        img = Image.effect_noise((width, height), 40 + i % 20).convert("RGB")
        img.paste((i * 37 % 256, 90, 160), (0, 0, width // 8, height // 8))
        exif = Image.Exif()
        exif[0x0112] = 6
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2], gps[3], gps[4] = "N", (51.0, 30.0, float(i)), "W", (0.0, 7.0, 39.0)
        buf = io.BytesIO()
        img.save(buf, "JPEG", exif=exif.tobytes(), quality=88)
        photos.append(buf.getvalue())
    return photos


@dataclass
class Result:
    mode: str
    uploads: int
    seconds: float
    latencies_s: list[float]
    cpu_s: float | None
    probe_s: list[float] = field(default_factory=list)
    """Latencies of the server's ``/healthz`` asked every 20 ms during the uploads."""

    def report(self) -> dict[str, Any]:
        out = {
            "mode": self.mode,
            "uploads": self.uploads,
            "uploads_per_s": round(self.uploads / self.seconds, 2),
            "latency_p50_ms": _ms(self.latencies_s, 0.5),
            "latency_p99_ms": _ms(self.latencies_s, 0.99),
            "cpu_s_per_upload": None if self.cpu_s is None else round(self.cpu_s / self.uploads, 3),
        }
        if self.probe_s:
            out.update(probe_p50_ms=_ms(self.probe_s, 0.5), probe_p99_ms=_ms(self.probe_s, 0.99),
                       probe_max_ms=_ms(self.probe_s, 1.0), probes=len(self.probe_s))  # fmt: skip
        return out


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    at = (
        statistics.median(ordered)
        if q == 0.5
        else ordered[min(len(ordered) - 1, int(len(ordered) * q))]
    )
    return round(at * 1000, 1)


def _cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each of ``pids`` still running."""
    used = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[pid] = times.user + times.system
    return used


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two readings (a process started in between counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _tree(pid: int) -> list[int]:
    proc = psutil.Process(pid)
    return [pid, *(child.pid for child in proc.children(recursive=True))]


async def run_pipeline(photos: list[bytes], concurrency: int, workers: int) -> Result:
    """The decoding pipeline in worker processes, as the gateway runs it."""
    settings = load_settings()
    limits = ImageLimits(
        settings.media_max_pixels, settings.media_max_side_px, settings.media_webp_quality
    )
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(settings.media_max_pixels, settings.media_worker_memory_mb),
    )
    loop = asyncio.get_running_loop()
    try:
        # start the workers before the clock (they are spawned on demand)
        await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(workers)))
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def one(data: bytes) -> None:
            async with gate:
                t0 = time.perf_counter()
                await loop.run_in_executor(pool, process, data, limits)
                latencies.append(time.perf_counter() - t0)

        cpu0, t0 = _cpu(list(pool._processes)), time.perf_counter()
        await asyncio.gather(*(one(p) for p in photos))
        took, cpu = time.perf_counter() - t0, _spent(cpu0, _cpu(list(pool._processes)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return Result("pipeline", len(photos), took, latencies, cpu)


async def run_http(
    base: str,
    photos: list[bytes],
    concurrency: int,
    pid: int | None = None,
    *,
    signup: bool = True,
    probe: bool = False,
    mode: str = "http",
) -> Result:
    """The uploads through a running server, as one freshly signed-up user (``signup``); with
    ``probe``, ``/healthz`` asked every 20 ms meanwhile."""
    async with aiohttp.ClientSession() as http:
        api = Api(base, http)
        token = None
        if signup:
            email = f"bench-media-{uuid.uuid4().hex[:10]}@example.test"
            token = (await api.signup(email, "correct horse battery", "bench")).access_token
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def one(data: bytes) -> None:
            async with gate:
                t0 = time.perf_counter()
                await api.upload(data, token)  # 201 {media}, else ApiError
                latencies.append(time.perf_counter() - t0)

        probes: list[float] = []
        done = asyncio.Event()

        async def ask() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                await api.get("/healthz")  # 200, else ApiError
                probes.append(time.perf_counter() - t0)
                await asyncio.sleep(0.02)

        cpu0, t0 = _cpu(_tree(pid) if pid else []), time.perf_counter()
        prober = asyncio.create_task(ask()) if probe else None
        try:
            await asyncio.gather(*(one(p) for p in photos))
        finally:
            done.set()
            if prober is not None:
                await prober
        took = time.perf_counter() - t0
        cpu = _spent(cpu0, _cpu(_tree(pid))) if pid else None  # workers started meanwhile too
    return Result(mode, len(photos), took, latencies, cpu, probes)


# -- the same-run baseline: Pillow in the event loop --------------------------------------------
INLINE_READY = "inline media on"


def inline_app() -> web.Application:
    """``POST /api/v1/media`` decoding in the handler itself (the same ``process``), on the
    event loop; ``GET /healthz``. No auth, no storage: the baseline is the decode's placement."""
    settings = load_settings()
    limits = ImageLimits(
        settings.media_max_pixels, settings.media_max_side_px, settings.media_webp_quality
    )
    Image.MAX_IMAGE_PIXELS = settings.media_max_pixels

    async def upload(request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        assert isinstance(part, aiohttp.BodyPartReader)
        done = process(await part.read(decode=False), limits)  # blocks the loop: the point
        return web.json_response({"media": {"variants": len(done.variants)}}, status=201)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=settings.media_max_upload_bytes + 65536)
    app.router.add_post("/api/v1/media", upload)
    app.router.add_get("/healthz", healthz)
    return app


def serve_inline(port: int) -> None:
    web.run_app(inline_app(), host="127.0.0.1", port=port, print=lambda _: print(
        f"{INLINE_READY} {port}", flush=True))  # fmt: skip


async def run_deployed(photos: list[bytes], concurrency: int) -> dict[str, Any]:
    """``ours`` (a deployment of its own) then ``inline``, the same photos; both stopped."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hl-bench-media-") as tmp:
        root = Path(tmp)
        target = make_target("ours", root, None, {})
        port = free_port()
        inline = ServerProcess("inline", python_module("bench.media", "--serve-inline",
                               "--port", str(port)), dict(os.environ), INLINE_READY,
                               root / "inline.log")  # fmt: skip
        code, left, inline_code = 0, list[int](), 0
        try:
            await target.server.start()
            assert target.server.proc is not None
            ours = await run_http(target.url, photos, concurrency, target.server.proc.pid,
                                  probe=True, mode="ours")  # fmt: skip
            results["ours"] = ours.report()
            await inline.start()
            assert inline.proc is not None
            base = f"http://127.0.0.1:{port}"
            alone = await run_http(base, photos, concurrency, inline.proc.pid, signup=False,
                                   probe=True, mode="inline")  # fmt: skip
            results["inline"] = alone.report()
        finally:
            code, left = await target.stop()
            inline_code = await inline.stop()
    clean = code == 0 and not left and inline_code in (0, -2)
    return {"results": results, "stopped_clean": clean}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 uploads of 1024x768")
    parser.add_argument("--uploads", type=int, default=None, help="uploads (40; --quick: 4)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="pipeline workers (settings)")
    parser.add_argument("--size", default=None, help="WxH of each photo (4032x3024)")
    parser.add_argument("--url", default=None, help="a running gateway to upload to")
    parser.add_argument("--pid", type=int, default=None, help="that gateway's pid (CPU)")
    parser.add_argument(
        "--deploy",
        action="store_true",
        help="start a deployment and the inline baseline, upload to both",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--serve-inline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_inline:
        serve_inline(args.port)
        return {}
    count = args.uploads if args.uploads is not None else 4 if args.quick else 40
    size = args.size or ("1024x768" if args.quick else "4032x3024")
    width, height = (int(x) for x in size.lower().split("x"))
    photos = make_photos(count, width, height)
    workers = args.workers or load_settings().media_workers
    out: dict[str, Any] = {"size": size, "concurrency": args.concurrency}
    if args.deploy:
        out.update(asyncio.run(run_deployed(photos, args.concurrency)))
    elif args.url:
        url = args.url.rstrip("/")
        out.update(asyncio.run(run_http(url, photos, args.concurrency, args.pid)).report())
    else:
        out.update(asyncio.run(run_pipeline(photos, args.concurrency, workers)).report())
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
