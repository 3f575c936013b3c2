"""Where photo variants are kept: one small interface, two backends.

``BlobStore`` is all the media service knows: ``put``, ``get``, ``delete`` of immutable objects
named by the sha256 of their bytes (so a ``put`` of a name that exists writes the same bytes
again, and is skipped where that is cheap to know). ``LocalBlobs`` keeps them as files under a
folder (the data dir by default); ``S3Blobs`` in a bucket of any S3-compatible store (AWS, MinIO,
R2, Ceph; tested against moto's server). Both run their blocking calls in threads, never on the
event loop; a backend that cannot be reached is ``unavailable``.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.errors import Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NAME = re.compile(r"^[0-9a-f]{64}\.webp$")


def object_name(sha256: str) -> str:
    """The name of a variant: its content's sha256 and its type."""
    return f"{sha256}.webp"


def _checked(name: str) -> str:
    if not _NAME.match(name):  # names come from our own rows; never a path from outside
        raise ValueError(f"not an object name: {name!r}")
    return name


class BlobStore(Protocol):
    """Immutable objects by content name. ``get`` of a missing one is None."""

    kind: str

    async def put(self, name: str, data: bytes, content_type: str) -> None: ...

    async def get(self, name: str) -> bytes | None: ...

    async def delete(self, name: str) -> None: ...

    async def close(self) -> None: ...


class LocalBlobs:
    """Files ``<root>/<first 2 hex>/<sha256>.webp``, written whole (temp file, then rename)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        _checked(name)
        return self.root / name[:2] / name

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, self._path(name), data)

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        if path.exists():
            return  # the same name is the same bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".up-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def get(self, name: str) -> bytes | None:
        path = self._path(name)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self._path(name).unlink, missing_ok=True)

    async def close(self) -> None:
        return None


class S3Blobs:
    """Objects ``<prefix><sha256>.webp`` in one bucket, through boto3 in a small thread pool."""

    kind = "s3"

    def __init__(self, client: S3Client, bucket: str, prefix: str, threads: int = 8) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="hl-s3")

    @classmethod
    def connect(
        cls,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
    ) -> S3Blobs:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            # path-style addressing works with every S3-compatible server; retries are boto3's
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )
        return cls(client, bucket, prefix)

    async def _call(self, fn: Any, /, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(**kwargs))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(code) from None
            raise Unavailable(f"the media store answered {code or 'an error'}") from exc
        except BotoCoreError as exc:
            raise Unavailable("the media store cannot be reached") from exc

    def _key(self, name: str) -> str:
        return self.prefix + _checked(name)

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await self._call(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(name),
            Body=data,
            ContentType=content_type,
            CacheControl="public, max-age=31536000, immutable",
        )

    async def get(self, name: str) -> bytes | None:
        key = self._key(name)

        def fetch() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        try:
            return bytes(await self._call(fetch))
        except FileNotFoundError:
            return None

    async def delete(self, name: str) -> None:
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=self._key(name))

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.client.close)
