"""Photo uploads: accept, serve, attach to posts and listings, expire the unused ones.

``MediaService`` owns the pool of decoding worker processes and the blob store
(store/media_blobs.py); rows are in Postgres (store/media_store.py). An upload:
1. is sniffed (never the declared type) and hashed (in a thread); the owner's live media of the
   very same bytes is answered again without decoding (an upload is idempotent by content);
2. is decoded, oriented, stripped of every piece of metadata and resized to the WebP variants in
   a worker process (models/media.py: ``process``), never on the event loop (rule 6);
3. has its variants stored under their sha256 and its row inserted in one transaction holding
   the objects' locks, so the sweeper cannot delete an object between the two.
It is pending until a post, listing or profile uses it (``attach``: the caller must be its
owner), and deleted by the sweeper ``media_pending_ttl_s`` after its upload if none does.

Access (rule 7), at every object: a media is public only while something live shows it (a
post of its owner, a listing of the owner's vendor, the owner's avatar: read at every request,
store/media_store.py ``IN_USE``), and then served with an immutable ``Cache-Control`` of
``media_public_max_age_s`` so a CDN can front ``/media/``. Otherwise — pending, or what
showed it deleted or removed by a moderator — only its owner sees it (its URL answers
``not_found`` to anyone else). The sweeper walks the attached rows and releases those nothing
uses (pending again for ``media_release_grace_s``, so a moderator's restore finds them), then
deletes them and the objects no row names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from cluster.config import Settings
from models.errors import AppError, Conflict, Forbidden, NotFound, TooLarge
from models.media import (
    ImageLimits,
    NotAnImage,
    Processed,
    TooManyPixels,
    clean_ids,
    init_worker,
    new_media_id,
    process,
    sha256_hex,
    sniff,
)
from services.loops import Backoff, LoopFailures, SupervisedLoop
from store import media_store as ms
from store.media_blobs import BlobStore, LocalBlobs, S3Blobs, object_name

log = logging.getLogger("hyperlocal.media")

CONTENT_TYPE = "image/webp"
IMMUTABLE = "public, max-age={}, immutable"
"""Cache-Control of a media's variant while it is shown: its bytes never change under its URL
(``max-age``: ``media_public_max_age_s``, how long a cache may keep a photo deleted since)."""
PRIVATE = "private, max-age=300"
"""Cache-Control of a pending upload's variant, shown to its owner only."""
_SWEEP_BATCH = 200
_SETTLE_S = 600.0
"""A row attached this recently is not released: what uses it may not have committed yet."""


def open_blobs(settings: Settings) -> BlobStore:
    """The configured backend (``media_backend``)."""
    if settings.media_backend == "s3":
        assert settings.media_s3_bucket, "checked by Settings"
        return S3Blobs.connect(
            settings.media_s3_bucket,
            settings.media_s3_prefix,
            endpoint_url=settings.media_s3_endpoint_url,
            region=settings.media_s3_region,
            access_key_id=settings.media_s3_access_key_id,
            secret_access_key=settings.media_s3_secret_access_key,
        )
    return LocalBlobs(settings.media_dir or settings.data_dir / "media")


@dataclass(frozen=True, slots=True)
class Served:
    """One variant to answer with: ``data`` None when the client's copy is current (304)."""

    etag: str
    cache_control: str
    data: bytes | None


class MediaService:
    """Uploads, their variants and their lifecycle; one per process."""

    def __init__(self, settings: Settings, db: asyncpg.Pool, blobs: BlobStore) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.limits = ImageLimits(
            settings.media_max_pixels, settings.media_max_side_px, settings.media_webp_quality
        )
        base = settings.media_base_url or (settings.public_url or "").rstrip("/")
        self.base_url = f"{base}/media"
        self._pool: ProcessPoolExecutor | None = None
        self._public_cache = IMMUTABLE.format(settings.media_public_max_age_s)
        self._release_after = ""  # where the sweep's walk over attached rows resumes
        self.uploads = 0
        self.swept = 0
        self.released = 0

    # -- uploads ---------------------------------------------------------------------------------
    async def upload(self, owner_id: str, data: bytes) -> dict[str, Any]:
        """Accept one image of ``owner_id``: its public description (``{id, url, ...}``)."""
        limit = self.settings.media_max_upload_bytes
        if len(data) > limit:
            raise TooLarge(f"the file is over {limit} bytes", limit_bytes=limit)
        if sniff(data) is None:
            raise NotAnImage("not a JPEG, PNG or WebP image (judged by its content)")
        source = await asyncio.to_thread(sha256_hex, data)
        ttl = self.settings.media_pending_ttl_s
        again = await ms.revive(self.db, owner_id, source, ttl)
        if again is not None:
            return self.public(again)
        done = await self._decode(data)
        row = {
            "id": new_media_id(),
            "owner_id": owner_id,
            "source_sha256": source,
            "format": done.format,
            "width": done.width,
            "height": done.height,
            "variants": [v.meta() for v in done.variants],
        }
        async with self.db.acquire() as conn, conn.transaction():
            await ms.lock_objects(conn, (v.sha256 for v in done.variants))
            for variant in done.variants:
                await self.blobs.put(object_name(variant.sha256), variant.data, CONTENT_TYPE)
            stored = await ms.insert(conn, row, ttl)
        self.uploads += 1
        return self.public(stored)

    async def _decode(self, data: bytes) -> Processed:
        """``process`` in a worker process; a worker that died on it is replaced."""
        pool = self._workers()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, process, data, self.limits)
        except MemoryError:  # the worker's address-space cap (HL_MEDIA_WORKER_MEMORY_MB)
            raise TooManyPixels("the image needs too much memory to decode") from None
        except BrokenProcessPool:
            log.warning("a media worker died decoding an upload; starting new workers")
            if self._pool is pool:
                self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise NotAnImage("the image could not be decoded") from None

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.settings.media_workers,
                mp_context=multiprocessing.get_context("spawn"),  # nothing of this process's
                initializer=init_worker,  # threads, sockets or Ray state is inherited
                initargs=(self.settings.media_max_pixels, self.settings.media_worker_memory_mb),
            )
        return self._pool

    # -- reading ---------------------------------------------------------------------------------
    def public(self, row: asyncpg.Record) -> dict[str, Any]:
        """A media as clients see it (PROTOCOL: ``{id, url, width, height, variants}``)."""
        media_id = row["id"]
        variants = [
            {
                "size": v["size"],
                "url": f"{self.base_url}/{media_id}/{v['size']}.webp",
                "width": v["width"],
                "height": v["height"],
                "bytes": v["bytes"],
            }
            for v in sorted(row["variants"], key=lambda v: int(v["size"]))
        ]
        largest = variants[-1]
        expires: datetime | None = row["expires_at"]
        return {
            "id": media_id,
            "url": largest["url"],
            "width": row["width"],
            "height": row["height"],
            "variants": variants,
            "content_type": CONTENT_TYPE,
            "created_at": row["created_at"].isoformat(),
            "attached": row["attached_at"] is not None,
            "expires_at": expires.isoformat() if expires is not None else None,
        }

    async def _visible(self, media_id: str, viewer: str | None) -> asyncpg.Record:
        """The row if ``viewer`` may see it: shown by something live (public), or theirs."""
        row = await ms.get(self.db, media_id)
        if row is None or (not row["in_use"] and row["owner_id"] != viewer):
            raise NotFound("no such media")
        return row

    async def describe(self, media_id: str, viewer: str | None) -> dict[str, Any]:
        return self.public(await self._visible(media_id, viewer))

    async def variant(
        self, media_id: str, size: int, viewer: str | None, if_none_match: str | None
    ) -> Served:
        """The bytes of one variant, or ``data`` None when ``if_none_match`` holds its ETag."""
        row = await self._visible(media_id, viewer)
        found = [v for v in row["variants"] if int(v["size"]) == size]
        if not found:
            raise NotFound("no such variant")
        sha = str(found[0]["sha256"])
        etag = f'"{sha}"'
        cache = self._public_cache if row["in_use"] else PRIVATE
        if if_none_match is not None and _matches(if_none_match, etag):
            return Served(etag, cache, None)
        data = await self.blobs.get(object_name(sha))
        if data is None:
            log.error("media %s: object %s is missing from the %s store", media_id, sha,
                      self.blobs.kind)  # fmt: skip
            raise NotFound("no such media")
        return Served(etag, cache, data)

    # -- use by posts, listings, profiles --------------------------------------------------------
    async def attach(self, owner_id: str, media_ids: list[str] | tuple[str, ...]) -> list[str]:
        """Check every id names a live upload of ``owner_id`` and mark them used (they no longer
        expire); the ids without repeats. Unknown or expired: ``not_found``; another user's:
        ``forbidden``; either way nothing is marked."""
        ids = clean_ids(media_ids)
        if not ids:
            return ids
        async with self.db.acquire() as conn, conn.transaction():
            owners = await ms.owners(conn, ids)
            for media_id in ids:
                owner = owners.get(media_id)
                if owner is None:
                    raise NotFound(f"no such media: {media_id}", media_id=media_id)
                if owner != owner_id:
                    raise Forbidden(f"media {media_id} is not yours", media_id=media_id)
            await ms.attach(conn, ids)
        return ids

    async def remove(self, owner_id: str, media_id: str) -> None:
        """The owner withdraws an unused upload. In use: ``conflict`` (it stays as long as
        what shows it); not theirs or no such upload: ``not_found``."""
        row = await ms.delete_pending(self.db, media_id, owner_id)
        if row is None:
            live = await ms.get(self.db, media_id)
            if live is not None and live["owner_id"] == owner_id:
                raise Conflict("this photo is used by a post, listing or profile")
            raise NotFound("no such media")
        await self._collect([row])

    # -- expiry ----------------------------------------------------------------------------------
    async def sweep(self) -> int:
        """Release one batch of attached rows nothing uses any more, delete expired unused
        uploads and every object no row names any more; how many rows were deleted."""
        last, released = await ms.release_unused(
            self.db,
            self._release_after,
            _SWEEP_BATCH,
            _SETTLE_S,
            self.settings.media_release_grace_s,
        )
        self._release_after = last or ""  # at the end: start over next time
        self.released += released
        rows = await ms.delete_expired(self.db, _SWEEP_BATCH)
        await self._collect(rows)
        self.swept += len(rows)
        return len(rows)

    async def _collect(self, rows: list[asyncpg.Record]) -> None:
        """Delete the objects of deleted rows that no row names any more (each under its lock,
        which an upload storing the same object holds too)."""
        shas = {str(v["sha256"]) for r in rows for v in r["variants"]}
        for sha in sorted(shas):
            async with self.db.acquire() as conn, conn.transaction():
                await ms.lock_objects(conn, [sha])
                if not await ms.referenced(conn, sha):
                    await self.blobs.delete(object_name(sha))

    async def run_sweeper(self, failures: LoopFailures | None = None) -> None:
        """Sweep every ``media_sweep_s``. Must not die: a failing round is logged and backed
        off (doubling, up to eight periods)."""
        period = self.settings.media_sweep_s
        await SupervisedLoop(
            "media-sweeper",
            self._sweep_all,
            period_s=period,
            log=log,
            backoff=Backoff(2 * period, max(period, 1.0) * 8),
            expected=(asyncpg.PostgresError, OSError, AppError),
            wait_first=True,
            failures=failures,
        ).run()

    async def _sweep_all(self) -> None:
        while await self.sweep() == _SWEEP_BATCH:
            pass

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        await self.blobs.close()


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag, compared weakly."""
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)
