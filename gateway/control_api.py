"""REST adapters in front of the control actor: the one shape every such handler has.

Such a handler builds the action's arguments from the request — path parameters, query
parameters (each at most 256 characters; absent ones are left out), a JSON body validated into
its model (a ``bad_request`` never reaches the actor) — then authenticates the caller (roles as
Postgres has them now) and calls one action of the control actor (services/control.py), which
checks the permission (models/rbac.py), runs it and writes its audit entry. Typed errors become
answers in ``error_middleware`` (gateway/http.py). The arguments are read before the caller is
authenticated, so a malformed request is ``bad_request`` whoever sends it.

``ControlRoute`` declares one such endpoint; ``act`` and ``query_args`` are the steps, for
handlers that need more than a route can say (gateway/admin_api.py, money_api.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.http import read_json
from models.errors import BadRequest
from models.rbac import Staff


async def staff(request: web.Request) -> Staff:
    """The signed-in caller as the control actor judges it (``unauthorized`` otherwise)."""
    principal = await require_principal(request)
    return Staff(principal.user_id, principal.roles)


async def act(
    request: web.Request, action: str, args: dict[str, Any], status: int = 200
) -> web.Response:
    """Call ``action`` with ``args`` as the signed-in caller; its answer as JSON."""
    caller = await staff(request)
    result = await request.app[SERVICES].control.call(action, caller, args)
    return web.json_response(result, status=status)


def query_args(request: web.Request, *names: str) -> dict[str, Any]:
    """The query parameters ``names`` that are present (each at most 256 characters)."""
    out: dict[str, Any] = {}
    for name in names:
        value = request.query.get(name)
        if value is not None:
            if len(value) > 256:
                raise BadRequest(f"{name}: too long")
            out[name] = value
    return out


@dataclass(frozen=True)
class ControlRoute:
    """``method path`` calls the control action ``action`` with: the path parameters
    ``path_args``, the query parameters ``query``, and the body validated into ``body`` — its
    fields as arguments themselves, or all of it under ``body_key``. With ``body_optional``, a
    request without a body sends the model's defaults."""

    method: str
    path: str
    action: str
    path_args: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    body_key: str | None = None
    body_optional: bool = False

    async def arguments(self, request: web.Request) -> dict[str, Any]:
        """The action's arguments from ``request`` (``bad_request`` for a bad body or query)."""
        args: dict[str, Any] = {name: request.match_info[name] for name in self.path_args}
        args.update(query_args(request, *self.query))
        if self.body is not None:
            if self.body_optional and not request.can_read_body:
                body = self.body()
            else:
                body = await read_json(request, self.body)
            fields = body.model_dump(mode="json")
            args.update({self.body_key: fields} if self.body_key else fields)
        return args

    async def handle(self, request: web.Request) -> web.Response:
        return await act(request, self.action, await self.arguments(request))


def add_control_routes(app: web.Application, routes: Iterable[ControlRoute]) -> None:
    """Serve each of ``routes``."""
    for route in routes:
        if route.method == "GET":  # and HEAD, as add_get serves it
            app.router.add_get(route.path, route.handle)
        else:
            app.router.add_route(route.method, route.path, route.handle)
