"""Where a vendor's payouts go (docs/payments.md, "Payout account"): thin adapters over
services/payout_accounts.py.

``GET|PUT|DELETE /api/v1/vendor/payout-account``: the vendor reads it masked (its user token, or
an app token with ``orders:read``) and only its own user token changes it (an app token never
redirects money). ``GET /api/v1/admin/vendors/{vendor_id}/payout-account``: an admin reads it
in full to pay a manual payout, through the control actor (``payouts.account``, audited).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.context import SERVICES
from gateway.control_api import act
from gateway.http import read_json
from gateway.oauth import require_vendor, require_vendor_user
from gateway.openapi_schema import Schema, errors, json_body, obj


class PayoutAccountBody(BaseModel):
    """The body's shape; models/payout_account.py ``parse`` decides what it means."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["stripe_connect", "bank"]
    account_id: str | None = Field(None, max_length=80)
    holder_name: str | None = Field(None, max_length=100)
    iban: str | None = Field(None, max_length=50)
    account_number: str | None = Field(None, max_length=30)
    bank_code: str | None = Field(None, max_length=20)
    country: str | None = Field(None, max_length=2)


_WHAT = "change where payouts go"


async def get_view(request: web.Request) -> web.Response:
    caller = await require_vendor(request, "orders:read")
    accounts = request.app[SERVICES].payouts.accounts
    assert accounts is not None
    return web.json_response(await accounts.get(caller.vendor["id"]))


async def put_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request, _WHAT)
    body = await read_json(request, PayoutAccountBody)
    accounts = request.app[SERVICES].payouts.accounts
    assert accounts is not None
    fields = body.model_dump(exclude_none=True)
    return web.json_response(await accounts.set(caller.vendor["id"], caller.user_id, fields))


async def delete_view(request: web.Request) -> web.Response:
    caller = await require_vendor_user(request, _WHAT)
    accounts = request.app[SERVICES].payouts.accounts
    assert accounts is not None
    return web.json_response(await accounts.clear(caller.vendor["id"], caller.user_id))


async def admin_view(request: web.Request) -> web.Response:
    return await act(request, "payouts.account", {"vendor_id": request.match_info["vendor_id"]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/vendor/payout-account", get_view)
    app.router.add_put("/api/v1/vendor/payout-account", put_view)
    app.router.add_delete("/api/v1/vendor/payout-account", delete_view)
    app.router.add_get("/api/v1/admin/vendors/{vendor_id}/payout-account", admin_view)


# -- OpenAPI ------------------------------------------------------------------------------------
_STR: Schema = {"type": "string"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_WHEN: Schema = {"type": ["string", "null"], "description": "when it was last set"}
_STRIPE_IN = obj(["kind", "account_id"], kind={"const": "stripe_connect"},
                 account_id={"type": "string", "pattern": "^acct_[A-Za-z0-9]{4,64}$"})  # fmt: skip
_HOLDER: Schema = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"}
_IBAN_IN = obj(["kind", "holder_name", "iban"], kind={"const": "bank"}, holder_name=_HOLDER,
               iban={"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$",
                     "description": "an IBAN whose check digits match (ISO 13616 mod 97)"},
               bank_code={"type": "string", "pattern": "^[A-Z0-9]{3,15}$"},
               country={"type": "string", "pattern": "^[A-Z]{2}$",
                        "description": "if given, the IBAN's own country"})  # fmt: skip
_LOCAL_IN = obj(["kind", "holder_name", "account_number", "bank_code", "country"],
                kind={"const": "bank"}, holder_name=_HOLDER,
                account_number={"type": "string", "pattern": "^[0-9]{4,20}$"},
                bank_code={"type": "string", "pattern": "^[A-Z0-9]{3,15}$",
                           "description": "routing number, sort code, IFSC..."},
                country={"type": "string", "pattern": "^[A-Z]{2}$"})  # fmt: skip
_MASKED = {"oneOf": [
    {"type": "null"},
    obj(["kind", "account_id", "updated_at"], kind={"const": "stripe_connect"},
        account_id={"type": "string", "description": "masked: acct_…1234"}, updated_at=_WHEN),
    obj(["kind", "holder_name", "country", "bank_code", "account_last4", "form", "updated_at"],
        kind={"const": "bank"}, holder_name=_STR, country=_STR,
        bank_code={"type": ["string", "null"]}, account_last4=_STR,
        form={"enum": ["iban", "account_number"]}, updated_at=_WHEN),
]}  # fmt: skip
_FULL = {"oneOf": [
    {"type": "null"},
    obj(["kind", "account_id"], kind={"const": "stripe_connect"}, account_id=_STR),
    obj(["kind", "holder_name", "country"], kind={"const": "bank"}, holder_name=_STR,
        country=_STR, iban={"type": ["string", "null"]},
        account_number={"type": ["string", "null"]}, bank_code={"type": ["string", "null"]}),
]}  # fmt: skip
_ANSWER = json_body(obj(["payout_account"], payout_account=_MASKED))
_SELF = "The vendor's own; changed only with the vendor user's token (an app token: 403)."

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/vendor/payout-account": {
        "get": {"summary": "Where the vendor's payouts go, masked (null: nowhere set)",
                "description": "A vendor user token or an app token with orders:read.",
                "security": _BEARER,
                "responses": {"200": {"description": "ok", **_ANSWER}, **errors(401, 403)}},
        "put": {"summary": "Set where payouts go: a Stripe connected account (transfers) or"
                           " bank details (manual payouts by the operator); answered masked",
                "description": _SELF + " Audited.", "security": _BEARER,
                "requestBody": json_body({"oneOf": [_STRIPE_IN, _IBAN_IN, _LOCAL_IN]}),
                "responses": {"200": {"description": "ok", **_ANSWER},
                              **errors(400, 401, 403, 413)}},
        "delete": {"summary": "Forget the payout destination (payouts become manual records"
                              " without details); none set: 404",
                   "description": _SELF + " Audited.", "security": _BEARER,
                   "responses": {"200": {"description": "ok", **_ANSWER},
                                 **errors(401, 403, 404)}},
    },
    "/api/v1/admin/vendors/{vendor_id}/payout-account": {
        "get": {"summary": "A vendor's payout destination in full, to pay a manual payout",
                "description": "Needs the role admin (payouts.account); every call writes an"
                               " audit entry.",
                "security": _BEARER,
                "parameters": [{"name": "vendor_id", "in": "path", "required": True,
                                "schema": _STR}],
                "responses": {"200": {"description": "ok", **json_body(obj(
                    ["vendor_id", "payout_account"], vendor_id=_STR, payout_account=_FULL))},
                    **errors(401, 403, 404)}},
    },
}  # fmt: skip
