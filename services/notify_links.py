"""Links that emails carry: signed one-click unsubscribe links (RFC 8058) and the sealed
account tokens of reset and verification emails.

The unsubscribe key is generated once per deployment and kept sealed in ``app_secrets``
(``unsubscribe``). An account email's token is queued sealed to its delivery row (context
``delivery:<source>``), so the outbox never holds a usable reset token in the clear; the row's
payload is emptied once it is sent or dead.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import urlencode

import asyncpg

from cluster.config import Settings
from models.notifications import unsubscribe_token
from services.secrets import Keys
from store import notifications_store as st

UNSUBSCRIBE_PATH = "/api/v1/notifications/unsubscribe"


class Links:
    """Owns the unsubscribe signing key and builds the app's public links."""

    def __init__(self, settings: Settings, db: asyncpg.Pool, keys: Keys) -> None:
        self.settings = settings
        self.db = db
        self.keys = keys
        self.key = b""

    async def start(self) -> None:
        fresh = base64.b64encode(secrets.token_bytes(32)).decode()
        sealed = await st.app_secret(
            self.db, "unsubscribe", self.keys.seal(fresh, "app:unsubscribe")
        )
        self.key = base64.b64decode(self.keys.open(sealed, "app:unsubscribe"))

    def app_url(self, path: str = "/") -> str:
        base = (self.settings.public_url or "http://localhost:8080").rstrip("/")
        return base + path

    def unsubscribe_url(self, user_id: str, scope: str) -> str:
        token = unsubscribe_token(self.key, user_id, scope)
        return (
            self.app_url(UNSUBSCRIBE_PATH) + "?" + urlencode({"u": user_id, "s": scope, "t": token})
        )

    def seal_account_payload(self, source: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"sealed": self.keys.seal(json.dumps(data), f"delivery:{source}")}

    def open_account_payload(self, payload: dict[str, Any], source: str) -> dict[str, Any]:
        sealed = payload.get("sealed")
        if not sealed:
            return {}
        opened: dict[str, Any] = json.loads(self.keys.open(sealed, f"delivery:{source}"))
        return opened
