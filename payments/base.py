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

ChargeStatus = Literal["captured", "requires_action", "declined"]


@dataclass(frozen=True)
class Charge:
    idempotency_key: str
    amount: int
    """Minor units."""
    currency: str
    details: dict[str, Any]
    """The client's provider-specific payment details (validated by ``check``)."""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    provider_ref: str | None
    message: str = ""
    client_secret: str | None = None
    """For ``requires_action``: what the client app needs to finish (e.g. 3-D Secure)."""


class PaymentProvider(Protocol):
    name: str

    def check(self, details: dict[str, Any]) -> None:
        """Refuse malformed payment details with ``bad_request`` before anything is reserved."""

    async def charge(self, charge: Charge) -> ChargeResult:
        """Authorise and capture ``charge`` (one step)."""

    async def status(self, provider_ref: str) -> ChargeStatus | Literal["pending"]:
        """Where a payment stands now (reconciliation after a crash)."""

    async def cancel(self, provider_ref: str) -> None:
        """Void an uncaptured payment (its reservation expired)."""

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> str:
        """Refund ``amount`` of a captured payment; the provider's refund id."""

    async def close(self) -> None: ...
