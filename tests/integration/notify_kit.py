"""Real receivers for notification tests: an SMTP server (aiosmtpd, on loopback, in its own
thread) that keeps what arrived, and a Web Push service stand-in that checks the VAPID JWT
and decrypts each message with the subscription's private key (RFC 8291 / RFC 8292)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import http_ece
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class MailSink:
    """An SMTP server on 127.0.0.1. ``fail_next(address, n, code)`` answers the next ``n``
    messages to ``address`` with ``code``; ``refuse(address)`` answers 550 for it for good."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._fail: dict[str, list[int]] = {}
        self._refused: set[str] = set()
        with socket.socket() as probe:  # a free port (the controller checks it by connecting)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def fail_next(self, address: str, count: int, code: int = 451) -> None:
        """Answer the next ``count`` messages to ``address`` with ``code``."""
        with self._lock:
            self._fail.setdefault(address.lower(), []).extend([code] * count)

    def refuse(self, address: str) -> None:
        with self._lock:
            self._refused.add(address.lower())

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.lower() in self._refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                queue = self._fail.get(rcpt.lower())
                if queue:
                    return f"{queue.pop(0)} try again later"
            msg = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append(msg)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    async def wait_for(
        self, address: str, count: int = 1, subject: str | None = None, timeout: float = 10
    ) -> list[EmailMessage]:
        """The emails to ``address`` (with ``subject``) once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            got = [m for m in self.to(address) if subject is None or m["Subject"] == subject]
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} email(s) to {address} expected, got {len(got)}")
            await asyncio.sleep(0.05)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """A browser's push subscription: its keys, and what its service received."""

    id: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    """Statuses to answer next (then 201)."""

    def subscription(self) -> dict[str, Any]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": _b64(point), "auth": _b64(self.auth)}}


class PushService:
    """A push service on loopback: every POST must carry a valid VAPID JWT for this origin
    signed by ``vapid_key`` (when set), and a body that decrypts with the device's keys."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.vapid_key: str | None = None
        self.rejected: list[str] = []
        app = web.Application()
        app.router.add_post("/push/{device}", self._receive)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    async def start(self) -> None:
        await self.server.start_server()

    async def close(self) -> None:
        await self.server.close()

    def device(self) -> Device:
        dev = Device(os.urandom(8).hex(), ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        dev.endpoint = str(self.server.make_url(f"/push/{dev.id}"))
        self.devices[dev.id] = dev
        return dev

    def _check_vapid(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "vapid":
            return "no vapid authorization"
        parts = dict(p.split("=", 1) for p in rest.split(","))
        key = parts.get("k", "")
        if self.vapid_key is not None and key != self.vapid_key:
            return "not the deployment's VAPID key"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(key))
        origin = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        try:
            claims = jwt.decode(parts.get("t", ""), public, algorithms=["ES256"], audience=origin)
        except jwt.PyJWTError as exc:
            return f"bad VAPID JWT: {exc}"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            return "VAPID sub missing"
        if claims["exp"] > time.time() + 86400:
            return "VAPID exp more than 24 h ahead"
        return None

    async def _receive(self, request: web.Request) -> web.Response:
        dev = self.devices.get(request.match_info["device"])
        if dev is None:
            return web.Response(status=404)
        problem = self._check_vapid(request)
        if problem is None and request.headers.get("Content-Encoding") != "aes128gcm":
            problem = "not aes128gcm"
        if problem is not None:
            self.rejected.append(problem)
            return web.Response(status=401, text=problem)
        if dev.answers:
            return web.Response(status=dev.answers.pop(0))
        body = await request.read()
        plain = http_ece.decrypt(
            body, private_key=dev.private_key, auth_secret=dev.auth, version="aes128gcm"
        )
        dev.received.append(json.loads(plain))
        dev.headers.append(dict(request.headers))
        return web.Response(status=201)


async def eventually(check: Any, timeout: float = 10, every: float = 0.05) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: last {value!r}")
        await asyncio.sleep(every)
