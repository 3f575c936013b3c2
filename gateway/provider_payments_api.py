"""PayPal's and UPI's REST endpoints: thin adapters over services/provider_events.py.

- ``POST /api/v1/payments/paypal/webhook``: PayPal events, verified per PayPal's signature
  scheme (payments/paypal_webhooks.py); missing signature headers 401, a bad signature 400,
  nothing changed either way.
- ``POST /api/v1/payments/paypal/return`` ``{order_id}`` (Bearer, the buyer): the buyer is back
  from PayPal; the payment is captured now -> ``{orders, payment}`` like ``checkout``.
- ``POST /api/v1/payments/upi/webhook``: Razorpay events, ``X-Razorpay-Signature`` verified.

Webhook bodies are at most 512 KiB (gateway/http.py ``read_webhook_body``, as Stripe's).
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.http import read_json, read_webhook_body
from gateway.openapi_schema import ERROR, Schema, errors, json_body, obj
from models.errors import Unauthorized
from payments.paypal_webhooks import HEADERS, require_headers


class ReturnBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    order_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


async def paypal_webhook_view(request: web.Request) -> web.Response:
    require_headers(request.headers)  # first: not even whether PayPal is configured is told
    payload = await read_webhook_body(request)
    events = request.app[SERVICES].provider_events
    return web.json_response(await events.paypal_webhook(payload, request.headers))


async def paypal_return_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, ReturnBody)
    events = request.app[SERVICES].provider_events
    return web.json_response(await events.paypal_return(principal.user_id, body.order_id))


async def upi_webhook_view(request: web.Request) -> web.Response:
    signature = request.headers.get("X-Razorpay-Signature")
    if not signature:
        raise Unauthorized("missing X-Razorpay-Signature")
    payload = await read_webhook_body(request)
    event_id = request.headers.get("X-Razorpay-Event-Id") or None
    events = request.app[SERVICES].provider_events
    return web.json_response(await events.upi_webhook(payload, signature, event_id))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/payments/paypal/webhook", paypal_webhook_view)
    app.router.add_post("/api/v1/payments/paypal/return", paypal_return_view)
    app.router.add_post("/api/v1/payments/upi/webhook", upi_webhook_view)


# -- OpenAPI --------------------------------------------------------------------------------------
_STR: Schema = {"type": "string"}
_RECEIVED = obj(["received"], received={"type": "boolean"}, duplicate={"type": "boolean"})


def _header(name: str) -> Schema:
    return {"name": name, "in": "header", "required": True, "schema": _STR}


def _webhook(summary: str, headers: list[Schema]) -> Schema:
    return {"post": {
        "summary": summary,
        "parameters": headers,
        "requestBody": json_body({"type": "object", "additionalProperties": True}),
        "responses": {"200": {"description": "received", **json_body(_RECEIVED)},
                      **errors(400, 401, 404, 413, 503)},
    }}  # fmt: skip


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/payments/paypal/webhook": _webhook(
        "PayPal events (verified: transmission id, time, our webhook id and the body's CRC32,"
        " RSA-SHA256 by the certificate at PAYPAL-CERT-URL; each event id once)",
        [_header(h) for h in HEADERS],
    ),
    "/api/v1/payments/paypal/return": {"post": {
        "summary": "The buyer is back from approving at PayPal: capture the payment now",
        "security": [{"bearer": []}],
        "requestBody": json_body(obj(["order_id"], order_id={"type": "string", "maxLength": 64})),
        "responses": {
            "200": {"description": "captured, or still awaiting approval",
                    **json_body(obj(["orders", "payment"], orders={"type": "array"},
                                    payment={"type": "object"}))},
            "402": {"description": "payment_failed", **json_body(ERROR)},
            **errors(400, 401, 404, 413, 429, 503),
        },
    }},
    "/api/v1/payments/upi/webhook": _webhook(
        "Razorpay (UPI) events (X-Razorpay-Signature: hex HMAC-SHA256 of the body; each event"
        " id once)",
        [_header("X-Razorpay-Signature"),
         {"name": "X-Razorpay-Event-Id", "in": "header", "required": False, "schema": _STR}],
    ),
}  # fmt: skip
