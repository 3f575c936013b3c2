"""The two-factor REST endpoints (PROTOCOL.md "Security"): thin adapters over
services/twofactor.py, each behind ``require_principal``, with their part of the OpenAPI
document."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.http import read_json
from gateway.openapi_schema import Schema, errors, json_body, obj
from models.errors import Unauthorized
from store import users

Otp = Annotated[str, StringConstraints(min_length=6, max_length=32)]


class OtpBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    otp: Otp


async def setup_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    services = request.app[SERVICES]
    user = await users.by_id(services.db, principal.user_id)
    if user is None:
        raise Unauthorized("this account no longer exists")
    return web.json_response(await services.accounts.twofactor.setup(user.id, user.email))


async def enable_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, OtpBody)
    twofactor = request.app[SERVICES].accounts.twofactor
    return web.json_response(await twofactor.enable(principal.user_id, body.otp))


async def disable_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, OtpBody)
    await request.app[SERVICES].accounts.twofactor.disable(principal.user_id, body.otp)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/auth/2fa/setup", setup_view)
    app.router.add_post("/api/v1/auth/2fa/enable", enable_view)
    app.router.add_post("/api/v1/auth/2fa/disable", disable_view)


_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_OTP_BODY: Schema = {
    "required": True,
    **json_body(
        {
            **obj(["otp"], otp={"type": "string", "minLength": 6, "maxLength": 32}),
            "additionalProperties": False,
        }
    ),
}

OPENAPI_PATHS: dict[str, Schema] = {
    "/api/v1/auth/2fa/setup": {
        "post": {
            "summary": "Start two-factor sign-in: a new TOTP seed (RFC 6238, 30 s, 6 digits)",
            "security": _BEARER,
            "responses": {
                "200": {
                    "description": "the seed, shown once, and its otpauth:// URI (QR code)",
                    **json_body(
                        obj(
                            ["secret", "otpauth_uri"],
                            secret={"type": "string"},
                            otpauth_uri={"type": "string"},
                        )
                    ),
                },
                **errors(401, 409, 429),
            },
        }
    },
    "/api/v1/auth/2fa/enable": {
        "post": {
            "summary": "Turn two-factor on with a first code; answers 10 single-use recovery codes",
            "security": _BEARER,
            "requestBody": _OTP_BODY,
            "responses": {
                "200": {
                    "description": "on",
                    **json_body(
                        obj(
                            ["recovery_codes"],
                            recovery_codes={
                                "type": "array",
                                "items": {"type": "string"},
                                "minItems": 10,
                                "maxItems": 10,
                            },
                        )
                    ),
                },
                **errors(400, 401, 409, 413, 429),
            },
        }
    },
    "/api/v1/auth/2fa/disable": {
        "post": {
            "summary": "Turn two-factor off with a current code or a recovery code",
            "security": _BEARER,
            "requestBody": _OTP_BODY,
            "responses": {"204": {"description": "off"}, **errors(400, 401, 409, 413, 429)},
        }
    },
}
