"""The only module that touches Starlette's WebSocket: handshake checks and the read loop.

Handshake: an Origin outside the allow-list is refused (403); a bad or expired token is
accepted then closed with 4001; the codec is chosen by subprotocol. After that every byte
the server sends goes through the connection's `Wire` (see wire.py).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.auth import ANONYMOUS, Identity, verify_token
from server.codecs import choose
from server.errors import ApiError, CloseCode
from server.node import Node
from server.wire import WIRE_EXTENSION, Wire

log = logging.getLogger("livecart.transport")


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    return not allowed or origin is None or origin in allowed or "*" in allowed


class WebSocketFastPath:
    """ASGI wrapper: `/ws` goes straight to the endpoint, skipping Starlette's routing and
    middleware (a measurable share of a join spike); everything else goes to the app."""

    def __init__(self, app: Any, node: Node, path: str = "/ws") -> None:
        self.app, self.node, self.path = app, node, path

    def __getattr__(self, name: str) -> Any:  # `state`, `routes`, ... of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.path:
            await serve_socket(WebSocket(scope, receive, send), self.node)
        else:
            await self.app(scope, receive, send)


async def serve_socket(websocket: WebSocket, node: Node) -> None:
    wire = websocket.scope.get("extensions", {}).get(WIRE_EXTENSION)
    if not isinstance(wire, Wire) or node.draining:
        await websocket.close()  # before accept: the handshake is refused
        return
    if not origin_allowed(websocket.headers.get("origin"), node.settings.allowed_origins):
        await websocket.close()
        return
    offered = list(websocket.scope.get("subprotocols", []))
    codec = choose(offered)
    await websocket.accept(subprotocol=codec.name if codec.name in offered else None)

    identity: Identity = ANONYMOUS
    token = websocket.query_params.get("token")
    if token:
        try:
            identity = verify_token(node.secret, token)
        except ApiError as exc:
            wire.close_now(CloseCode.BAD_TOKEN, exc.message)
            return

    client = node.connect(wire, codec, identity)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is None or client.evicted:
                continue
            await node.handle(client, data)
    except WebSocketDisconnect:
        pass
    finally:
        node.disconnect(client)
