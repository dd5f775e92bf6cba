"""`/ws` for one node: the handshake policy, connection limits and timeouts, and the read
side of every connection. The only module that decides who may open a WebSocket.

A connection's life: uvicorn accepts the socket and creates a `Front` (server/edge/front.py),
which reads the request head (size limits, handshake timeout, per-IP cap) and hands a
WebSocket upgrade of `/ws` to a `Wire` (server/edge/wire.py). The Wire's handshake asks
`Gate.handshake`: wrong path → 404, draining → 503, Origin outside the allow-list → 403,
too many connections from the address → 429; otherwise 101 with the chosen codec's
subprotocol. Once open, a token (`?token=` or `Authorization: Bearer`) is verified — a bad
one is accepted then closed with 4001 — and the node gets the connection. Each message
goes to `Node.handle`, one at a time per connection. `/ws` never passes through ASGI or
Starlette: the Gate calls the node directly.

Timeouts (one sweep timer for the whole node, not one per connection): a head not
complete within `handshake_timeout_s` is answered 408 and closed; an open connection that
has not joined a session and sent nothing for `idle_timeout_s` is closed with 4002;
every `ping_interval_s` a connection that sent nothing gets a ping, and one that still
sent nothing by the next round is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from websockets.http11 import Request, Response

from server.auth import ANONYMOUS, Identity, verify_token
from server.edge.client import Client
from server.edge.codecs import CODECS, JSON, Codec, choose
from server.edge.front import Front
from server.edge.wire import Wire
from server.errors import ApiError, CloseCode
from server.settings import Settings

log = logging.getLogger("livecart.transport")

TOKEN_CACHE_MAX = 8192


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    return not allowed or origin is None or origin in allowed or "*" in allowed


def offered_subprotocols(request: Request) -> list[str]:
    return [token.strip() for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for token in header.split(",") if token.strip()]


def request_token(request: Request) -> tuple[str | None, str | None]:
    """(token, problem): the token from `?token=` or `Authorization: Bearer`; `problem`
    explains a header that cannot be used (closed with 4001, never silently ignored)."""
    _, _, query = request.path.partition("?")
    from_query = dict(parse_qsl(query)).get("token") if "token=" in query else None
    header = request.headers.get("Authorization")
    if header is None:
        return from_query or None, None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None, "the Authorization header must be `Bearer <token>`"
    if from_query and from_query != value:
        return None, "two different tokens (query and Authorization header)"
    return value, None


class Connections(Protocol):
    """What the Gate hands connections to (the node)."""

    settings: Settings
    secret: str
    draining: bool

    def connect(self, sink: Wire, codec: Codec, identity: Identity) -> Client: ...

    async def handle(self, client: Client, data: str | bytes) -> None: ...

    def disconnect(self, client: Client) -> None: ...


@dataclass(frozen=True, slots=True)
class HeadLimits:
    request_line: int
    head: int


class Gate:
    """The /ws endpoint of one node (implements `wire.Endpoint`)."""

    def __init__(self, node: Connections, path: str = "/ws") -> None:
        self.node = node
        s: Settings = node.settings
        self.settings = s
        self.path = path
        self._path_bytes = path.encode()
        self.limits = HeadLimits(s.max_request_line_bytes, s.max_request_head_bytes)
        self.wires: set[Wire] = set()
        self.fronts: dict[Front, float] = {}  # -> handshake deadline (loop time)
        self.loose: dict[Wire, float] = {}  # open, not joined yet -> idle deadline
        self.per_ip: Counter[str] = Counter()
        self._identities: dict[str, Identity] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._next_ping = 0.0
        self._sweep_s = max(0.05, min(1.0, s.handshake_timeout_s / 4, s.idle_timeout_s / 4,
                                      s.ping_interval_s / 4))

    # uvicorn --------------------------------------------------------------------------

    def protocols(self) -> dict[str, Any]:
        """uvicorn.Config arguments: the Front for every socket, the Wire for upgrades
        that uvicorn's own HTTP protocol sees (a later request on a keep-alive socket)."""
        return {"http": functools.partial(Front, self),
                "ws": functools.partial(Wire, self, max_size=self.settings.max_frame_bytes)}

    def wire(self, server_state: Any) -> Wire:
        return Wire(self, max_size=self.settings.max_frame_bytes, server_state=server_state)

    # fronts ---------------------------------------------------------------------------

    def front_opened(self, front: Front) -> bool:
        """Admit a new socket (False: over the per-IP cap) and start its handshake clock."""
        if self._over_cap(front.peer):
            return False
        loop = asyncio.get_running_loop()
        self.fronts[front] = loop.time() + self.settings.handshake_timeout_s
        self.per_ip[front.peer] += 1
        self._arm()
        return True

    def front_closed(self, front: Front) -> None:
        if self.fronts.pop(front, None) is not None:
            self._release(front.peer)

    def is_upgrade(self, head: bytes, line_end: int, end: int) -> bool:
        """Is this request head a WebSocket upgrade of our path? (A cheap look; the Wire's
        ServerProtocol validates the handshake itself.)"""
        line = head[:line_end]
        if not line.startswith(b"GET "):
            return False
        target = line[4:line.rfind(b" ")]
        path = target.split(b"?", 1)[0]
        return path == self._path_bytes and b"websocket" in head[line_end:end].lower()

    def _over_cap(self, peer: str) -> bool:
        cap = self.settings.max_connections_per_ip
        return bool(cap) and self.per_ip[peer] >= cap

    def _release(self, peer: str) -> None:
        left = self.per_ip[peer] - 1
        if left > 0:
            self.per_ip[peer] = left
        else:
            del self.per_ip[peer]

    # wire.Endpoint ----------------------------------------------------------------------

    def handshake(self, wire: Wire, request: Request) -> Response:
        path = request.path.partition("?")[0]
        if path != self.path:
            return wire.reject(404, "no WebSocket endpoint here\n")
        if self.node.draining:
            return wire.reject(503, "server draining\n")
        if not origin_allowed(request.headers.get("Origin"), self.settings.allowed_origins):
            return wire.reject(403, "origin not allowed\n")
        if self._over_cap(wire.peer):
            return wire.reject(429, "too many connections from this address\n")
        response = wire.conn.accept(request)
        if response.status_code == 101:
            offered = offered_subprotocols(request)
            codec = choose(offered)
            if codec.name in offered:
                response.headers["Sec-WebSocket-Protocol"] = codec.name
        return response

    def opened(self, wire: Wire, request: Request, response: Response) -> None:
        codec = CODECS.get(response.headers.get("Sec-WebSocket-Protocol") or "", JSON)
        token, problem = request_token(request)
        identity = ANONYMOUS
        if problem is not None:
            wire.close_now(CloseCode.BAD_TOKEN, problem)
            return
        if token:
            try:
                identity = self.verify(token)
            except ApiError as exc:
                wire.close_now(CloseCode.BAD_TOKEN, exc.message)
                return
        wire.client = self.node.connect(wire, codec, identity)
        self.wires.add(wire)
        self.per_ip[wire.peer] += 1
        self.loose[wire] = asyncio.get_running_loop().time() + self.settings.idle_timeout_s
        self._arm()

    async def serve(self, wire: Wire, data: bytes) -> None:
        client = wire.client
        if client is None or client.evicted:
            return
        if wire in self.loose:
            self.loose[wire] = asyncio.get_running_loop().time() + self.settings.idle_timeout_s
        await self.node.handle(client, data)

    def lost(self, wire: Wire) -> None:
        self.loose.pop(wire, None)
        if wire in self.wires:
            self.wires.discard(wire)
            self._release(wire.peer)
        if wire.client is not None:
            self.node.disconnect(wire.client)

    # tokens -----------------------------------------------------------------------------

    def verify(self, token: str) -> Identity:
        """`verify_token`, remembered per token until it expires (reconnect storms verify
        each token once). Bounded: the oldest entries go first."""
        known = self._identities.get(token)
        if known is not None and not known.expired():
            return known
        identity = verify_token(self.node.secret, token)
        if len(self._identities) >= TOKEN_CACHE_MAX:
            for old in list(self._identities)[: TOKEN_CACHE_MAX // 4]:
                del self._identities[old]
        self._identities[token] = identity
        return identity

    # the sweep --------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            if not self._next_ping:
                self._next_ping = loop.time() + self.settings.ping_interval_s
            self._timer = loop.call_later(self._sweep_s, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        for front, deadline in list(self.fronts.items()):
            if now >= deadline:
                front.timed_out()
        idle = self.settings.idle_timeout_s
        for wire, deadline in list(self.loose.items()):
            client = wire.client
            if client is None or client.session is not None or not wire.open:
                del self.loose[wire]
            elif now >= deadline:
                del self.loose[wire]
                wire.close_now(CloseCode.IDLE, f"idle: join a session within {idle:g} s")
        if now >= self._next_ping:
            self._next_ping = now + self.settings.ping_interval_s
            for wire in list(self.wires):
                if wire.pinged:  # nothing came back since our last ping
                    wire.abort()
                elif not wire.seen:
                    wire.ping()
                wire.seen = False
        if self.fronts or self.wires or self.loose:
            self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
