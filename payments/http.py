"""The one HTTP client of the REST providers (PayPal, Razorpay): aiohttp, never blocking the
loop, every call bounded by the provider's timeout.

A provider that cannot be reached, times out or answers 5xx / 429 is ``Unavailable`` (retry
later with the same idempotency key); any other answer is returned as ``(status, body)`` for
the provider to read (a 4xx is the provider's verdict on the request, not an outage).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from models.errors import Unavailable


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value of HTTP Basic credentials (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ProviderHttp:
    """One lazily opened ``aiohttp.ClientSession`` per provider (opened in the running loop on
    first use, closed by ``close``)."""

    def __init__(self, name: str, base: str, timeout_s: float) -> None:
        self.name = name
        self.base = base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        auth: str | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """``(status, JSON body)`` of a 2xx-4xx answer (the body ``{}`` when it is not JSON)."""
        url = path if path.startswith(("http://", "https://")) else self.base + path
        if auth is not None:
            headers = {**(headers or {}), "Authorization": auth}
        try:
            async with self.session().request(
                method, url, headers=headers, json=json_body, data=form, params=params
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"{self.name} unreachable: {type(exc).__name__}") from None
        if status >= 500 or status == 429:
            raise Unavailable(f"{self.name} answered {status}")
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = {}
        return status, body if isinstance(body, dict) else {"items": body}

    async def get_bytes(self, url: str, limit: int) -> bytes:
        """A small document (a certificate) of at most ``limit`` bytes, or ``Unavailable``."""
        try:
            async with self.session().get(url) as resp:
                if resp.status != 200:
                    raise Unavailable(f"{self.name}: {url} answered {resp.status}")
                data = await resp.content.read(limit + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"{self.name} unreachable: {type(exc).__name__}") from None
        if len(data) > limit:
            raise Unavailable(f"{self.name}: {url} is larger than {limit} bytes")
        return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
