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


def check_target_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) target URL, or ``bad_request``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("target_url: must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise BadRequest("target_url: credentials in the URL are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest("target_url: bad port") from None
    return parts.hostname, port


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified ranges."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
