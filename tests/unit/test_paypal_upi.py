"""The pure parts of the PayPal and UPI providers: amounts on the wire, PayPal's signed
message and certificate checks, the UPI intent URI, its QR code, Razorpay's signature."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import zlib
from urllib.parse import parse_qsl, urlsplit

import pytest
import segno
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from models.errors import BadRequest
from payments.amounts import decimal_amount, minor_units
from payments.paypal_webhooks import check_cert_url, signed_message, verify_signature
from payments.upi import VPA, UpiProvider, intent_uri, qr_svg, signature_of


def test_amounts_by_the_currency_exponent() -> None:
    assert decimal_amount(1250, "eur") == "12.50"
    assert decimal_amount(5, "INR") == "0.05"
    assert decimal_amount(1200, "JPY") == "1200"
    assert minor_units("12.5", "EUR") == 1250 and minor_units("1200", "jpy") == 1200
    for bad in ("12.345", "-1", "1e3", "abc"):
        with pytest.raises(ValueError):
            minor_units(bad, "EUR")
    with pytest.raises(ValueError):
        decimal_amount(-1, "EUR")


def test_paypal_signs_ids_time_webhook_and_the_body_crc() -> None:
    body = b'{"id":"WH-1"}'
    crc = zlib.crc32(body) & 0xFFFFFFFF
    assert signed_message("t-1", "2026-12-01T00:00:00Z", "WH-ID", body) == (
        f"t-1|2026-12-01T00:00:00Z|WH-ID|{crc}".encode()
    )


def test_cert_url_must_be_https_on_an_allowed_host() -> None:
    hosts = ("api.paypal.com", "127.0.0.1")
    assert check_cert_url("https://api.paypal.com/v1/notifications/certs/C", hosts)
    assert check_cert_url("http://127.0.0.1:9/certs/C", hosts)  # loopback stand-in only
    for bad in (
        "http://api.paypal.com/certs/C",  # not https
        "https://api.paypal.com.evil.example/certs/C",
        "https://evil.example/certs/C",
        "ftp://api.paypal.com/c",
        "",
    ):
        with pytest.raises(BadRequest):
            check_cert_url(bad, hosts)


def _cert(days: int = 30) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paypal test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert


def test_signature_verifies_with_the_cert_and_nothing_else() -> None:
    key, cert = _cert()
    message = signed_message("t", "now", "WH", b"{}")
    sig = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    assert verify_signature(cert, message, sig)
    assert not verify_signature(cert, message + b"x", sig)
    assert not verify_signature(cert, message, "not base64!")
    _, other = _cert()
    assert not verify_signature(other, message, sig)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert not verify_signature(cert, message, sig, now=later)  # the certificate has expired


def test_upi_intent_uri_per_npci() -> None:
    uri = intent_uri("shop@razorpay", "Corner Shop & Co", 24950, "order_ABC", "Order 1")
    parts = urlsplit(uri)
    assert uri.startswith("upi://pay?pa=shop@razorpay&pn=Corner%20Shop%20%26%20Co&am=249.50")
    assert dict(parse_qsl(parts.query)) == {
        "pa": "shop@razorpay", "pn": "Corner Shop & Co", "am": "249.50", "cu": "INR",
        "tr": "order_ABC", "tn": "Order 1",
    }  # fmt: skip


def test_qr_svg_encodes_the_uri() -> None:
    uri = intent_uri("shop@razorpay", "Shop", 100, "order_X", "n")
    svg = qr_svg(uri)
    assert svg.startswith("<svg") and "</svg>" in svg
    assert segno.make(uri, error="m", micro=False).svg_inline(scale=4, border=2) == svg


def test_vpa_and_razorpay_signature() -> None:
    assert VPA.fullmatch("gaurav.kumar@okhdfcbank") and VPA.fullmatch("a1-b_c@upi")
    for bad in ("no-at", "@bank", "x@", "a b@bank", "x@1bank"):
        assert not VPA.fullmatch(bad), bad
    provider = UpiProvider("k", "s", "http://127.0.0.1:9", webhook_secret="w",
                           payee_vpa="shop@razorpay", payee_name="Shop", timeout_s=1)  # fmt: skip
    provider.check({"provider": "upi"})
    provider.check({"provider": "upi", "vpa": "buyer@okbank"})
    with pytest.raises(BadRequest):
        provider.check({"provider": "upi", "vpa": "not a vpa"})
    with pytest.raises(BadRequest):
        provider.check({"provider": "upi", "vpa": 7})
    assert provider.instrument({"vpa": "Buyer@OKBank"}) == "buyer@okbank"
    body = b'{"event":"payment.captured"}'
    assert signature_of(body, "secret") == hmac.new(b"secret", body, hashlib.sha256).hexdigest()
