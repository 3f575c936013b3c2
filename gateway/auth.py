"""The accounts REST endpoints: thin adapters over services/accounts.py.

``require_principal`` is the one gate of every user endpoint: a Bearer access token, verified
fully and checked against its live sign-in (services/accounts.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import SERVICES, SETTINGS
from gateway.http import read_json
from gateway.ratelimit import client_address
from models.auth import Principal
from models.errors import Unauthorized
from services.accounts import LoginBody, RefreshBody, SignupBody
from store import users
from store.users import UserRow


async def require_principal(request: web.Request) -> Principal:
    """The caller of a REST request, or ``unauthorized``."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("missing Authorization: Bearer <access_token>")
    return await request.app[SERVICES].accounts.authenticate_bearer(header)


def _signed_in(user: UserRow, tokens: dict[str, str]) -> dict[str, Any]:
    return {"user": user.public(), **tokens}


def _address(request: web.Request) -> str:
    return client_address(request, request.app[SETTINGS].trusted_proxy_hops)


async def signup_view(request: web.Request) -> web.Response:
    body = await read_json(request, SignupBody)
    services = request.app[SERVICES]
    signup = await services.accounts.signup(body, _address(request))
    if request.app[SETTINGS].smtp_url:  # a link to confirm the address, or a word to its owner
        await services.account_emails.after_signup(signup.user.id, signup.taken_by)
    return web.json_response(_signed_in(signup.user, signup.tokens), status=201)


async def login_view(request: web.Request) -> web.Response:
    body = await read_json(request, LoginBody)
    user, tokens = await request.app[SERVICES].accounts.login(body, _address(request))
    return web.json_response(_signed_in(user, tokens))


async def refresh_view(request: web.Request) -> web.Response:
    tokens = await request.app[SERVICES].accounts.refresh(await read_json(request, RefreshBody))
    return web.json_response(tokens)


async def logout_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    await request.app[SERVICES].accounts.logout(principal)
    return web.Response(status=204)


async def ws_ticket_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    return web.json_response(await request.app[SERVICES].accounts.issue_ticket(principal))


async def me_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    user = await users.by_id(request.app[SERVICES].db, principal.user_id)
    if user is None:
        raise Unauthorized("this account no longer exists")
    return web.json_response({"user": user.public()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/auth/signup", signup_view)
    app.router.add_post("/api/v1/auth/login", login_view)
    app.router.add_post("/api/v1/auth/refresh", refresh_view)
    app.router.add_post("/api/v1/auth/logout", logout_view)
    app.router.add_post("/api/v1/auth/ws-ticket", ws_ticket_view)
    app.router.add_get("/api/v1/me", me_view)
