"""Stripe Connect transfers: a vendor's payout sent to its connected account (``acct_...``).

One call, ``POST /v1/transfers`` through the official SDK's async client, keyed by our payout
id (a retry after a timeout is the same transfer at Stripe). Used by services/payouts.py;
``api_base`` points the SDK at another host (tests run a local stand-in).
"""

from __future__ import annotations

import stripe

from models.errors import Conflict, Unavailable


class TransferRefused(Conflict):
    """Stripe refused the transfer for good (e.g. no such account): the payout fails and its
    money goes back to the vendor's available balance."""


class StripeTransfers:
    """Transfers from the platform's Stripe balance to connected accounts."""

    def __init__(self, api_key: str, api_base: str | None) -> None:
        self._http = stripe.AIOHTTPClient()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=2,
        )

    async def transfer(self, destination: str, amount: int, currency: str, key: str) -> str:
        """Send ``amount`` to ``destination``; the transfer's id. ``TransferRefused`` for good,
        ``Unavailable`` when it may work later (the payout stays pending, retried)."""
        try:
            made = await self._client.v1.transfers.create_async(
                {"amount": amount, "currency": currency, "destination": destination,
                 "metadata": {"payout_id": key}},
                {"idempotency_key": f"payout-{key}"},
            )  # fmt: skip
        except stripe.InvalidRequestError as exc:  # permanent: the same request fails again
            raise TransferRefused(f"stripe refused the transfer: {exc.user_message}") from None
        except stripe.StripeError as exc:
            raise Unavailable(f"stripe transfer failed: {type(exc).__name__}") from None
        return str(made.id)

    async def close(self) -> None:
        await self._http.close_async()
