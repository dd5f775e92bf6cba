"""The error tree: every failure a client can see has one wire code and one HTTP status.

`ApiError` is raised anywhere in the server; the WebSocket transport turns it into an
error reply (`{"id", "ok": false, "error": {...}}`) and the HTTP layer into
`{"error": {...}}` with the matching status. Close codes are separate: they end a
connection and are only ever the ones in `CloseCode`.

Retrying: `unavailable` (503) means the store could not be reached and nothing else; the
same request (same idempotency key) may be retried. `internal` (500) is a bug in the
server: it carries a `request_id` that is also in the server's log, and is not retryable
by default (the same request will most likely fail the same way).
"""

from __future__ import annotations

import secrets
from enum import IntEnum, StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    NOT_LIVE = "not_live"
    OUT_OF_STOCK = "out_of_stock"
    SOLD_OUT = "sold_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    DEAL_ENDED = "deal_ended"
    CONFLICT = "conflict"
    ENDED = "ended"
    VOUCHER_USED_UP = "voucher_used_up"
    VOUCHER_NOT_APPLICABLE = "voucher_not_applicable"
    TOO_LARGE = "too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    MUTED = "muted"
    BANNED = "banned"
    BLOCKED = "blocked"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    STREAM_ORIGIN_REFUSED = "stream_origin_refused"  # stream_url off LIVECART_STREAM_ORIGINS
    STREAM_UPSTREAM_FAILED = "stream_upstream_failed"  # the playlist could not be fetched
    NO_STREAM = "no_stream"  # the session names no stream_url

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNKNOWN_OP: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.NOT_LIVE: 409,
    ErrorCode.OUT_OF_STOCK: 409,
    ErrorCode.SOLD_OUT: 409,
    ErrorCode.LIMIT_EXCEEDED: 409,
    ErrorCode.DEAL_ENDED: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.ENDED: 409,
    ErrorCode.VOUCHER_USED_UP: 409,
    ErrorCode.VOUCHER_NOT_APPLICABLE: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.MUTED: 403,
    ErrorCode.BANNED: 403,
    ErrorCode.BLOCKED: 422,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.STREAM_ORIGIN_REFUSED: 403,
    ErrorCode.STREAM_UPSTREAM_FAILED: 502,
    ErrorCode.NO_STREAM: 409,
}

# Errors that are the server's fault, not the client's: they never count toward a
# connection's abuse window.
SERVER_FAULTS = frozenset({ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE})


class CloseCode(IntEnum):
    """The only close codes the server sends."""

    GOING_AWAY = 1001  # server draining
    TOO_BIG = 1009  # frame over the limit
    BAD_TOKEN = 4001  # bad or expired token at connect
    IDLE = 4002  # open without joining a session (or sending anything) for the idle timeout
    SLOW_CONSUMER = 4008  # send buffer overflowed; reconnect with `since`
    BANNED = 4003  # banned from the session by its creator or a moderator; do not rejoin
    ABUSE = 4029  # too many errors or sustained rate abuse


class ApiError(Exception):
    """A failure with a wire code; `details` are extra fields of the error object."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, **self.details}


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(ErrorCode.BAD_REQUEST, message, **details)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"{what} {ident!r} does not exist", **{what: ident})


def forbidden(message: str) -> ApiError:
    return ApiError(ErrorCode.FORBIDDEN, message)


def unauthorized(message: str = "a valid token is required") -> ApiError:
    return ApiError(ErrorCode.UNAUTHORIZED, message)


def unavailable(message: str = "the store is unreachable; retry shortly") -> ApiError:
    return ApiError(ErrorCode.UNAVAILABLE, message)


def new_request_id() -> str:
    """A short random id naming one failure in the log and in the reply that reports it."""
    return secrets.token_hex(8)


def internal(request_id: str) -> ApiError:
    """A bug in the server (logged with `request_id`); not the client's fault, not retryable."""
    return ApiError(ErrorCode.INTERNAL, "internal server error (the server log names it by "
                    "request_id)", request_id=request_id)
