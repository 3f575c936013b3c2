"""Typed keys of what the aiohttp application holds (one setup and teardown each, see app.py).

The application layer is one ``Services`` container (services/container.py); the edge adds
only what belongs to sockets: the session registry and the fanout hub.
"""

from __future__ import annotations

from aiohttp import web

from cluster.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.sessions import SessionRegistry
from services.container import Services

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
SERVICES = web.AppKey("services", Services)
SESSIONS = web.AppKey("sessions", SessionRegistry)
HUB = web.AppKey("hub", Hub)
