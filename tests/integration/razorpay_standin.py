"""A local stand-in of Razorpay's REST API (orders, UPI payments, captures, refunds) and of its
signed webhooks, for the UPI integration tests. Not product code.

Like Razorpay, it keeps no idempotency key for orders (a second order with the same receipt is
made; the provider looks the receipt up first) and honours ``X-Refund-Idempotency``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

from aiohttp import web

KEY_ID, KEY_SECRET = "rzp_test_hyperlocal", "rzp-secret-test"
WEBHOOK_SECRET = "rzp-webhook-secret-test"


def _bad(description: str) -> web.Response:
    error = {"code": "BAD_REQUEST_ERROR", "description": description}
    return web.json_response({"error": error}, status=400)


class FakeRazorpay:
    """Orders and their payments; the tests pay, fail or authorise as the buyer's UPI app would."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.collects: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.delays: dict[str, float] = {}
        """Seconds to wait, once, before answering the next request to a path suffix."""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/orders", self.list_orders)
        app.router.add_post("/v1/orders", self.create_order)
        app.router.add_get("/v1/orders/{id}", self.get_order)
        app.router.add_get("/v1/orders/{id}/payments", self.order_payments)
        app.router.add_post("/v1/payments/create/upi", self.collect)
        app.router.add_post("/v1/payments/{id}/capture", self.capture)
        app.router.add_post("/v1/payments/{id}/refund", self.refund)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        expected = base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": {"code": "BAD_REQUEST_ERROR"}}, status=401)
        self.requests.append((request.method, request.path))
        response = await handler(request)
        for suffix, delay in list(self.delays.items()):
            if request.path.endswith(suffix) and request.method == "POST":
                del self.delays[suffix]
                await asyncio.sleep(delay)
        return response

    # -- the buyer's UPI app ---------------------------------------------------------------------
    def pay(self, order_id: str, status: str = "captured", amount: int | None = None
            ) -> dict[str, Any]:  # fmt: skip
        """A payment of the order, ``captured`` (auto capture), ``authorized`` or ``failed``."""
        order = self.orders[order_id]
        payment = {"id": f"pay_{uuid.uuid4().hex[:14]}", "entity": "payment",
                   "amount": order["amount"] if amount is None else amount, "currency": "INR",
                   "status": status, "order_id": order_id, "method": "upi",
                   "vpa": "buyer@okbank", "amount_refunded": 0}  # fmt: skip
        self.payments[payment["id"]] = payment
        if status == "captured":
            order["status"], order["amount_paid"] = "paid", payment["amount"]
        elif status != "created":
            order["status"] = "attempted"
        return payment

    def last_order(self) -> dict[str, Any]:
        return self.orders[next(reversed(self.orders))]

    def orders_with_receipt(self, receipt: str) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["receipt"] == receipt]

    # -- webhooks --------------------------------------------------------------------------------
    def signed(self, event: dict[str, Any], secret: str = WEBHOOK_SECRET,
               event_id: str | None = None) -> tuple[bytes, dict[str, str]]:  # fmt: skip
        body = json.dumps(event).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        ident = event_id or f"evt_{uuid.uuid4().hex[:14]}"
        return body, {"X-Razorpay-Signature": signature, "Content-Type": "application/json",
                      "X-Razorpay-Event-Id": ident}  # fmt: skip

    def event(self, kind: str, payment: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"payment": {"entity": dict(payment)}}
        if kind == "order.paid":
            payload["order"] = {"entity": dict(self.orders[payment["order_id"]])}
        return {"entity": "event", "account_id": "acc_test", "event": kind,
                "contains": list(payload), "payload": payload, "created_at": 1}  # fmt: skip

    def refund_in_dashboard(self, payment: dict[str, Any], amount: int) -> dict[str, Any]:
        """A refund made at Razorpay (its dashboard): its ``refund.processed`` event."""
        payment["amount_refunded"] += amount
        refund = {"id": f"rfnd_{uuid.uuid4().hex[:14]}", "entity": "refund", "amount": amount,
                  "payment_id": payment["id"], "currency": "INR", "notes": [],
                  "status": "processed"}  # fmt: skip
        return self.refund_event(refund)

    def refund_event(self, refund: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments[refund["payment_id"]]
        payload = {"refund": {"entity": dict(refund)}, "payment": {"entity": dict(payment)}}
        return {"entity": "event", "account_id": "acc_test", "event": "refund.processed",
                "contains": list(payload), "payload": payload, "created_at": 1}  # fmt: skip

    # -- the API ---------------------------------------------------------------------------------
    async def list_orders(self, request: web.Request) -> web.Response:
        receipt = request.query.get("receipt")
        items = [o for o in self.orders.values() if receipt is None or o["receipt"] == receipt]
        return web.json_response({"entity": "collection", "count": len(items), "items": items})

    async def create_order(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("currency") != "INR" or int(body.get("amount", 0)) < 100:
            return _bad("The amount must be at least INR 1.00")
        order = {"id": f"order_{uuid.uuid4().hex[:14]}", "entity": "order",
                 "amount": body["amount"], "amount_paid": 0, "currency": "INR",
                 "receipt": body["receipt"], "status": "created", "notes": body.get("notes"),
                 "payment_capture": body.get("payment_capture", 1)}  # fmt: skip
        self.orders[order["id"]] = order
        return web.json_response(order)

    async def get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return _bad("The id provided does not exist")
        return web.json_response(order)

    async def order_payments(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        items = [p for p in self.payments.values() if p["order_id"] == ident]
        return web.json_response({"entity": "collection", "count": len(items), "items": items})

    async def collect(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["upi"]["vpa"].startswith("invalid"):
            return _bad("Invalid VPA. Please enter a valid Virtual Payment Address")
        self.collects.append(body)
        payment = self.pay(body["order_id"], status="created")
        return web.json_response({"razorpay_payment_id": payment["id"]})

    async def capture(self, request: web.Request) -> web.Response:
        payment = self.payments[request.match_info["id"]]
        body = await request.json()
        if payment["status"] == "captured":
            return _bad("This payment has already been captured")
        if payment["status"] != "authorized" or int(body["amount"]) != payment["amount"]:
            return _bad("Only payments which have been authorized can be captured")
        payment["status"] = "captured"
        self.orders[payment["order_id"]]["status"] = "paid"
        return web.json_response(payment)

    async def refund(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-Refund-Idempotency")
        if key and key in self.refunds:
            return web.json_response(self.refunds[key])
        payment = self.payments[request.match_info["id"]]
        body = await request.json()
        amount = int(body.get("amount", payment["amount"] - payment["amount_refunded"]))
        if payment["amount_refunded"] + amount > payment["amount"]:
            return _bad("The refund amount provided is greater than amount captured")
        payment["amount_refunded"] += amount
        refund = {"id": f"rfnd_{uuid.uuid4().hex[:14]}", "entity": "refund", "amount": amount,
                  "payment_id": payment["id"], "receipt": body.get("receipt"),
                  "notes": body.get("notes") or [], "status": "processed"}  # fmt: skip
        if key:
            self.refunds[key] = refund
        return web.json_response(refund)
