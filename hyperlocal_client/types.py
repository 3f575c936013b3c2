"""The client's values: a typed error and a signed-in user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """A typed error answer: ``{"error": {"code", "message", "details"?}}`` and its status (0: a
    websocket error reply)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s
        """A ``429``'s ``Retry-After``, in seconds, when it gave one."""


@dataclass
class SignIn:
    """A signed-in user: its id, email and tokens."""

    id: str
    email: str
    access_token: str
    refresh_token: str
    display_name: str = ""
