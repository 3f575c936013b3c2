"""Photo upload benchmark: uploads per second and CPU seconds per upload.

Each upload is a distinct phone-sized JPEG (default 4032x3024, with GPS EXIF and an EXIF
orientation), made before the clock starts. Two modes:

- default: the pipeline itself (models/media.py ``process``: sniff, bomb guard, decode, orient,
  strip, two WebP variants) in a pool of spawned worker processes set up as the gateway's
  (services/media.py), ``--concurrency`` uploads in flight. CPU per upload is the workers' own
  CPU time (user + system, read from the processes) divided by the uploads.
- ``--url http://host:port``: the same uploads to a running gateway's ``POST /api/v1/media`` over
  HTTP, as one new user; ``--pid`` adds the CPU of that server's process tree per upload.

    python -m bench.media                       # 40 uploads, 2 in flight
    python -m bench.media --quick               # a smoke run: 4 small uploads
    python -m bench.media --url http://127.0.0.1:8080 --pid 12345

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
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil
from PIL import Image

from cluster.config import load_settings
from models.media import ImageLimits, init_worker, process


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

    def report(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return {
            "mode": self.mode,
            "uploads": self.uploads,
            "uploads_per_s": round(self.uploads / self.seconds, 2),
            "latency_p50_ms": round(statistics.median(lat) * 1000, 1),
            "latency_p99_ms": round(p99 * 1000, 1),
            "cpu_s_per_upload": None if self.cpu_s is None else round(self.cpu_s / self.uploads, 3),
        }


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
    base: str, photos: list[bytes], concurrency: int, pid: int | None = None
) -> Result:
    """The uploads through a running gateway, as one freshly signed-up user."""
    async with aiohttp.ClientSession() as http:
        email = f"bench-media-{uuid.uuid4().hex[:10]}@example.test"
        body = {"email": email, "password": "correct horse battery", "display_name": "bench"}
        async with http.post(f"{base}/api/v1/auth/signup", json=body) as resp:
            assert resp.status == 201, await resp.text()
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def one(data: bytes) -> None:
            form = aiohttp.FormData()
            form.add_field("file", data, filename="photo.jpg", content_type="image/jpeg")
            async with gate:
                t0 = time.perf_counter()
                async with http.post(f"{base}/api/v1/media", data=form, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                latencies.append(time.perf_counter() - t0)

        cpu0, t0 = _cpu(_tree(pid) if pid else []), time.perf_counter()
        await asyncio.gather(*(one(p) for p in photos))
        took = time.perf_counter() - t0
        cpu = _spent(cpu0, _cpu(_tree(pid))) if pid else None  # workers started meanwhile too
    return Result("http", len(photos), took, latencies, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 uploads of 1024x768")
    parser.add_argument("--uploads", type=int, default=None, help="uploads (40; --quick: 4)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="pipeline workers (settings)")
    parser.add_argument("--size", default=None, help="WxH of each photo (4032x3024)")
    parser.add_argument("--url", default=None, help="a running gateway to upload to")
    parser.add_argument("--pid", type=int, default=None, help="that gateway's pid (CPU)")
    args = parser.parse_args()
    count = args.uploads if args.uploads is not None else 4 if args.quick else 40
    size = args.size or ("1024x768" if args.quick else "4032x3024")
    width, height = (int(x) for x in size.lower().split("x"))
    photos = make_photos(count, width, height)
    workers = args.workers or load_settings().media_workers
    if args.url:
        result = asyncio.run(run_http(args.url.rstrip("/"), photos, args.concurrency, args.pid))
    else:
        result = asyncio.run(run_pipeline(photos, args.concurrency, workers))
    print(json.dumps({"size": size, "concurrency": args.concurrency, **result.report()}))


if __name__ == "__main__":
    main()
