"""The application's errors: one small hierarchy with typed fields.

Handlers and services raise these; a per-protocol renderer (see
:mod:`app.middleware`) turns them into the wire format of the client's protocol
in one place, before the response has started.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400
    code = "BAD_REQUEST"


class Unauthorized(ApiError):
    """No credentials where some are needed, or credentials that do not verify; the
    format's challenge (``WWW-Authenticate``) goes in ``headers``."""

    status = 401
    code = "UNAUTHORIZED"


class Forbidden(ApiError):
    """Credentials that verify, for someone not allowed to do this."""

    status = 403
    code = "DENIED"


class TooManyRequests(ApiError):
    status = 429
    code = "TOO_MANY_REQUESTS"


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class ContentMissing(NotFound):
    """A row names content whose stored object is gone: answered before any byte of
    a 200, never as a cut body."""

    code = "CONTENT_MISSING"


class MethodNotAllowed(ApiError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


class Conflict(ApiError):
    status = 409
    code = "CONFLICT"


class LengthRequired(ApiError):
    status = 411
    code = "LENGTH_REQUIRED"


class PayloadTooLarge(ApiError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class RangeNotSatisfiable(ApiError):
    status = 416
    code = "RANGE_NOT_SATISFIABLE"


class DigestMismatch(ApiError):
    status = 400
    code = "DIGEST_MISMATCH"


class Unavailable(ApiError):
    status = 503
    code = "UNAVAILABLE"


class BadGateway(ApiError):
    status = 502
    code = "BAD_GATEWAY"


class GatewayTimeout(ApiError):
    status = 504
    code = "GATEWAY_TIMEOUT"


def error_for_status(status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
    """An error of the class that owns ``status`` (for aiohttp's own HTTP exceptions)."""
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
                LengthRequired, PayloadTooLarge, RangeNotSatisfiable, TooManyRequests,
                Unavailable):  # fmt: skip
        if cls.status == status:
            return cls(message, headers=headers)
    error = ApiError(message, headers=headers)
    error.status, error.code = status, f"HTTP_{status}"
    return error
