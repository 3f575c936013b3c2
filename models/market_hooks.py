"""REST hook rules: which events exist, the retry schedule, what an answer means, which target
URLs are allowed. Pure: no I/O (tests/unit/test_market_hooks.py).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from models.errors import BadRequest

HOOK_EVENTS = ("order.created", "order.updated", "listing.low_stock", "listing.updated")

Outcome = Literal["delivered", "gone", "retry", "dead"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about base * 2^(n-1), capped."""

    base_s: float
    cap_s: float
    max_attempts: int

    def delay_s(self, attempts: int, rand: random.Random | None = None) -> float:
        """Wait before the next try after ``attempts`` failed tries ("equal jitter")."""
        full = min(self.cap_s, self.base_s * (2 ** max(0, attempts - 1)))
        r = (rand or random).random()
        return full / 2 + r * full / 2

    def outcome(self, status: int | None, attempts: int) -> Outcome:
        """What a delivery answered ``status`` (None: no answer) means after ``attempts`` tries."""
        if status is not None and 200 <= status < 300:
            return "delivered"
        if status == 410:
            return "gone"
        return "dead" if attempts >= self.max_attempts else "retry"


def check_events(events: list[str]) -> list[str]:
    if not events:
        raise BadRequest("events: give at least one event")
    unknown = [e for e in events if e not in HOOK_EVENTS]
    if unknown:
        raise BadRequest(f"events: unknown event {unknown[0]!r}; known: {', '.join(HOOK_EVENTS)}")
    return list(dict.fromkeys(events))


def is_token(value: str, max_length: int = 64) -> bool:
    """A printable ASCII id with no spaces (a hook or delivery id can be nothing else): False
    for NUL, control characters, lone surrogates and anything Postgres or a log should not get."""
    return 0 < len(value) <= max_length and all("!" <= c <= "~" for c in value)


def check_target_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) target URL, or ``bad_request``."""
    if not url.isprintable() or any(c.isspace() for c in url):  # NUL, controls, surrogates
        raise BadRequest("target_url: must be printable, without spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise BadRequest("target_url: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise BadRequest("target_url: must be an absolute http(s) URL")
    try:
        hostname.encode("idna")  # what the resolver would do: refused here, typed
    except UnicodeError:
        raise BadRequest("target_url: the host name is not valid") from None
    if parts.username or parts.password:
        raise BadRequest("target_url: credentials in the URL are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest("target_url: bad port") from None
    return hostname, port


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded(ip: IP) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through: IPv4-mapped, 6to4, Teredo (server and
    client), NAT64 well-known prefix. Empty for a plain address."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def _is_global(ip: IP) -> bool:
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback or site_local
    )


def is_public_address(address: str) -> bool:
    """True only for a globally reachable unicast address: False for loopback, private, CGNAT,
    link-local, multicast, reserved, unspecified and documentation ranges, and for an IPv6
    address that wraps such an IPv4 address (mapped, 6to4, Teredo, NAT64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    wrapped = _embedded(ip)
    if wrapped:  # the wrapper's own range says nothing: judge where it leads
        return all(_is_global(v4) for v4 in wrapped)
    return _is_global(ip)
