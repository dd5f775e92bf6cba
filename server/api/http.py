"""HTTP plumbing shared by the route modules: JSON in, JSON out.

Errors are `{"error": {"code", "message"}}` with the status of their wire code. A body
must be declared `Content-Type: application/json` (415 `unsupported_media_type`
otherwise), at most MAX_BODY bytes (413 `too_large`). A bug answers 500 `internal` with a
`request_id` that the log line of its traceback carries too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import validate as v
from server.auth import Identity, verify_token
from server.errors import (
    ApiError,
    ErrorCode,
    bad_request,
    internal,
    new_request_id,
    not_found,
    unauthorized,
)
from server.node import Node

log = logging.getLogger("livecart.http")

MAX_BODY = 64 * 1024
JSON_MEDIA_TYPE = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: ApiError) -> Response:
    return JSON({"error": exc.to_wire()}, status_code=exc.code.http_status)


def node_of(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def identity_of(request: Request) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send `Authorization: Bearer <token>`")
    return verify_token(node_of(request).secret, token.strip())


def check_json_content_type(request: Request) -> None:
    """415 unless the body is declared `application/json` (parameters such as charset ok)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                       f"send the body as `Content-Type: {JSON_MEDIA_TYPE}`",
                       content_type=media_type or None)


async def body_of(request: Request) -> Any:
    """The JSON body: 413 over MAX_BODY, 400 when absent, 415 when not declared JSON, 400
    when not valid JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(ErrorCode.TOO_LARGE, f"body over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # never buffer more than the limit
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(ErrorCode.TOO_LARGE, f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise bad_request("a JSON body is required")
    check_json_content_type(request)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"invalid JSON: {exc}") from exc


def path_id(request: Request, name: str = "id") -> str:
    value = request.path_params[name]
    if not v.is_id(value):
        raise not_found(name if name != "id" else "resource", value)
    return str(value)


def route(path: str, **by_method: Endpoint) -> Route:
    """One route per path, so a 405 lists every method of that path in `Allow`; every
    failure answered here as its error (a bug: 500 `internal`, logged once)."""

    async def dispatch(request: Request) -> Response:
        endpoint = by_method[request.method if request.method != "HEAD" else "GET"]
        try:
            return await endpoint(request)
        except Exception as exc:
            return as_json_response(request, exc)

    return Route(path, dispatch, methods=list(by_method))


def as_json_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error_response(exc)
    request_id = new_request_id()
    log.error("%s %s failed (request_id %s)", request.method, request.url.path, request_id,
              exc_info=exc, extra={"request_id": request_id})
    return error_response(internal(request_id))
