"""PayPal webhook verification, per PayPal's documented self-verification scheme.

PayPal signs ``<transmission id>|<transmission time>|<webhook id>|<CRC32 of the raw body, as an
unsigned decimal>`` with RSA-SHA256 (``PAYPAL-AUTH-ALGO: SHA256withRSA``) and names the
certificate whose key verifies it in ``PAYPAL-CERT-URL``. We verify locally (no call to
``/v1/notifications/verify-webhook-signature`` per event):

- the cert URL must be ``https`` on one of ``paypal_cert_hosts`` (PayPal's API hosts by
  default), so the certificate's origin is authenticated by TLS to PayPal's own host; plain
  ``http`` is taken only from a loopback host that is itself listed (the tests' stand-in);
- the certificate must be within its validity period; it is cached by URL (PayPal rotates
  certificates by publishing a new URL), at most ``_CACHE`` of them;
- the webhook id is ours (``paypal_webhook_id``): an event signed for another listener fails.

Anything that does not verify is ``bad_request`` and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from models.errors import BadRequest, NotFound, Unauthorized
from payments.http import ProviderHttp

HEADERS = (
    "PAYPAL-TRANSMISSION-ID",
    "PAYPAL-TRANSMISSION-TIME",
    "PAYPAL-TRANSMISSION-SIG",
    "PAYPAL-CERT-URL",
    "PAYPAL-AUTH-ALGO",
)
_CACHE = 16
_CERT_MAX_BYTES = 64 * 1024
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str,
                   body: bytes) -> bytes:  # fmt: skip
    """What PayPal signs for one delivery."""
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()


def check_cert_url(url: str, hosts: tuple[str, ...]) -> str:
    """``url`` if it may name PayPal's certificate, else ``bad_request``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host not in hosts:
        raise BadRequest("PAYPAL-CERT-URL is not on an allowed PayPal host")
    if parts.scheme != "https" and not (parts.scheme == "http" and host in _LOOPBACK):
        raise BadRequest("PAYPAL-CERT-URL must be https")
    return url


def verify_signature(cert: x509.Certificate, message: bytes, signature_b64: str,
                     now: dt.datetime | None = None) -> bool:  # fmt: skip
    """Whether ``signature_b64`` is ``cert``'s RSA-SHA256 (PKCS#1 v1.5) signature of
    ``message`` while ``cert`` is valid."""
    now = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return False
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class PayPalWebhooks:
    """Verifies PayPal's deliveries to our webhook id; owns the certificate cache."""

    def __init__(self, http: ProviderHttp, webhook_id: str | None, cert_hosts: tuple[str, ...]):
        self._http = http
        self._webhook_id = webhook_id
        self._hosts = tuple(h.lower() for h in cert_hosts)
        self._certs: dict[str, x509.Certificate] = {}

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """The verified event as plain data; ``unauthorized`` without the signature headers,
        ``bad_request`` when they do not verify, ``not_found`` when not configured."""
        if not self._webhook_id:
            raise NotFound("paypal webhooks are not configured")
        tid, when, sig, cert_url, algo = (headers.get(h, "") for h in HEADERS)
        if algo != "SHA256withRSA":
            raise BadRequest("PAYPAL-AUTH-ALGO must be SHA256withRSA")
        cert = await self._cert(check_cert_url(cert_url, self._hosts))
        if not verify_signature(cert, signed_message(tid, when, self._webhook_id, body), sig):
            raise BadRequest("PAYPAL-TRANSMISSION-SIG does not verify")
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("webhook body is not a PayPal event") from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise BadRequest("webhook body is not a PayPal event")
        return event

    async def _cert(self, url: str) -> x509.Certificate:
        cert = self._certs.get(url)
        if cert is None:
            pem = await self._http.get_bytes(url, _CERT_MAX_BYTES)
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise BadRequest("PAYPAL-CERT-URL does not hold a PEM certificate") from None
            if len(self._certs) >= _CACHE:
                self._certs.pop(next(iter(self._certs)))
            self._certs[url] = cert
        return cert


def require_headers(headers: Mapping[str, str]) -> None:
    """``unauthorized`` unless every signature header is there (before anything else)."""
    missing = [h for h in HEADERS if not headers.get(h)]
    if missing:
        raise Unauthorized(f"missing {', '.join(missing)}")
