"""Typed keys for what the aiohttp application holds (one setup and teardown each, see app.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from cluster.config import Settings

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
AUTH = web.AppKey("auth", "AuthService")
ROUTER = web.AppKey("router", "ShardRouter")
HUB = web.AppKey("hub", "Hub")
SESSIONS = web.AppKey("sessions", "SessionRegistry")
METRICS = web.AppKey("metrics", "Metrics")
SERVICES = web.AppKey("services", "Services")
