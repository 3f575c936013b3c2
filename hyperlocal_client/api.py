"""REST: JSON calls with a Bearer token, typed errors, sign-up and sign-in."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp

from hyperlocal_client.types import ApiError, SignIn
from hyperlocal_client.ws import Socket


class Api:
    """The REST API of one gateway (``base``: its origin), over a caller's aiohttp session.

    ``retries``: how many times a call answered ``429`` or ``5xx`` (a rate limit, a shard
    restarting) is sent again, after 0.5 s, 1 s, ... (a ``Retry-After`` answer's seconds when
    it gives one, at most 5 s), with the same ``Idempotency-Key``; 0 (the default) raises at
    once. Every error answer is an ``ApiError`` with the server's code."""

    def __init__(self, base: str, http: aiohttp.ClientSession, *, retries: int = 0) -> None:
        self.base = base.rstrip("/")
        self.http = http
        self.retries = retries

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        key: str | None = None,
        data: Any = None,
    ) -> Any:
        """``method path`` with a JSON ``body`` (or ``data`` as it is: a multipart form...);
        the parsed answer (None for 204 or a non-JSON one), else ApiError. ``key`` is sent as
        ``Idempotency-Key``."""
        for attempt in range(self.retries + 1):
            try:
                return await self._once(method, path, body, token, key, data)
            except ApiError as exc:
                if attempt == self.retries or not (exc.status == 429 or exc.status >= 500):
                    raise
                wait = exc.retry_after_s if exc.retry_after_s is not None else 0.5 * (attempt + 1)
            await asyncio.sleep(min(wait, 5.0))
        raise AssertionError("unreachable")

    async def _once(
        self, method: str, path: str, body: Any, token: str | None, key: str | None, data: Any
    ) -> Any:
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        kwargs: dict[str, Any] = {"data": data} if data is not None else {}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as resp:
            text = await resp.text()
            answer = json.loads(text) if text and resp.content_type == "application/json" else None
            if resp.status >= 400:
                raise _error(resp, answer)
            return answer

    async def get(self, path: str, token: str | None = None) -> Any:
        return await self.call("GET", path, token=token)

    async def text(self, path: str, token: str | None = None) -> str:
        """A non-JSON answer's text (``/metrics``...), else ApiError."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.base + path, headers=headers) as resp:
            text = await resp.text()
            if resp.status >= 400:
                is_json = resp.content_type == "application/json" and text
                raise _error(resp, json.loads(text) if is_json else None)
            return text

    async def post(self, path: str, body: Any = None, token: str | None = None) -> Any:
        """A POST with a fresh ``Idempotency-Key`` (kept across this call's retries)."""
        return await self.call("POST", path, body, token=token, key=uuid.uuid4().hex)

    async def put(self, path: str, body: Any, token: str | None = None) -> Any:
        return await self.call("PUT", path, body, token=token, key=uuid.uuid4().hex)

    async def patch(self, path: str, body: Any, token: str | None = None) -> Any:
        return await self.call("PATCH", path, body, token=token, key=uuid.uuid4().hex)

    async def delete(self, path: str, token: str | None = None) -> Any:
        return await self.call("DELETE", path, token=token, key=uuid.uuid4().hex)

    async def upload(
        self,
        data: bytes,
        token: str | None,
        *,
        filename: str = "photo.jpg",
        content_type: str = "image/jpeg",
    ) -> dict[str, Any]:
        """A photo through ``POST /api/v1/media`` (multipart, one ``file``): ``{media}``;
        sent once (a form is read as it is sent: ``retries`` do not apply)."""
        form = aiohttp.FormData()
        form.add_field("file", data, filename=filename, content_type=content_type)
        return dict(await self._once("POST", "/api/v1/media", None, token, None, form))

    async def signup(self, email: str, password: str, display_name: str) -> SignIn:
        body = {"email": email, "password": password, "display_name": display_name}
        return _sign_in(email, await self.call("POST", "/api/v1/auth/signup", body))

    async def login(self, email: str, password: str, otp: str | None = None) -> SignIn:
        """``ApiError`` with code ``otp_required`` when the account has two-factor on."""
        body = {"email": email, "password": password, **({"otp": otp} if otp else {})}
        return _sign_in(email, await self.call("POST", "/api/v1/auth/login", body))

    async def become_vendor(
        self, user: SignIn, name: str, category: str, lat: float, lng: float
    ) -> dict[str, Any]:
        """The caller's vendor profile (``POST /api/v1/vendors``)."""
        body = {"name": name, "category": category, "lat": lat, "lng": lng}
        answer = await self.post("/api/v1/vendors", body, user.access_token)
        return dict(answer["vendor"])

    async def create_listing(self, user: SignIn, **fields: Any) -> dict[str, Any]:
        """A listing of the caller's shop (``POST /api/v1/vendor/listings``)."""
        answer = await self.post("/api/v1/vendor/listings", fields, user.access_token)
        return dict(answer["listing"])

    async def connect(self, user: SignIn, *, protocol: str = "hl.json", **options: Any) -> Socket:
        """A websocket session of ``user``, once its hello has arrived (``options``: as
        ``hyperlocal_client.ws.open_ws``)."""
        return await Socket.open(self.http, self.base, user.access_token, protocol, **options)


def _error(resp: aiohttp.ClientResponse, answer: Any) -> ApiError:
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    retry = resp.headers.get("Retry-After", "")
    return ApiError(
        resp.status,
        str(error.get("code", f"http_{resp.status}")),
        str(error.get("message", resp.reason or "")),
        error.get("details"),
        retry_after_s=float(retry) if retry.isdigit() else None,
    )


def _sign_in(email: str, body: dict[str, Any]) -> SignIn:
    user = body["user"]
    return SignIn(
        str(user["id"]),
        email,
        str(body["access_token"]),
        str(body["refresh_token"]),
        str(user.get("display_name", "")),
    )
