"""What each feature plugs into the gateway, listed once.

A feature's edge module (``ops`` for the feed, ``chat_ops``, ``market_ops``, the REST APIs) may
define (its resources are services, built in services/container.py):
- ``OPS``: websocket operations, name -> ``ops.Op``;
- ``add_routes(app)``: its REST endpoints;
- ``OPENAPI_PATHS`` / ``OPENAPI_SCHEMAS``: its part of the OpenAPI document.
Names must be unique across features; a clash fails at import, not at run time.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from aiohttp import web

from gateway import (
    admin_api,
    analytics_api,
    auth,
    chat_ops,
    cluster_api,
    disputes_api,
    graphql_api,
    hooks_api,
    market_ops,
    media_api,
    money_api,
    notifications_api,
    oauth,
    ops,
    payments_api,
    payout_account_api,
    provider_payments_api,
    risk_api,
    security_api,
    social_ops,
    vendor_api,
    webapp,
)
from gateway.ops import Op

FEATURES: tuple[ModuleType, ...] = (
    auth,
    ops,
    chat_ops,
    market_ops,
    vendor_api,
    hooks_api,
    oauth,
    payments_api,
    provider_payments_api,  # PayPal and UPI (issue 17)
    admin_api,
    disputes_api,
    security_api,
    risk_api,
    media_api,
    notifications_api,
    social_ops,
    graphql_api,
    cluster_api,
    analytics_api,
    money_api,
    payout_account_api,  # where a vendor's payouts go (issue 17)
    webapp,  # the web client's files at / (docs/web.md)
)


def _merge(name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for feature in FEATURES:
        table = getattr(feature, name, {})
        clash = merged.keys() & table.keys()
        assert not clash, f"{name}: defined twice: {sorted(clash)}"
        merged.update(table)
    return merged


OPS: dict[str, Op] = _merge("OPS")
OPENAPI_PATHS: dict[str, Any] = _merge("OPENAPI_PATHS")
OPENAPI_SCHEMAS: dict[str, Any] = _merge("OPENAPI_SCHEMAS")


def add_routes(app: web.Application) -> None:
    for feature in FEATURES:
        adder = getattr(feature, "add_routes", None)
        if adder is not None:
            adder(app)
