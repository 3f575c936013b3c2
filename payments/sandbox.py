"""The sandbox provider: no keys, no network; the card number decides (PROTOCOL.md).

- ``4242424242424242`` approves (authorised and captured at once);
- ``4000000000000002`` is declined (``payment_failed``);
- ``4000000000003220`` needs customer action (3-D Secure): the orders stay ``pending_payment``
  until their reservation expires *(extension, for testing expiry)*.

The test cards are everyone's, so they identify no one: the fraud rules' card signals count by
an optional ``card_id`` (any text up to 64 characters: a stand-in for a real card's
fingerprint), and see no instrument without it.

A charge that only authorises (a held checkout) answers ``authorized``; its capture answers
``captured`` under a new reference, so the reference alone still tells the state.

The outcome is encoded in the provider reference, so ``status`` and refunds need no state.
"""

from __future__ import annotations

from typing import Any, Literal

from models.errors import BadRequest
from payments.base import Charge, ChargeResult, ChargeStatus

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"
ACTION = "4000000000003220"
_OUTCOMES: dict[str, ChargeStatus] = {
    APPROVE: "captured",
    DECLINE: "declined",
    ACTION: "requires_action",
}


class SandboxProvider:
    name = "sandbox"

    def check(self, details: dict[str, Any]) -> None:
        card = details.get("card")
        if not isinstance(card, str) or card.replace(" ", "") not in _OUTCOMES:
            raise BadRequest(
                f"payment.card: the sandbox takes the test cards {', '.join(_OUTCOMES)}"
            )
        card_id = details.get("card_id")
        if card_id is not None and (not isinstance(card_id, str) or not 1 <= len(card_id) <= 64):
            raise BadRequest("payment.card_id: 1 to 64 characters")

    def instrument(self, details: dict[str, Any]) -> str | None:
        card_id = details.get("card_id")
        return card_id if isinstance(card_id, str) and card_id else None

    async def charge(self, charge: Charge) -> ChargeResult:
        outcome = _OUTCOMES[str(charge.details["card"]).replace(" ", "")]
        if outcome == "captured" and not charge.capture:
            outcome = "authorized"
        ref = f"sbx_{outcome}_{charge.idempotency_key}"
        if outcome == "declined":
            return ChargeResult("declined", ref, "your card was declined")
        secret = f"{ref}_secret" if outcome == "requires_action" else None
        return ChargeResult(outcome, ref, client_secret=secret)

    async def capture(self, provider_ref: str, amount: int, idempotency_key: str) -> ChargeResult:
        prefix = "sbx_authorized_"
        if provider_ref.startswith("sbx_captured_"):
            return ChargeResult("captured", provider_ref)  # a repeat: captured already
        if not provider_ref.startswith(prefix):
            return ChargeResult("declined", provider_ref, "nothing authorised to capture")
        return ChargeResult("captured", f"sbx_captured_{provider_ref[len(prefix) :]}")

    async def status(self, provider_ref: str) -> ChargeStatus | Literal["pending"]:
        for outcome in ("captured", "authorized", "declined", "requires_action"):
            if provider_ref.startswith(f"sbx_{outcome}_"):
                return outcome
        return "pending"

    async def cancel(self, provider_ref: str) -> bool:
        return not provider_ref.startswith("sbx_captured_")

    async def lookup(self, payment_id: str, group_id: str) -> str | None:
        # The sandbox answers at once, without I/O: a payment with no stored reference never
        # reached it (a crash before the call), so there is no charge to find.
        return None

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> str:
        return f"sbx_re_{idempotency_key}"

    async def close(self) -> None:
        return None
