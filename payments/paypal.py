"""The PayPal provider: Orders v2 over PayPal's REST API, through aiohttp (payments/http.py).

- **create**: ``POST /v2/checkout/orders`` (intent ``CAPTURE``, or ``AUTHORIZE`` for a checkout
  held for review) with ``PayPal-Request-Id`` = our payment id, so a retry after a timeout gets
  the same PayPal order, never a second one. The answer is ``requires_action`` with the
  buyer's ``approve_url`` (the ``payer-action`` / ``approve`` link).
- **approve** (the buyer came back, or PayPal's ``CHECKOUT.ORDER.APPROVED``): capture the order
  (``POST .../capture``; an ``AUTHORIZE`` order is authorised instead), ``PayPal-Request-Id``
  ``<payment id>:approve``: the return and the webhook racing send the same request, and PayPal
  answers the second with the first's result.
- **capture** (a held checkout released): capture the order's authorisation.
- **refund**: ``POST /v2/payments/captures/{capture id}/refund`` keyed by our refund id.
- **cancel**: void an authorisation; an order never captured takes no money and lapses at
  PayPal by itself, so there is nothing else to void.

PayPal's answers are typed at this boundary: unreachable, a timeout, 5xx or 429 is
``Unavailable`` (retried with the same request id); a 4xx is PayPal's verdict on our request or
the payment: an order it does not know or will not process ``payment_failed``, any other
refusal ``bad_request`` (a refund refused either way ``RefundRefused``); an order's create or
capture refused is a ``declined`` result. Our ``provider_ref`` is the PayPal order id.
Webhooks are verified by payments/paypal_webhooks.py.
An access token (client credentials) is fetched on first use and renewed before it expires.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from models.errors import BadRequest, PaymentFailed, Unavailable
from payments.amounts import decimal_amount
from payments.base import Charge, ChargeResult, ChargeStatus, RefundRefused
from payments.http import ProviderHttp, basic_auth
from payments.paypal_webhooks import PayPalWebhooks

_ORDER: dict[str, ChargeStatus | Literal["pending"]] = {
    "CREATED": "requires_action",
    "SAVED": "requires_action",
    "PAYER_ACTION_REQUIRED": "requires_action",
    "APPROVED": "requires_action",  # approved, not captured yet: nothing taken
    "VOIDED": "declined",
}
_CAPTURE: dict[str, ChargeStatus | Literal["pending"]] = {
    "COMPLETED": "captured",
    "PENDING": "pending",
    "DECLINED": "declined",
    "FAILED": "declined",
    "REFUNDED": "captured",  # captured, then refunded: the refund rows say how much
    "PARTIALLY_REFUNDED": "captured",
}

_AUTHORIZATION: dict[str, ChargeStatus | Literal["pending"]] = {
    "CREATED": "authorized",
    "CAPTURED": "captured",
    "PARTIALLY_CAPTURED": "captured",
    "PENDING": "pending",
}


class PayPalProvider:
    """PayPal Orders v2; owns its HTTP session, access token and webhook verifier."""

    name = "paypal"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        api_base: str,
        *,
        webhook_id: str | None,
        cert_hosts: tuple[str, ...],
        return_url: str,
        cancel_url: str,
        timeout_s: float,
    ) -> None:
        self._http = ProviderHttp("paypal", api_base, timeout_s)
        self._auth = basic_auth(client_id, client_secret)
        self._return_url, self._cancel_url = return_url, cancel_url
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()
        self.webhooks = PayPalWebhooks(self._http, webhook_id, cert_hosts)

    # -- the interface ------------------------------------------------------------------------
    def check(self, details: dict[str, Any]) -> None:
        return None  # nothing to give: the buyer picks how to pay at PayPal

    def instrument(self, details: dict[str, Any]) -> str | None:
        return None  # the payer is known only once they approve, after the checkout

    async def charge(self, charge: Charge) -> ChargeResult:
        unit = {
            "reference_id": charge.metadata.get("group_id", charge.idempotency_key),
            "custom_id": charge.idempotency_key,
            "invoice_id": charge.idempotency_key,
            "amount": {
                "currency_code": charge.currency.upper(),
                "value": decimal_amount(charge.amount, charge.currency),
            },
        }
        context = {"return_url": self._return_url, "cancel_url": self._cancel_url,
                   "user_action": "PAY_NOW", "shipping_preference": "NO_SHIPPING"}  # fmt: skip
        body = {
            "intent": "CAPTURE" if charge.capture else "AUTHORIZE",
            "purchase_units": [unit],
            "payment_source": {"paypal": {"experience_context": context}},
        }
        status, order = await self._api("POST", "/v2/checkout/orders", charge.idempotency_key, body)
        if status >= 400:
            return ChargeResult("declined", None, _issue(order) or "paypal refused the order")
        url = next((link["href"] for link in order.get("links", [])
                    if link.get("rel") in ("payer-action", "approve")), None)  # fmt: skip
        if not url:
            raise Unavailable("paypal answered an order without an approval link")
        return ChargeResult("requires_action", str(order["id"]), action={"approve_url": url})

    async def approve(self, provider_ref: str, payment_id: str) -> ChargeResult:
        """The buyer approved (or PayPal says so): capture the order, or authorise an
        ``AUTHORIZE`` one. ``requires_action`` while it is not approved yet."""
        order = await self._order(provider_ref)
        state = _state(order)
        if state != "requires_action" or order.get("status") != "APPROVED":
            return ChargeResult(_final(state), provider_ref)
        verb = "authorize" if order.get("intent") == "AUTHORIZE" else "capture"
        path = f"/v2/checkout/orders/{provider_ref}/{verb}"
        status, after = await self._api("POST", path, f"{payment_id}:approve", {})
        if status >= 400:
            issue = _issue(after)
            if issue == "ORDER_ALREADY_CAPTURED":
                return ChargeResult("captured", provider_ref)
            if issue == "ORDER_NOT_APPROVED":
                return ChargeResult("requires_action", provider_ref)
            return ChargeResult("declined", provider_ref, issue or f"paypal {verb} refused")
        return ChargeResult(_final(_state(after)), provider_ref)

    async def capture(self, provider_ref: str, amount: int, idempotency_key: str) -> ChargeResult:
        order = await self._order(provider_ref)
        auth = _authorization(order)
        if auth is None:  # a CAPTURE order: what approve does
            return await self.approve(provider_ref, idempotency_key)
        if auth.get("status") == "CAPTURED":
            return ChargeResult("captured", provider_ref)
        path = f"/v2/payments/authorizations/{auth['id']}/capture"
        status, done = await self._api("POST", path, idempotency_key, {"final_capture": True})
        if status >= 400:
            return ChargeResult("declined", provider_ref, _issue(done) or "not capturable")
        if done.get("status") == "COMPLETED":
            return ChargeResult("captured", provider_ref)
        return ChargeResult("declined", provider_ref, f"capture left it {done.get('status')}")

    async def status(self, provider_ref: str) -> ChargeStatus | Literal["pending"]:
        return _state(await self._order(provider_ref))

    async def cancel(self, provider_ref: str) -> bool:
        order = await self._order(provider_ref)
        state = _state(order)
        if state == "captured":
            return False
        auth = _authorization(order)
        if state == "authorized" and auth is not None:
            path = f"/v2/payments/authorizations/{auth['id']}/void"
            status, _ = await self._api("POST", path, f"void-{auth['id']}", None)
            return status < 400 or await self.status(provider_ref) != "captured"
        return state != "pending"  # a pending capture may still complete: ask again later

    async def lookup(self, payment_id: str, group_id: str) -> str | None:
        # The buyer can approve only through the approval link of our answer; an answer we
        # never stored was never shown, so no money can have moved through it.
        return None

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> str:
        try:
            order = await self._order(provider_ref)
        except (PaymentFailed, BadRequest) as err:  # PayPal's verdict: retrying cannot help
            raise RefundRefused(err.message) from None
        capture = _capture(order)
        if capture is None:
            raise RefundRefused("paypal: the order has no capture to refund")
        # custom_id comes back in PAYMENT.CAPTURE.REFUNDED: ours, never mirrored as PayPal's
        body = {"amount": {"value": decimal_amount(amount, capture["amount"]["currency_code"]),
                           "currency_code": capture["amount"]["currency_code"]},
                "custom_id": idempotency_key[:127]}  # fmt: skip
        path = f"/v2/payments/captures/{capture['id']}/refund"
        status, refund = await self._api("POST", path, idempotency_key, body)
        if status >= 400:
            raise RefundRefused(f"paypal refused the refund: {_issue(refund) or status}")
        return str(refund["id"])

    async def order_of_capture(self, capture_id: str) -> str | None:
        """The PayPal order a capture belongs to (a refund event names only its capture)."""
        status, capture = await self._api("GET", f"/v2/payments/captures/{capture_id}", None, None)
        if status == 404:
            return None
        if status >= 400:
            raise BadRequest(f"paypal refused to read capture {capture_id}: "
                             f"{_issue(capture) or status}")  # fmt: skip
        related = (capture.get("supplementary_data") or {}).get("related_ids") or {}
        order_id = related.get("order_id")
        return str(order_id) if order_id else None

    async def close(self) -> None:
        await self._http.close()

    # -- HTTP -----------------------------------------------------------------------------------
    async def _order(self, provider_ref: str) -> dict[str, Any]:
        """The PayPal order. Its outage (unreachable, a timeout, 5xx, 429) is ``Unavailable``
        (payments/http.py); a 4xx is PayPal's verdict, never retried into success: an order
        it does not know or will not process (404, 422) is ``payment_failed``, any other
        refusal of our request (400, 403, ...) ``bad_request``."""
        status, order = await self._api("GET", f"/v2/checkout/orders/{provider_ref}", None, None)
        if status in (404, 422):
            raise PaymentFailed(f"paypal: order {provider_ref} {_issue(order) or status}")
        if status >= 400:
            raise BadRequest(f"paypal refused to read order {provider_ref}: "
                             f"{_issue(order) or status}")  # fmt: skip
        return order

    async def _api(
        self, method: str, path: str, request_id: str | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        """One call with a current access token (renewed once if PayPal refuses it)."""
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {await self._access_token(attempt > 0)}",
                       "Prefer": "return=representation"}  # fmt: skip
            if request_id:
                headers["PayPal-Request-Id"] = request_id
            status, out = await self._http.call(method, path, headers=headers, json_body=body)
            if status != 401:
                return status, out
        raise Unavailable("paypal refuses our access token")

    async def _access_token(self, renew: bool) -> str:
        async with self._token_lock:
            if self._token is None or renew or self._token[1] < time.monotonic():
                status, out = await self._http.call(
                    "POST", "/v1/oauth2/token", auth=self._auth,
                    form={"grant_type": "client_credentials"},
                )  # fmt: skip
                if status != 200 or "access_token" not in out:
                    raise Unavailable(f"paypal token refused ({status}): check the client id")
                life = float(out.get("expires_in", 300))
                self._token = (str(out["access_token"]), time.monotonic() + max(life - 60, 1))
            return self._token[0]


def _unit_payments(order: dict[str, Any]) -> dict[str, Any]:
    units = order.get("purchase_units") or [{}]
    return dict(units[0].get("payments") or {})


def _capture(order: dict[str, Any]) -> dict[str, Any] | None:
    captures = _unit_payments(order).get("captures") or []
    return dict(captures[-1]) if captures else None


def _authorization(order: dict[str, Any]) -> dict[str, Any] | None:
    auths = _unit_payments(order).get("authorizations") or []
    return dict(auths[-1]) if auths else None


def _state(order: dict[str, Any]) -> ChargeStatus | Literal["pending"]:
    """Where a PayPal order stands, by its status and its payments."""
    capture = _capture(order)
    if capture is not None:
        return _CAPTURE.get(str(capture.get("status")), "pending")
    auth = _authorization(order)
    if auth is not None:
        return _AUTHORIZATION.get(str(auth.get("status")), "declined")
    if order.get("status") == "COMPLETED":
        return "pending"  # completed without a capture listed yet: ask again
    return _ORDER.get(str(order.get("status")), "requires_action")


def _final(state: ChargeStatus | Literal["pending"]) -> ChargeStatus:
    """A capture PayPal holds as pending (an eCheck, a review) waits like customer action."""
    return "requires_action" if state == "pending" else state


def _issue(body: dict[str, Any]) -> str | None:
    details = body.get("details") or []
    if details and isinstance(details[0], dict) and details[0].get("issue"):
        return str(details[0]["issue"])
    return str(body["name"]) if body.get("name") else None
