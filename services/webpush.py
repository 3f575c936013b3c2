"""Web Push: the deployment's VAPID key pair and sending one encrypted message to one device.

The key pair (P-256, RFC 8292) is generated once and kept sealed in ``app_secrets``
(``vapid``): the first gateway to start stores it, every other reads it, so every gateway signs
with the key browsers subscribed with. A message is encrypted for the subscription per RFC 8291
(``aes128gcm``, pywebpush's ``WebPusher.encode``) and signed with a VAPID JWT (py_vapid); both
are CPU work (ECDH, ECDSA), done in a thread (rule 6). The POST itself is aiohttp's.

Endpoints on loopback, private or link-local addresses are refused when subscribing and at
connect time (the hook dispatcher's resolver), unless ``push_allow_private``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPusher

from cluster.config import Settings
from models.errors import BadRequest
from services.hooks import PublicResolver, check_target
from services.secrets import Keys
from store import notifications_store as st


@dataclass(frozen=True, slots=True)
class PushResult:
    """A push service's answer: its HTTP status, or None with the error when none came."""

    status: int | None
    error: str | None = None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class WebPush:
    """Owns the VAPID key pair and an HTTP client to push services."""

    def __init__(self, settings: Settings, db: asyncpg.Pool, keys: Keys) -> None:
        self.settings = settings
        self.db = db
        self.keys = keys
        self._vapid: Vapid02 | None = None
        self.public_key = ""
        resolver = None if settings.push_allow_private else PublicResolver()
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, limit=64),
            timeout=aiohttp.ClientTimeout(total=settings.push_timeout_s),
        )

    async def start(self) -> None:
        """Load (or generate, once per deployment) the VAPID key pair."""
        fresh = await asyncio.to_thread(_new_vapid_pem)
        sealed = await st.app_secret(self.db, "vapid", self.keys.seal(fresh, "app:vapid"))
        pem = self.keys.open(sealed, "app:vapid")
        self._vapid = Vapid02.from_pem(pem.encode())
        point = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = _b64url(point)

    async def close(self) -> None:
        await self.http.close()

    async def check_endpoint(self, endpoint: str) -> None:
        """``bad_request`` for an endpoint that is not a public http(s) URL."""
        try:
            await check_target(endpoint, self.settings.push_allow_private)
        except BadRequest as exc:  # the hooks' check speaks of target_url
            raise BadRequest("endpoint" + exc.message.removeprefix("target_url")) from None

    async def send(
        self, sub: dict[str, Any], payload: dict[str, Any], topic: str | None, ttl_s: int
    ) -> PushResult:
        """Encrypt ``payload`` for the subscription ``{endpoint, keys: {p256dh, auth}}`` and
        POST it. ``topic`` lets the push service replace an undelivered message of the same
        topic (a burst reaches an offline phone as one)."""
        assert self._vapid is not None, "start() first"
        endpoint = sub["endpoint"]
        try:
            body, headers = await asyncio.to_thread(self._encode, sub, payload, ttl_s)
        except (ValueError, TypeError) as exc:  # keys that are not a P-256 point / 16 bytes
            return PushResult(400, f"subscription keys unusable: {exc}")
        if topic:
            headers["Topic"] = _b64url(topic.encode())[:32]
        try:
            async with self.http.post(endpoint, data=body, headers=headers) as resp:
                await resp.content.read(1024)
                return PushResult(resp.status, None if resp.status < 300 else f"HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return PushResult(None, f"{type(exc).__name__}: {exc}"[:300])

    def _encode(
        self, sub: dict[str, Any], payload: dict[str, Any], ttl_s: int
    ) -> tuple[bytes, dict[str, str]]:
        assert self._vapid is not None
        data = json.dumps(payload, separators=(",", ":")).encode()
        body = WebPusher(sub).encode(data, "aes128gcm")["body"]
        parts = urlsplit(sub["endpoint"])
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "sub": self.settings.vapid_subject,
            "exp": int(time.time()) + 12 * 3600,  # RFC 8292: at most 24 h ahead
        }
        headers: dict[str, str] = dict(self._vapid.sign(claims))
        headers.update(
            {
                "Content-Encoding": "aes128gcm",
                "TTL": str(ttl_s),
                "Content-Type": "application/octet-stream",
                "Urgency": "normal",
            }
        )
        return bytes(body), headers


def _new_vapid_pem() -> str:
    vapid = Vapid02()
    vapid.generate_keys()
    return bytes(vapid.private_pem()).decode()
