"""``POST /api/v1/payments/stripe/webhook``: Stripe tells us what happened to a payment.

The body (at most 512 KiB) is verified and applied by services/stripe_events.py, which says
what each event does; a bad signature is 400 and changes nothing.
"""

from __future__ import annotations

from aiohttp import web

from gateway.context import SERVICES
from models.errors import TooLarge, Unauthorized

_MAX_BODY = 512 * 1024


async def stripe_webhook_view(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise TooLarge("webhook body too large")
    payload = await request.read()
    if len(payload) > _MAX_BODY:
        raise TooLarge("webhook body too large")
    signature = request.headers.get("Stripe-Signature")
    if not signature:  # before anything else: not even whether Stripe is configured is told
        raise Unauthorized("missing Stripe-Signature")
    events = request.app[SERVICES].stripe_events
    return web.json_response(await events.handle(payload, signature))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/payments/stripe/webhook", stripe_webhook_view)
