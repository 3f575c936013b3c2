"""The payment provider interface: what checkout, refunds and reconciliation need of a PSP.

Every call that moves money carries an idempotency key chosen by us and stored before the call
(the payment id, the refund id), so a retry after a crash or a timeout cannot charge or refund
twice. Providers raise ``Unavailable`` when the PSP cannot be reached (retry later, same key) and
``BadRequest`` when the client's payment details are malformed; a refused card is not an
exception but a ``declined`` result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from models.errors import Conflict

ChargeStatus = Literal["captured", "authorized", "requires_action", "declined"]
"""``authorized``: the money is held, not taken (a ``Charge`` with ``capture`` False)."""


class RefundRefused(Conflict):
    """The provider refused a refund for good (already refunded, more than was captured...):
    retrying with the same key cannot succeed; the refund is recorded ``failed``."""


@dataclass(frozen=True)
class Charge:
    idempotency_key: str
    amount: int
    """Minor units."""
    currency: str
    details: dict[str, Any]
    """The client's provider-specific payment details (validated by ``check``)."""
    metadata: dict[str, str] = field(default_factory=dict)
    capture: bool = True
    """False: authorise only (a checkout held for review); ``capture`` takes it later."""


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    provider_ref: str | None
    message: str = ""
    client_secret: str | None = None
    """For ``requires_action``: what the client app needs to finish (e.g. 3-D Secure)."""
    action: dict[str, str] | None = None
    """For ``requires_action`` by redirect or scan: what the client shows the buyer, merged
    into the reply's ``payment`` (PayPal's ``approve_url``; UPI's ``upi_uri`` and ``qr_svg``)."""


class PaymentProvider(Protocol):
    name: str

    def check(self, details: dict[str, Any]) -> None:
        """Refuse malformed payment details with ``bad_request`` before anything is reserved."""

    def instrument(self, details: dict[str, Any]) -> str | None:
        """What identifies the payment instrument of (checked) ``details`` (the fraud rules
        count by a digest of it, models/risk.py); None when nothing does."""

    async def charge(self, charge: Charge) -> ChargeResult:
        """Authorise and capture ``charge`` in one step, or (``capture`` False) authorise it
        only: ``authorized``."""

    async def capture(self, provider_ref: str, amount: int, idempotency_key: str) -> ChargeResult:
        """Capture an ``authorized`` payment in full: ``captured`` (its reference may be a new
        one), or ``declined`` when the authorisation is gone (expired, voided)."""

    async def status(self, provider_ref: str) -> ChargeStatus | Literal["pending"]:
        """Where a payment stands now (reconciliation after a crash)."""

    async def cancel(self, provider_ref: str) -> bool:
        """Void an uncaptured payment (its reservation expired); False when the provider
        refused because it is no longer voidable (e.g. the customer finished 3-D Secure and it
        was captured meanwhile): the caller must then ask ``status`` again, not assume void."""

    async def lookup(self, payment_id: str, group_id: str) -> str | None:
        """The provider reference of a charge whose answer we never stored (a crash or a
        timeout during ``charge``), found by our ids; None when the provider has no such charge.

        Not a re-issue of the charge with the same idempotency key: we do not keep the client's
        payment details (a re-issue needs identical parameters, or Stripe refuses the key),
        Stripe forgets keys after 24 h, and if the first request never arrived a re-issue would
        newly charge the customer for a reservation that has already expired.
        """

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> str:
        """Refund ``amount`` of a captured payment; the provider's refund id. Raises
        ``RefundRefused`` when the provider refuses for good, ``Unavailable`` to retry."""

    async def close(self) -> None: ...
