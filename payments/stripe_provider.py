"""The Stripe provider, through the official SDK's async client (never blocking the loop).

Charges are PaymentIntents created and confirmed in one call with our payment id as the
idempotency key; refunds are Refunds keyed by our refund id. ``api_base`` points the SDK at
another host (tests run a local stand-in of the Stripe API). Webhooks are verified with the
SDK's ``Webhook.construct_event`` against the endpoint's signing secret.
"""

from __future__ import annotations

from typing import Any, Literal

import stripe

from models.errors import BadRequest, Unavailable
from payments.base import Charge, ChargeResult, ChargeStatus, RefundRefused

_STATUS: dict[str, ChargeStatus | Literal["pending"]] = {
    "succeeded": "captured",
    "requires_action": "requires_action",
    "requires_confirmation": "requires_action",
    "processing": "pending",
    "requires_capture": "authorized",
    "requires_payment_method": "declined",
    "canceled": "declined",
}


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None, webhook_secret: str | None) -> None:
        self._webhook_secret = webhook_secret
        self._http = stripe.AIOHTTPClient()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=2,
        )

    def check(self, details: dict[str, Any]) -> None:
        method = details.get("payment_method")
        if not isinstance(method, str) or not 3 <= len(method) <= 255:
            raise BadRequest("payment.payment_method: give a Stripe PaymentMethod id (pm_...)")

    def instrument(self, details: dict[str, Any]) -> str | None:
        # The PaymentMethod id: the card's own ``fingerprint`` would need a retrieve call (a
        # round trip to Stripe per checkout); a new PaymentMethod of the same card escapes it.
        return str(details["payment_method"])

    async def charge(self, charge: Charge) -> ChargeResult:
        params: dict[str, Any] = {
            "amount": charge.amount,
            "currency": charge.currency,
            "payment_method": charge.details["payment_method"],
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": charge.metadata,
        }
        if not charge.capture:  # held for review: authorise now, capture on release
            params["capture_method"] = "manual"
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": charge.idempotency_key},
            )
        except stripe.CardError as exc:
            return ChargeResult("declined", _intent_of(exc), exc.user_message or "declined")
        except stripe.InvalidRequestError as exc:
            return ChargeResult("declined", None, exc.user_message or "payment refused")
        except stripe.StripeError as exc:
            raise Unavailable(f"stripe unavailable: {type(exc).__name__}") from None
        status = _STATUS.get(intent.status, "pending")
        if status == "pending":
            status = "requires_action"
        return ChargeResult(status, intent.id, client_secret=intent.client_secret)

    async def capture(self, provider_ref: str, amount: int, idempotency_key: str) -> ChargeResult:
        try:
            intent = await self._client.v1.payment_intents.capture_async(
                provider_ref, {"amount_to_capture": amount}, {"idempotency_key": idempotency_key}
            )
        except stripe.InvalidRequestError as exc:  # not capturable: voided, lapsed (7 days)
            return ChargeResult("declined", provider_ref, exc.user_message or "not capturable")
        except stripe.StripeError as exc:
            raise Unavailable(f"stripe unavailable: {type(exc).__name__}") from None
        if intent.status == "succeeded":
            return ChargeResult("captured", intent.id)
        return ChargeResult("declined", intent.id, f"capture left it {intent.status}")

    async def status(self, provider_ref: str) -> ChargeStatus | Literal["pending"]:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(provider_ref)
        except stripe.StripeError as exc:
            raise Unavailable(f"stripe unavailable: {type(exc).__name__}") from None
        return _STATUS.get(intent.status, "pending")

    async def cancel(self, provider_ref: str) -> bool:
        try:
            await self._client.v1.payment_intents.cancel_async(provider_ref)
        except stripe.InvalidRequestError:
            return False  # not cancelable now (succeeded meanwhile, or already canceled)
        except stripe.StripeError as exc:
            raise Unavailable(f"stripe unavailable: {type(exc).__name__}") from None
        return True

    async def lookup(self, payment_id: str, group_id: str) -> str | None:
        """By our ``group_id`` metadata, through Stripe's search. Search is eventually
        consistent (indexed within about a minute); the sweeper asks only once the
        reservation has expired (``reservation_ttl_s``, default 15 min), and a PaymentIntent
        it still misses is caught by its webhook (``_payment_of`` attaches it by metadata; a
        capture for an expired order is refunded)."""
        try:
            found = await self._client.v1.payment_intents.search_async(
                {"query": f"metadata['group_id']:'{group_id}'", "limit": 10}
            )
        except stripe.StripeError as exc:
            raise Unavailable(f"stripe unavailable: {type(exc).__name__}") from None
        for intent in found.data:
            return str(intent.id)
        return None

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> str:
        try:
            refund = await self._client.v1.refunds.create_async(
                # the key comes back in the refund's events: ours, never mirrored as Stripe's
                {
                    "payment_intent": provider_ref,
                    "amount": amount,
                    "metadata": {"hl_refund": idempotency_key},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:  # permanent: the same request fails again
            raise RefundRefused(
                f"stripe refused the refund: {exc.code or exc.user_message}"
            ) from None
        except stripe.StripeError as exc:
            raise Unavailable(f"stripe refund failed: {type(exc).__name__}") from None
        return str(refund.id)

    def verify_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The verified event as plain data, or ``bad_request`` (bad signature or body)."""
        if not self._webhook_secret:
            raise BadRequest("stripe webhooks are not configured")
        try:
            event = stripe.Webhook.construct_event(payload, signature, self._webhook_secret)
        except stripe.SignatureVerificationError:
            raise BadRequest("Stripe-Signature does not verify") from None
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("webhook body is not a Stripe event") from None
        return event.to_dict()

    async def close(self) -> None:
        await self._http.close_async()


def _intent_of(exc: stripe.StripeError) -> str | None:
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    intent = (body.get("error") or {}).get("payment_intent") or {}
    return intent.get("id") if isinstance(intent, dict) else None
