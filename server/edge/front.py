"""The first bytes of every TCP connection, before any HTTP or WebSocket protocol runs.

uvicorn creates one `Front` per accepted socket (its `http=` option). The Front reads the
request head and decides, once per connection:

- a head larger than the limits is answered **414** (request line) or **431** (header
  fields) and closed — never left hanging;
- a head that does not arrive within `handshake_timeout_s` closes the socket (a silent or
  trickling client holds nothing for long);
- a peer over `max_connections_per_ip` is answered **429** and closed;
- a WebSocket upgrade of the endpoint's path goes straight to a `Wire` (no HTTP parser, no
  ASGI app in between); anything else goes to uvicorn's own HTTP protocol, which serves
  the Starlette app as usual.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, Protocol, cast

from uvicorn.protocols.http.auto import AutoHTTPProtocol

# uvicorn's default HTTP protocol (httptools when installed, else h11), created the way
# uvicorn creates every `http=` protocol class.
HTTP_PROTOCOL: Any = AutoHTTPProtocol


def plain_response(status: int, text: str) -> bytes:
    """A complete `Connection: close` HTTP/1.1 response with a short text body."""
    body = text.encode()
    phrase = HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class HeadLimits(Protocol):
    @property
    def request_line(self) -> int: ...
    @property
    def head(self) -> int: ...


class Gate(Protocol):
    """What a Front asks of the /ws endpoint (server/edge/gate.py implements it)."""

    @property
    def limits(self) -> HeadLimits: ...

    def front_opened(self, front: Front) -> bool: ...

    def front_closed(self, front: Front) -> None: ...

    def is_upgrade(self, head: bytes, line_end: int, end: int) -> bool: ...

    def wire(self, server_state: Any) -> asyncio.Protocol: ...


class Front(asyncio.Protocol):
    """Reads one request head, then hands the socket to a Wire or to uvicorn's HTTP."""

    __slots__ = ("app_state", "buf", "config", "gate", "handed", "loop", "peer",
                 "server_state", "transport")

    def __init__(self, gate: Gate, *, config: Any, server_state: Any, app_state: Any,
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.gate = gate
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.peer = ""
        self.handed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.gate.front_opened(self):
            self.handed = True
            transport.write(plain_response(429, "too many connections from this address\n"))
            transport.close()
            return
        self.server_state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.handed:
            return
        buf = self.buf = self.buf + data if self.buf else data
        end = buf.find(b"\r\n\r\n")
        limits = self.gate.limits
        if end < 0:
            line_end = buf.find(b"\r\n")
            if line_end < 0 and len(buf) > limits.request_line:
                self.refuse(414, "request line too long")
            elif len(buf) > limits.head:
                self.refuse(431, "request header fields too large")
            return
        line_end = buf.find(b"\r\n")
        if line_end > limits.request_line:
            self.refuse(414, "request line too long")
            return
        if end > limits.head:
            self.refuse(431, "request header fields too large")
            return
        if self.gate.is_upgrade(buf, line_end, end):
            self._hand_over(self.gate.wire(self.server_state))
        else:
            self._hand_over(HTTP_PROTOCOL(config=self.config, server_state=self.server_state,
                                          app_state=self.app_state, _loop=self.loop))

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        transport = self.transport
        assert transport is not None
        buf, self.buf = self.buf, b""
        self._done()
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        protocol.data_received(buf)

    def refuse(self, status: int, text: str) -> None:
        """Answer with `status` and close (oversized head, handshake timeout...)."""
        transport = self.transport
        self._done()
        if transport is not None and not transport.is_closing():
            transport.write(plain_response(status, text + "\n"))
            transport.close()

    def _done(self) -> None:
        if not self.handed:
            self.handed = True
            self.server_state.connections.discard(self)
            self.gate.front_closed(self)

    def timed_out(self) -> None:
        """No complete request head within the handshake timeout."""
        self.refuse(408, "no complete request within the handshake timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()

    def shutdown(self) -> None:  # uvicorn's shutdown: nothing has started here yet
        self.refuse(503, "server draining")
