"""REST plumbing shared by every handler: typed errors, size-limited JSON bodies, rate limits.

A handler raises ``AppError`` subclasses; ``error_middleware`` turns them into
``{"error": {"code", "message"}}`` with the error's status. Anything else is logged with context
and answered as a typed 500-free ``unavailable`` (never a stack trace to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.input_guard import check_text, check_value, loads_json
from models.errors import AppError, BadRequest, NotFound, TooLarge, Unavailable

log = logging.getLogger("hyperlocal.http")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


WS_PATH = "/ws"
"""The websocket endpoint. The middlewares below pass its GET straight to its handler, which
makes their checks itself before the upgrade (gateway/ws.py): a middleware's coroutine frame
around it would stay alive as long as the socket, and after the upgrade there is no answer left
to replace."""


def is_socket(request: web.Request) -> bool:
    """Whether ``request`` is for the websocket handler (see ``WS_PATH``)."""
    return request.path == WS_PATH and request.method == "GET"


def error_response(err: AppError, headers: dict[str, str] | None = None) -> web.Response:
    """``{"error": ...}`` with the error's status; a temporary error says when to retry."""
    if headers is None and err.temporary:
        headers = {"Retry-After": str(err.details.get("retry_after_s", 1))}
    return web.json_response({"error": err.to_dict()}, status=err.http_status, headers=headers)


@web.middleware
def error_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    if is_socket(request):
        return handler(request)
    return _answer_errors(request, handler)


async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "bad_request", 413: "too_large"}.get(exc.status)
        code = code or ("bad_request" if exc.status < 500 else "unavailable")
        body = {"error": {"code": code, "message": exc.reason}}
        kept = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}  # 405: RFC 9110
        return web.json_response(body, status=exc.status, headers=kept or None)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(Unavailable("internal error, try again"))


@web.middleware
def input_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Refuse a path or query holding a NUL byte or a lone surrogate before any handler sees
    it (``check_request_text``). Raises synchronously, inside ``error_middleware``'s wait."""
    if not is_socket(request):
        check_request_text(request)
    return handler(request)


def check_request_text(request: web.Request) -> None:
    """A path holding a NUL byte or a lone surrogate names nothing (``not_found``), a query
    holding one is ``bad_request`` (gateway/input_guard.py); neither reaches a database."""
    try:
        check_text(request.path, "path")
    except BadRequest:
        raise NotFound("no such resource") from None
    if request.query_string:
        for name, value in request.query.items():
            check_text(name, "query")
            check_text(value, f"query {name}")


def validation_message(exc: ValidationError) -> str:
    """One readable line naming each bad field, without echoing the input back."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_model(model: type[M], payload: Any) -> M:
    """Validate plain data into ``model`` or raise ``bad_request`` naming the fields."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None


WEBHOOK_MAX_BODY = 512 * 1024
"""A payment provider's webhook body is at most this many bytes (Stripe's, PayPal's, UPI's)."""


async def read_webhook_body(request: web.Request) -> bytes:
    """A provider's webhook body, raw (its signature covers these very bytes); ``too_large``
    past ``WEBHOOK_MAX_BODY``, told by its Content-Length or by what arrived."""
    if request.content_length is not None and request.content_length > WEBHOOK_MAX_BODY:
        raise TooLarge("webhook body too large")
    payload = await request.read()
    if len(payload) > WEBHOOK_MAX_BODY:
        raise TooLarge("webhook body too large")
    return payload


async def read_json(request: web.Request, model: type[M]) -> M:
    """Read a JSON object body (size-limited by the app's client_max_size) into ``model``."""
    if request.content_length is not None and request.content_length > request._client_max_size:
        raise TooLarge("request body too large")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge("request body too large") from None
    try:
        payload = loads_json(raw) if raw else None
    except ValueError:  # incl. UnicodeDecodeError
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    check_value(payload)
    return parse_model(model, payload)
