"""The OpenAPI 3.1 description of the REST API, served at /api/v1/openapi.json.

Written by hand next to the handlers it describes; tests check every registered REST route is in
it. The websocket protocol is described in docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

from gateway.openapi_schema import Schema, truthful
from gateway.openapi_schema import errors as _errors
from gateway.openapi_schema import json_body as _json
from gateway.openapi_schema import obj as _obj
from models.auth import EMAIL_PATTERN

_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


_STR: Schema = {"type": "string"}
_EMAIL: Schema = {"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN}
_TOKENS = _obj(["access_token", "refresh_token"], access_token=_STR, refresh_token=_STR)
_AUTHED = _obj(
    ["user", "access_token", "refresh_token"],
    user={"$ref": "#/components/schemas/User"},
    access_token=_STR,
    refresh_token=_STR,
)


def openapi_spec() -> dict[str, Any]:
    """The core document plus every feature's paths and schemas (gateway/registry.py)."""
    from gateway import registry

    spec = _core_spec()
    for path, operations in registry.OPENAPI_PATHS.items():  # a feature may add a method
        spec["paths"].setdefault(path, {}).update(operations)
    spec["components"]["schemas"].update(registry.OPENAPI_SCHEMAS)
    return truthful(spec)


def _core_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hyperlocal API",
            "version": "1.0.0",
            "description": "REST side of Hyperlocal; websocket protocol in docs/protocol.md.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basic": {"type": "http", "scheme": "basic"},  # appeals of suspended users
            },
            "schemas": {
                "Error": _obj(
                    ["error"],
                    error=_obj(
                        ["code", "message"], code=_STR, message=_STR, details={"type": "object"}
                    ),
                ),
                "User": _obj(
                    ["id", "email", "display_name", "roles", "created_at"],
                    id=_STR,
                    email=_STR,
                    display_name=_STR,
                    roles={"type": "array", "items": _STR},
                    created_at={"type": "string", "format": "date-time"},
                ),
            },
        },
        "paths": {
            "/api/v1/auth/signup": {
                "post": {
                    "summary": "Create an account and sign in",
                    "description": "A taken email answers the same: an account of its own that"
                    " does not claim the address (its owner is emailed); docs/security.md.",
                    "requestBody": _json(
                        _obj(
                            ["email", "password", "display_name"],
                            email=_EMAIL,
                            password={"type": "string", "minLength": 8, "maxLength": 256},
                            display_name={"type": "string", "minLength": 1, "maxLength": 64},
                        )
                    ),
                    "responses": {
                        "201": {"description": "created", **_json(_AUTHED)},
                        **_errors(400, 409, 413, 429),
                    },
                }
            },
            "/api/v1/auth/login": {
                "post": {
                    "summary": "Sign in",
                    "requestBody": _json(
                        _obj(
                            ["email", "password"],
                            email=_EMAIL,
                            password={"type": "string", "maxLength": 256},
                            otp={"type": "string", "maxLength": 32},
                        )
                    ),
                    "responses": {
                        "200": {"description": "signed in", **_json(_AUTHED)},
                        **_errors(400, 401, 403, 413, 429),
                    },
                }
            },
            "/api/v1/auth/refresh": {
                "post": {
                    "summary": "Rotate a refresh token (reuse of an old one revokes its family)",
                    "requestBody": _json(_obj(["refresh_token"], refresh_token=_STR)),
                    "responses": {
                        "200": {"description": "rotated", **_json(_TOKENS)},
                        **_errors(400, 401, 429),
                    },
                }
            },
            "/api/v1/auth/logout": {
                "post": {
                    "summary": "End this sign-in: its refresh family, access tokens and sockets",
                    "security": _BEARER,
                    "responses": {"204": {"description": "signed out"}, **_errors(401)},
                }
            },
            "/api/v1/auth/ws-ticket": {
                "post": {
                    "summary": "A single-use, short-lived ticket for GET /ws?ticket=",
                    "security": _BEARER,
                    "responses": {
                        "200": {
                            "description": "ticket",
                            **_json(_obj(["ticket"], ticket=_STR, expires_in={"type": "integer"})),
                        },
                        **_errors(401),
                    },
                }
            },
            "/api/v1/me": {
                "get": {
                    "summary": "The caller's user",
                    "security": _BEARER,
                    "responses": {
                        "200": {
                            "description": "user",
                            **_json(_obj(["user"], user={"$ref": "#/components/schemas/User"})),
                        },
                        **_errors(401),
                    },
                }
            },
            "/ws": {
                "get": {
                    "summary": "Websocket session (subprotocols hl.json, hl.msgpack)",
                    "description": "Authorization: Bearer <access_token>, or ?ticket=. "
                    "See docs/protocol.md.",
                    "parameters": [
                        {"name": "ticket", "in": "query", "required": False, "schema": _STR}
                    ],
                    "responses": {
                        "101": {"description": "switching protocols"},
                        "400": {
                            "description": "not a websocket upgrade (Upgrade, Connection,"
                            " Sec-WebSocket-Key and -Version are required)"
                        },
                        **_errors(401, 403, 429),
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Process is up", "responses": {"200": {"description": "up"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Postgres, Redis and the shards are reachable",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition"}},
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "spec"}}}
            },
        },
    }
