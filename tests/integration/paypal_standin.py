"""A local stand-in of PayPal's REST API (Orders v2, captures, authorisations, refunds) and of
its webhook deliveries, for the integration tests. Not product code.

It honours ``PayPal-Request-Id`` as PayPal does (a repeat gets the first answer), signs webhook
deliveries per PayPal's scheme with its own RSA key and serves that key's self-signed
certificate at ``/certs/<name>``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import uuid
import zlib
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

CLIENT_ID, CLIENT_SECRET = "paypal-client-test", "paypal-secret-test"
WEBHOOK_ID = "WH-TEST-HYPERLOCAL"


def _keypair(name: str) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def _unprocessable(issue: str) -> tuple[int, dict[str, Any]]:
    return 422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": issue}]}


class FakePayPal:
    """Orders, honouring PayPal-Request-Id; the tests approve or decline as the buyer would."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_request: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.declines: set[str] = set()
        """Orders whose funding source is declined at capture."""
        self.delays: dict[str, float] = {}
        """Seconds to wait, once, before answering the next request to a path suffix
        (``"/v2/checkout/orders"``, ``"/capture"``): the work is done first, as a slow PayPal."""
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        """What the next read of an order answers instead, once, by order id (PayPal refusing
        it: a 4xx, or down: a 5xx)."""
        self.refunds: dict[str, int] = {}
        self.refund_objects: list[dict[str, Any]] = []
        """Every refund made, as PayPal's refund resource (with its capture's ``up`` link)."""
        self.on_refund: Any = None
        """An async callable run with each new refund before it is answered (a webhook race)."""
        self.key, self.cert_pem = _keypair("messageverificationcerts.paypal.test")
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/oauth2/token", self.token)
        app.router.add_get("/certs/{name}", self.cert)
        app.router.add_post("/v2/checkout/orders", self.create)
        app.router.add_get("/v2/checkout/orders/{id}", self.get)
        app.router.add_post("/v2/checkout/orders/{id}/capture", self.capture)
        app.router.add_post("/v2/checkout/orders/{id}/authorize", self.authorize)
        app.router.add_post("/v2/payments/authorizations/{id}/capture", self.capture_auth)
        app.router.add_post("/v2/payments/authorizations/{id}/void", self.void_auth)
        app.router.add_post("/v2/payments/captures/{id}/refund", self.refund)
        app.router.add_get("/v2/payments/captures/{id}", self.get_capture)
        return app

    # -- the buyer, at PayPal --------------------------------------------------------------------
    def approve(self, order_id: str) -> None:
        self.orders[order_id]["status"] = "APPROVED"

    def capture_directly(self, order_id: str) -> None:
        """Capture an approved order as a capture call would (one whose answer was lost)."""
        order = self.orders[order_id]
        self.requests.append((f"/v2/checkout/orders/{order_id}/capture", "POST", None))
        unit = order["purchase_units"][0]
        unit["payments"]["captures"] = [
            {
                "id": f"CAP{uuid.uuid4().hex[:12].upper()}",
                "status": "COMPLETED",
                "amount": unit["amount"],
            }
        ]
        order["status"] = "COMPLETED"  # fmt: skip

    def last_order(self) -> dict[str, Any]:
        return self.orders[next(reversed(self.orders))]

    def captures_of(self, order_id: str) -> list[str]:
        return [p for p, _, _ in self.requests if p == f"/v2/checkout/orders/{order_id}/capture"]

    # -- webhooks --------------------------------------------------------------------------------
    def signed(self, event: dict[str, Any], webhook_id: str = WEBHOOK_ID,
               cert_url: str | None = None) -> tuple[bytes, dict[str, str]]:  # fmt: skip
        body = json.dumps(event).encode()
        tid, when = str(uuid.uuid4()), dt.datetime.now(dt.UTC).isoformat()
        message = f"{tid}|{when}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
        sig = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        headers = {
            "PAYPAL-TRANSMISSION-ID": tid,
            "PAYPAL-TRANSMISSION-TIME": when,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(sig).decode(),
            "PAYPAL-CERT-URL": cert_url or f"{self.base}/certs/CERT-test-1",
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "Content-Type": "application/json",
        }
        return body, headers

    def order_event(self, kind: str, order_id: str) -> dict[str, Any]:
        return {"id": f"WH-{uuid.uuid4().hex[:12]}", "event_type": kind,
                "resource": json.loads(json.dumps(self.orders[order_id]))}  # fmt: skip

    def capture_event(self, kind: str, order_id: str) -> dict[str, Any]:
        order = self.orders[order_id]
        unit = order["purchase_units"][0]
        captures = unit["payments"].get("captures") or [{"id": "CAP-none", "status": "DECLINED"}]
        resource = {**captures[-1], "custom_id": unit.get("custom_id"),
                    "supplementary_data": {"related_ids": {"order_id": order_id}}}  # fmt: skip
        return {"id": f"WH-{uuid.uuid4().hex[:12]}", "event_type": kind, "resource": resource}

    def refund_in_dashboard(self, order_id: str, cents: int) -> dict[str, Any]:
        """A refund made at PayPal (its dashboard): its ``PAYMENT.CAPTURE.REFUNDED`` event,
        naming only the capture (the ``up`` link), as PayPal's does."""
        capture = self.orders[order_id]["purchase_units"][0]["payments"]["captures"][-1]
        self.refunds[capture["id"]] = self.refunds.get(capture["id"], 0) + cents
        value = {"currency_code": capture["amount"]["currency_code"],
                 "value": f"{cents // 100}.{cents % 100:02d}"}  # fmt: skip
        refund = self._refund_object(capture["id"], value, None)
        return self.refund_event(refund)

    def refund_event(self, refund: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"WH-{uuid.uuid4().hex[:12]}", "event_type": "PAYMENT.CAPTURE.REFUNDED",
                "resource": dict(refund)}  # fmt: skip

    def _refund_object(
        self, capture_id: str, amount: dict[str, Any], custom_id: str | None
    ) -> dict[str, Any]:
        refund = {"id": f"RF{uuid.uuid4().hex[:12].upper()}", "status": "COMPLETED",
                  "amount": amount, "links": [{"rel": "up", "method": "GET",
                  "href": f"{self.base}/v2/payments/captures/{capture_id}"}]}  # fmt: skip
        if custom_id:
            refund["custom_id"] = custom_id
        self.refund_objects.append(refund)
        return refund

    async def get_capture(self, request: web.Request) -> web.Response:
        capture_id = request.match_info["id"]
        for order in self.orders.values():
            for capture in order["purchase_units"][0]["payments"].get("captures", []):
                if capture["id"] == capture_id:
                    related = {"related_ids": {"order_id": order["id"]}}
                    return web.json_response({**capture, "supplementary_data": related})
        return web.json_response({"name": "RESOURCE_NOT_FOUND"}, status=404)

    # -- the API ---------------------------------------------------------------------------------
    async def token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        assert form["grant_type"] == "client_credentials"
        return web.json_response({"access_token": "A21-test", "token_type": "Bearer",
                                  "expires_in": 32400})  # fmt: skip

    async def cert(self, request: web.Request) -> web.Response:
        return web.Response(body=self.cert_pem, content_type="application/x-pem-file")

    async def _once(self, request: web.Request, make: Any) -> web.Response:
        assert request.headers.get("Authorization") == "Bearer A21-test"
        rid = request.headers.get("PayPal-Request-Id")
        self.requests.append((request.path, request.method, rid))
        if rid and rid in self.by_request:
            status, body = self.by_request[rid]
        else:
            text = await request.text()
            status, body = make(json.loads(text) if text else {})
            if rid:
                self.by_request[rid] = (status, body)
        for suffix, delay in list(self.delays.items()):
            if request.path.endswith(suffix):
                del self.delays[suffix]
                await asyncio.sleep(delay)
        return web.json_response(body, status=status)

    async def create(self, request: web.Request) -> web.Response:
        def make(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            ident = f"PP{uuid.uuid4().hex[:15].upper()}"
            unit = {**body["purchase_units"][0], "payments": {}}
            order = {"id": ident, "intent": body["intent"], "status": "PAYER_ACTION_REQUIRED",
                     "purchase_units": [unit],
                     "links": [{"rel": "payer-action", "method": "GET",
                                "href": f"{self.base}/checkoutnow?token={ident}"}]}  # fmt: skip
            self.orders[ident] = order
            return 200, order

        return await self._once(request, make)

    async def get(self, request: web.Request) -> web.Response:
        forced = self.answers.pop(request.match_info["id"], None)
        if forced is not None:
            return web.json_response(forced[1], status=forced[0])
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return web.json_response({"name": "RESOURCE_NOT_FOUND"}, status=404)
        return web.json_response(order)

    async def capture(self, request: web.Request) -> web.Response:
        order = self.orders[request.match_info["id"]]

        def make(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if order["status"] == "COMPLETED":
                return _unprocessable("ORDER_ALREADY_CAPTURED")
            if order["status"] != "APPROVED":
                return _unprocessable("ORDER_NOT_APPROVED")
            if order["id"] in self.declines:
                return _unprocessable("INSTRUMENT_DECLINED")
            unit = order["purchase_units"][0]
            unit["payments"]["captures"] = [
                {
                    "id": f"CAP{uuid.uuid4().hex[:12].upper()}",
                    "status": "COMPLETED",
                    "amount": unit["amount"],
                }
            ]
            order["status"] = "COMPLETED"  # fmt: skip
            return 201, json.loads(json.dumps(order))

        return await self._once(request, make)

    async def authorize(self, request: web.Request) -> web.Response:
        order = self.orders[request.match_info["id"]]

        def make(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if order["status"] != "APPROVED":
                return _unprocessable("ORDER_NOT_APPROVED")
            unit = order["purchase_units"][0]
            unit["payments"]["authorizations"] = [
                {
                    "id": f"AUTH{uuid.uuid4().hex[:10].upper()}",
                    "status": "CREATED",
                    "amount": unit["amount"],
                }
            ]
            order["status"] = "COMPLETED"  # fmt: skip
            return 201, json.loads(json.dumps(order))

        return await self._once(request, make)

    def _auth(self, auth_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        for order in self.orders.values():
            for auth in order["purchase_units"][0]["payments"].get("authorizations", []):
                if auth["id"] == auth_id:
                    return order, auth
        raise web.HTTPNotFound()

    async def capture_auth(self, request: web.Request) -> web.Response:
        order, auth = self._auth(request.match_info["id"])

        def make(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if auth["status"] != "CREATED":
                return _unprocessable("AUTHORIZATION_VOIDED")
            auth["status"] = "CAPTURED"
            capture = {"id": f"CAP{uuid.uuid4().hex[:12].upper()}", "status": "COMPLETED",
                       "amount": auth["amount"]}  # fmt: skip
            order["purchase_units"][0]["payments"]["captures"] = [capture]
            return 201, capture

        return await self._once(request, make)

    async def void_auth(self, request: web.Request) -> web.Response:
        _, auth = self._auth(request.match_info["id"])

        def make(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if auth["status"] != "CREATED":
                return _unprocessable("PREVIOUSLY_CAPTURED")
            auth["status"] = "VOIDED"
            return 200, auth

        return await self._once(request, make)

    async def refund(self, request: web.Request) -> web.Response:
        capture_id = request.match_info["id"]
        capture = next(c for o in self.orders.values()
                       for c in o["purchase_units"][0]["payments"].get("captures", [])
                       if c["id"] == capture_id)  # fmt: skip

        def make(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            asked = round(float(body["amount"]["value"]) * 100)
            done = self.refunds.get(capture_id, 0)
            if done + asked > round(float(capture["amount"]["value"]) * 100):
                return _unprocessable("REFUND_AMOUNT_EXCEEDED")
            self.refunds[capture_id] = done + asked
            return 201, self._refund_object(capture_id, body["amount"], body.get("custom_id"))

        made = len(self.refund_objects)
        response = await self._once(request, make)
        if self.on_refund is not None and len(self.refund_objects) > made:
            await self.on_refund(self.refund_objects[-1])
        return response
