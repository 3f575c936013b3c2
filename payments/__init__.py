"""Payments behind one provider interface (``payments.base.PaymentProvider``).

``sandbox`` (default, no keys; test card numbers decide the outcome), ``stripe`` (the official
SDK, PaymentIntents with idempotency keys), ``paypal`` (Orders v2, payments/paypal.py) and
``upi`` (through Razorpay, payments/upi.py). ``providers_from(settings)`` builds the ones this
deployment offers; the gateway picks one per checkout by the client's ``payment.provider``.
"""

from __future__ import annotations

from cluster.config import Settings
from payments.base import Charge, ChargeResult, PaymentProvider
from payments.sandbox import SandboxProvider

__all__ = ["Charge", "ChargeResult", "PaymentProvider", "providers_from"]


def providers_from(settings: Settings) -> dict[str, PaymentProvider]:
    providers: dict[str, PaymentProvider] = {}
    if settings.sandbox_payments:
        providers["sandbox"] = SandboxProvider()
    if settings.stripe_api_key:
        from payments.stripe_provider import StripeProvider

        providers["stripe"] = StripeProvider(
            settings.stripe_api_key, settings.stripe_api_base, settings.stripe_webhook_secret
        )
    if settings.paypal_client_id and settings.paypal_client_secret:
        providers["paypal"] = _paypal(settings)
    if settings.upi_key_id and settings.upi_key_secret:
        from payments.upi import UpiProvider

        providers["upi"] = UpiProvider(
            settings.upi_key_id,
            settings.upi_key_secret,
            settings.upi_api_base,
            webhook_secret=settings.upi_webhook_secret,
            payee_vpa=settings.upi_payee_vpa,
            payee_name=settings.upi_payee_name,
            timeout_s=settings.upi_timeout_s,
        )
    return providers


def _paypal(settings: Settings) -> PaymentProvider:
    from payments.paypal import PayPalProvider

    assert settings.paypal_client_id and settings.paypal_client_secret
    origin = (settings.public_url or "http://localhost:8080").rstrip("/")
    return PayPalProvider(
        settings.paypal_client_id,
        settings.paypal_client_secret,
        settings.paypal_api_base,
        webhook_id=settings.paypal_webhook_id,
        cert_hosts=settings.paypal_cert_hosts,
        return_url=settings.paypal_return_url or f"{origin}/?paypal=return",
        cancel_url=f"{origin}/?paypal=cancel",
        timeout_s=settings.paypal_timeout_s,
    )
