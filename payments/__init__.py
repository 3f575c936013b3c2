"""Payments behind one provider interface (``payments.base.PaymentProvider``).

``sandbox`` (default, no keys; test card numbers decide the outcome) and ``stripe`` (the official
SDK, PaymentIntents with idempotency keys). ``providers_from(settings)`` builds the ones this
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
    return providers
