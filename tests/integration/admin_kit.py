"""Helpers of the admin tests: staff made through the control actor, as the operator would."""

from __future__ import annotations

from typing import Any

from cluster.config import Settings
from services.control import RayControl
from tests.integration.client import Api, User


async def operator(settings: Settings, action: str, args: dict[str, Any]) -> dict[str, Any]:
    """An action of the operator (the CLI's actor) on the session's control actor."""
    control = RayControl(settings.control_actor_name, settings.ray_namespace, 30)
    return await control.call(action, None, args)


async def staff(api: Api, settings: Settings, role: str, name: str | None = None) -> User:
    user = await api.signup(name or role)
    if role not in ("user",):
        await operator(settings, "users.grant", {"email": user.email, "role": role})
    return user
