"""UPI through Razorpay (a payment service provider): orders and payments over its REST API,
through aiohttp (payments/http.py; Razorpay's Python SDK is synchronous ``requests``, which
would block the event loop), and its HMAC-signed webhooks.

- **charge**: a Razorpay order for the amount (INR only: UPI moves rupees) whose ``receipt``
  is our payment id. Razorpay does not refuse a second order with the same receipt, so the
  receipt is looked up first (``GET /v1/orders?receipt=``) and a retry after a timeout finds
  the order the first attempt made. The answer is ``requires_action`` with the UPI intent URI
  per NPCI's format (``upi://pay?pa=&pn=&am=&cu=INR&tr=<order id>&tn=``) and its QR code as
  SVG; given the buyer's ``vpa``, Razorpay also sends a collect request to it (once: not when
  the order already has a payment).
- the money arrives when the buyer pays; Razorpay's webhook (``payment.captured``,
  ``order.paid``) says so (services/provider_events.py).
- **capture** (a held checkout released; its order was made for manual capture) captures the
  authorised payment; **refund** refunds the captured one, keyed by our refund id
  (``X-Refund-Idempotency`` and ``receipt``).
- **cancel**: Razorpay cannot void; nothing is taken unless the buyer pays, and an authorised
  payment never captured is returned to the buyer by Razorpay itself. So a payment is
  "voided" unless one is captured.

Our ``provider_ref`` is the Razorpay order id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from typing import Any, Literal
from urllib.parse import quote

import segno

from models.errors import BadRequest, Unavailable
from payments.amounts import decimal_amount
from payments.base import Charge, ChargeResult, ChargeStatus, RefundRefused
from payments.http import ProviderHttp, basic_auth

VPA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}@[A-Za-z][A-Za-z0-9]{1,63}")
"""A virtual payment address, ``name@handle`` (NPCI: alphanumerics, dot, hyphen, underscore)."""


def intent_uri(payee_vpa: str, payee_name: str, amount: int, ref: str, note: str) -> str:
    """The UPI intent URI (NPCI's "UPI Linking Specification"): payee address and name,
    amount in rupees with two decimals, currency INR, our transaction reference and a note,
    each percent-encoded."""
    params = (
        ("pa", payee_vpa),
        ("pn", payee_name),
        ("am", decimal_amount(amount, "INR")),
        ("cu", "INR"),
        ("tr", ref),
        ("tn", note),
    )
    return "upi://pay?" + "&".join(f"{k}={quote(v, safe='@.-_')}" for k, v in params)


def qr_svg(uri: str) -> str:
    """``uri`` as a QR code, an inline SVG document (error correction M)."""
    return str(segno.make(uri, error="m", micro=False).svg_inline(scale=4, border=2))


def signature_of(body: bytes, secret: str) -> str:
    """Razorpay's webhook signature: hex HMAC-SHA256 of the raw body with the webhook secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class UpiProvider:
    """UPI payments through Razorpay; owns its HTTP session."""

    name = "upi"

    def __init__(
        self,
        key_id: str,
        key_secret: str,
        api_base: str,
        *,
        webhook_secret: str | None,
        payee_vpa: str,
        payee_name: str,
        timeout_s: float,
    ) -> None:
        self._http = ProviderHttp("razorpay", api_base, timeout_s)
        self._auth = basic_auth(key_id, key_secret)
        self.webhook_secret = webhook_secret
        self._payee = (payee_vpa, payee_name)

    def check(self, details: dict[str, Any]) -> None:
        vpa = details.get("vpa")
        if vpa is not None and (not isinstance(vpa, str) or not VPA.fullmatch(vpa)):
            raise BadRequest("payment.vpa: a UPI address, name@handle")

    def instrument(self, details: dict[str, Any]) -> str | None:
        vpa = details.get("vpa")
        return vpa.lower() if isinstance(vpa, str) else None

    async def charge(self, charge: Charge) -> ChargeResult:
        if charge.currency.upper() != "INR":
            return ChargeResult("declined", None, "UPI takes payments in INR only")
        order = await self._order_by_receipt(charge.idempotency_key)
        if order is None:
            body = {
                "amount": charge.amount,
                "currency": "INR",
                "receipt": charge.idempotency_key,
                "payment_capture": 1 if charge.capture else 0,
                "notes": {"payment_id": charge.idempotency_key,
                          "group_id": charge.metadata.get("group_id", ""),
                          "capture": "auto" if charge.capture else "manual"},
            }  # fmt: skip
            status, order = await self._api("POST", "/v1/orders", body)
            if status >= 400:
                return ChargeResult("declined", None, _description(order))
        ref = str(order["id"])
        vpa = charge.details.get("vpa")
        if isinstance(vpa, str) and not await self._payments(ref):
            declined = await self._collect(ref, charge, vpa)
            if declined is not None:
                return declined
        uri = intent_uri(*self._payee, charge.amount, ref, f"Order {ref}")
        svg = await asyncio.to_thread(qr_svg, uri)  # a few ms of pure Python: off the loop
        return ChargeResult("requires_action", ref, action={"upi_uri": uri, "qr_svg": svg})

    async def _collect(self, ref: str, charge: Charge, vpa: str) -> ChargeResult | None:
        """Ask Razorpay to send a collect request to ``vpa``; a declined result if refused."""
        body = {"amount": charge.amount, "currency": "INR", "order_id": ref, "method": "upi",
                "upi": {"flow": "collect", "vpa": vpa, "expiry_time": "10"},
                "notes": {"payment_id": charge.idempotency_key}}  # fmt: skip
        status, out = await self._api("POST", "/v1/payments/create/upi", body)
        if status >= 400:
            return ChargeResult("declined", ref, _description(out))
        return None

    async def capture(self, provider_ref: str, amount: int, idempotency_key: str) -> ChargeResult:
        payments = await self._payments(provider_ref)
        if any(p.get("status") == "captured" for p in payments):
            return ChargeResult("captured", provider_ref)
        held = next((p for p in payments if p.get("status") == "authorized"), None)
        if held is None:
            return ChargeResult("declined", provider_ref, "nothing authorised to capture")
        path = f"/v1/payments/{held['id']}/capture"
        status, out = await self._api("POST", path, {"amount": amount, "currency": "INR"})
        if status < 400 and out.get("status") == "captured":
            return ChargeResult("captured", provider_ref)
        if await self.status(provider_ref) == "captured":  # a repeat: captured already
            return ChargeResult("captured", provider_ref)
        return ChargeResult("declined", provider_ref, _description(out))

    async def status(self, provider_ref: str) -> ChargeStatus | Literal["pending"]:
        payments = await self._payments(provider_ref)
        states = {str(p.get("status")) for p in payments}
        if "captured" in states or "refunded" in states:
            return "captured"
        if "authorized" in states:
            _, order = await self._api("GET", f"/v1/orders/{provider_ref}", None)
            manual = (order.get("notes") or {}).get("capture") == "manual"
            return "authorized" if manual else "pending"  # auto capture follows at once
        return "requires_action"  # nothing paid yet: the buyer may still scan or approve

    async def cancel(self, provider_ref: str) -> bool:
        return await self.status(provider_ref) not in ("captured", "pending")

    async def lookup(self, payment_id: str, group_id: str) -> str | None:
        order = await self._order_by_receipt(payment_id)
        return str(order["id"]) if order else None

    async def receipt_of(self, provider_ref: str) -> str | None:
        """Our payment id a Razorpay order was made for (its receipt); None if unknown."""
        status, order = await self._api("GET", f"/v1/orders/{provider_ref}", None)
        receipt = order.get("receipt") if status < 400 else None
        return str(receipt) if receipt else None

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> str:
        paid = next((p for p in await self._payments(provider_ref)
                     if p.get("status") in ("captured", "refunded")), None)  # fmt: skip
        if paid is None:
            raise RefundRefused("razorpay: the order has no captured payment to refund")
        body = {"amount": amount, "receipt": idempotency_key[:40],
                "notes": {"refund": idempotency_key}}  # fmt: skip
        status, out = await self._api(
            "POST", f"/v1/payments/{paid['id']}/refund", body,
            headers={"X-Refund-Idempotency": idempotency_key},
        )  # fmt: skip
        if status >= 400:
            raise RefundRefused(f"razorpay refused the refund: {_description(out)}")
        return str(out["id"])

    async def close(self) -> None:
        await self._http.close()

    # -- HTTP -----------------------------------------------------------------------------------
    async def _order_by_receipt(self, receipt: str) -> dict[str, Any] | None:
        status, found = await self._api("GET", "/v1/orders", None, params={"receipt": receipt})
        if status >= 400:
            raise Unavailable(f"razorpay: orders unreadable ({status})")
        items = [o for o in found.get("items", []) if o.get("receipt") == receipt]
        return dict(items[0]) if items else None

    async def _payments(self, provider_ref: str) -> list[dict[str, Any]]:
        status, found = await self._api("GET", f"/v1/orders/{provider_ref}/payments", None)
        if status >= 400:
            raise Unavailable(f"razorpay: payments of {provider_ref} unreadable ({status})")
        return [dict(p) for p in found.get("items", [])]

    async def _api(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        status, out = await self._http.call(
            method, path, json_body=body, auth=self._auth, params=params, headers=headers
        )
        if status == 401:
            raise Unavailable("razorpay refuses our key: check HL_UPI_KEY_ID / HL_UPI_KEY_SECRET")
        return status, out


def _description(body: dict[str, Any]) -> str:
    error = body.get("error") or {}
    return str(error.get("description") or error.get("code") or "razorpay refused the request")
