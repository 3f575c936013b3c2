"""``POST /api/v1/payments/stripe/webhook``: Stripe tells us what happened to a payment.

The body (at most 512 KiB) is verified and applied by services/stripe_events.py, which says
what each event does; a bad signature is 400 and changes nothing.
"""

from __future__ import annotations

from aiohttp import web

from gateway.context import SERVICES
from gateway.http import read_webhook_body
from models.errors import Unauthorized


async def stripe_webhook_view(request: web.Request) -> web.Response:
    payload = await read_webhook_body(request)
    signature = request.headers.get("Stripe-Signature")
    if not signature:  # before anything else: not even whether Stripe is configured is told
        raise Unauthorized("missing Stripe-Signature")
    events = request.app[SERVICES].stripe_events
    return web.json_response(await events.handle(payload, signature))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/payments/stripe/webhook", stripe_webhook_view)
