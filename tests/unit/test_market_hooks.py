"""REST hook target policy (models/market_hooks.py) and the dispatcher's pure parts."""

from __future__ import annotations

import pytest

from models.market_hooks import is_public_address
from services.hooks import PublicResolver, _literal_allowed, origin

REFUSED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "0.0.0.0",
    "100.64.0.1", "100.127.255.254",  # CGNAT (shared address space)
    "198.18.0.1", "192.0.2.1", "240.0.0.1", "255.255.255.255", "224.0.0.1", "239.1.2.3",
    "::1", "::", "fd00::1", "fe80::1%eth0", "fec0::1", "ff02::1", "ff0e::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::7f00:1",
    "2002:7f00:1::1", "2002:a00:1::1", "2002:6440:1::1",  # 6to4 of 127/8, 10/8, CGNAT
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45 (documentation)
    "64:ff9b::7f00:1", "64:ff9b::a00:1",  # NAT64 of loopback, private
    "not-an-ip", "",
]  # fmt: skip
ALLOWED = [
    "93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808",
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(address)


def test_logged_target_is_scheme_and_host_only() -> None:
    assert origin("https://hooks.example.com:8443/x/tok_secret?key=abc#f") == (
        "https://hooks.example.com"
    )
    assert origin("http://[::1]/a?token=t") == "http://::1"


def test_ip_literal_targets_are_judged_before_connecting() -> None:
    """An IP-literal host bypasses the resolver, so the dispatcher judges it itself."""
    assert not _literal_allowed("http://127.0.0.1:8080/x")
    assert not _literal_allowed("http://[2002:7f00:1::1]/x")
    assert not _literal_allowed("http://100.64.0.1/x")
    assert _literal_allowed("http://93.184.216.34/x")
    assert _literal_allowed("https://hooks.example.com/x")  # left to PublicResolver


async def test_public_resolver_never_answers_a_private_address() -> None:
    resolver = PublicResolver()
    try:
        with pytest.raises(OSError, match="private"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
