"""REST: JSON calls with a Bearer token, typed errors, sign-up and sign-in."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp

from hyperlocal_client.types import ApiError, SignIn
from hyperlocal_client.ws import Socket


class Api:
    """The REST API of one gateway (``base``: its origin), over a caller's aiohttp session."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base.rstrip("/")
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        key: str | None = None,
    ) -> Any:
        """``method path`` with a JSON body; the parsed answer (None for 204), else ApiError.
        ``key`` is sent as ``Idempotency-Key``."""
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as resp:
            text = await resp.text()
            data = json.loads(text) if text and resp.content_type == "application/json" else None
            if resp.status >= 400:
                error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
                raise ApiError(
                    resp.status,
                    str(error.get("code", f"http_{resp.status}")),
                    str(error.get("message", resp.reason or "")),
                    error.get("details"),
                )
            return data

    async def get(self, path: str, token: str | None = None) -> Any:
        return await self.call("GET", path, token=token)

    async def post(self, path: str, body: Any = None, token: str | None = None) -> Any:
        return await self.call("POST", path, body, token=token, key=uuid.uuid4().hex)

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

    async def connect(self, user: SignIn, *, protocol: str = "hl.json") -> Socket:
        """A websocket session of ``user``, once its hello has arrived."""
        return await Socket.open(self.http, self.base, user.access_token, protocol)


def _sign_in(email: str, body: dict[str, Any]) -> SignIn:
    user = body["user"]
    return SignIn(
        str(user["id"]),
        email,
        str(body["access_token"]),
        str(body["refresh_token"]),
        str(user.get("display_name", "")),
    )
