"""Typed application keys of the marketplace's resources (set up in gateway/market_ops.py)."""

from __future__ import annotations

from aiohttp import web

MARKET = web.AppKey("market", "MarketService")
CHECKOUT = web.AppKey("checkout", "Checkout")
APP_TOKENS = web.AppKey("app_tokens", "AppTokens")
