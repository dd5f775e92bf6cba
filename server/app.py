"""create_app(settings, store_url): routes and lifespan wiring; nothing else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.api import routes as http_api
from server.api.openapi import openapi_document
from server.errors import ApiError, ErrorCode
from server.node import Node
from server.settings import Settings
from server.video.streams import StreamSource

if TYPE_CHECKING:
    from server.video.demo_stream import DemoStream

log = logging.getLogger("livecart.app")

_STATUS_CODES = {c.http_status: c for c in (
    ErrorCode.BAD_REQUEST, ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED, ErrorCode.TOO_LARGE, ErrorCode.UNSUPPORTED_MEDIA_TYPE)}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, method not allowed) in our error shape."""
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    message = "no such route" if exc.status_code == 404 else str(exc.detail)
    response = http_api.error_response(ApiError(code, message))
    response.status_code = exc.status_code
    for name, value in (exc.headers or {}).items():  # `Allow` on 405
        response.headers[name] = value
    return response


async def _api_error(request: Request, exc: Exception) -> Response:
    return http_api.as_json_response(request, exc)


async def _openapi(request: Request) -> Response:
    return http_api.JSON(openapi_document())


def create_app(settings: Settings, store_url: str) -> Starlette:
    """The HTTP app; `/ws` is not in it (server/edge/gate.py serves it without ASGI)."""
    node = Node(settings, store_url)
    stream: DemoStream | None = None
    if settings.demo and settings.demo_stream:
        from server.video.demo_stream import DemoStream

        stream = DemoStream(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        if settings.demo:
            from server.api import demo

            await demo.seed(node)
            running = stream is not None and stream.start()
            if stream is not None and running:
                app.state.streams.local_root = stream.root
            await demo.name_the_demo_stream(node, running)
        try:
            yield
        finally:
            node.drain()
            if stream is not None:
                await stream.stop()
            await node.stop()

    routes: list[BaseRoute] = [
        *http_api.ROUTES,
        Route("/openapi.json", _openapi, methods=["GET"]),
    ]
    if settings.demo:
        from server.api.demo import demo_routes

        routes.extend(demo_routes())
        if stream is not None:
            routes.append(stream.mount())
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, ApiError: _api_error,
                            Exception: _api_error},
    )
    app.state.node = node
    app.state.streams = StreamSource(settings)  # GET /api/sessions/{id}/stream.m3u8
    return app
