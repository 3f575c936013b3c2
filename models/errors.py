"""One error taxonomy for the whole product.

Every failure a client can see is an ``AppError`` with a stable ``code`` from PROTOCOL.md. The
gateway maps it to a websocket error reply or an HTTP status; lower-level errors (asyncpg, redis,
Ray) are translated into these at the boundary and never leak to a client.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """A typed, client-visible error: ``{"code": ..., "message": ...}``."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    temporary: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(AppError):
    code = "bad_request"
    http_status = 400


class Unauthorized(AppError):
    code = "unauthorized"
    http_status = 401


class OtpRequired(Unauthorized):
    """The password was right; this account has two-factor on: sign in again with ``otp``."""

    code = "otp_required"


class Forbidden(AppError):
    code = "forbidden"
    http_status = 403


class NotFound(AppError):
    code = "not_found"
    http_status = 404


class Conflict(AppError):
    code = "conflict"
    http_status = 409


class TooLarge(AppError):
    code = "too_large"
    http_status = 413


class RateLimited(AppError):
    code = "rate_limited"
    http_status = 429
    temporary = True


class OutOfStock(AppError):
    code = "out_of_stock"
    http_status = 409


class PaymentFailed(AppError):
    code = "payment_failed"
    http_status = 402


class Unavailable(AppError):
    """Retry later: a dependency (shard, database, redis) is down or overloaded."""

    code = "unavailable"
    http_status = 503
    temporary = True


ERRORS_BY_CODE: dict[str, type[AppError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        OtpRequired,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        RateLimited,
        OutOfStock,
        PaymentFailed,
        Unavailable,
    )
}


def error_from_dict(body: dict[str, Any]) -> AppError:
    """Rebuild an error that crossed a process boundary as plain data (shard to gateway)."""
    cls = ERRORS_BY_CODE.get(str(body.get("code")), Unavailable)
    return cls(str(body.get("message", "")), **dict(body.get("details") or {}))
