"""One WebSocket connection as a socket: the public `websockets` sans-I/O `ServerProtocol`
under an asyncio protocol of our own, with a direct, bounded write path.

The handshake, reads, pings and the closing handshake go through `ServerProtocol`
(`receive_data`, `events_received`, `data_to_send`, `accept`, `send_response`,
`send_close`). Whatever policy decides (origin, path, token, what a message means) is the
`Endpoint`'s (server/edge/gate.py); this module only moves bytes.

Writes. Server frames are unmasked, so the hub builds each frame once and writes those
bytes straight to the asyncio transport (`fast_path()`: the transport's own `write`, a C
method under uvloop) while the connection is *flowing*. The transport's buffer is kept
small (`TRANSPORT_HIGH_WATER`): when it passes that mark the transport calls
`pause_writing()`, the connection becomes *held* and further frames wait in this wire's
own queue (bounded by the caller: `Client.max_buffer`); `resume_writing()` feeds the queue
back. Evicting a slow consumer (`close_now(4008)`) discards that queue and sends the close
frame alone, behind at most the small transport buffer, so the close code arrives.
A drain (`close_now(1001, drop_queued=False)`) sends the close frame behind what is queued.

Reads. Commands of one connection run one at a time, in order: the endpoint's `serve`
coroutine runs only while messages are waiting (no task per idle connection), and reading
pauses while `INBOX_PAUSE` messages wait.

`gone` turns True the moment no further data frame may be written (a close frame went out,
the peer's close was answered, or the socket was lost); `held` is True while frames must go
through `write()` (gone, paused, or queued frames waiting). The hub checks `held` once per
viewer and otherwise calls the transport directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger("livecart.wire")

# websockets logs "connection open" / "connection closed" at INFO for every connection:
# a join spike must not write a log line per viewer.
HANDSHAKE_LOG = logging.getLogger("livecart.wire.ws")
HANDSHAKE_LOG.setLevel(logging.WARNING)

TRANSPORT_HIGH_WATER = 32 * 1024  # bytes in the transport before frames queue here
TRANSPORT_LOW_WATER = 8 * 1024
INBOX_PAUSE = 8  # messages waiting before reading pauses
CLOSE_TIMEOUT_S = 2.0
GOING_AWAY = 1001  # after our close frame: drop the socket if the peer never answers

FastPath = tuple[Callable[[bytes], object], Callable[[], int]]


class Endpoint(Protocol):
    """What a Wire asks of the server (server/edge/gate.py implements it)."""

    def handshake(self, wire: Wire, request: Request) -> Response:
        """A 101 response (`wire.conn.accept(request)`, maybe with headers) or a rejection."""

    def opened(self, wire: Wire, request: Request, response: Response) -> None:
        """The 101 went out: the connection is open."""

    def serve(self, wire: Wire, data: bytes) -> Awaitable[None]:
        """Handle one complete message (runs one at a time per connection)."""

    def lost(self, wire: Wire) -> None:
        """The socket is gone (called once)."""


class Wire(asyncio.Protocol):
    """An asyncio protocol for one WebSocket: handshake, frames, flow control, close."""

    __slots__ = (
        "client", "close_timer", "conn", "endpoint", "fragments", "gone", "held", "inbox",
        "is_open", "lost_called", "paused", "peer", "pinged", "queue", "queued",
        "read_paused", "seen", "server_state", "started", "transport", "worker",
    )

    def __init__(self, endpoint: Endpoint, *, max_size: int,
                 server_state: Any = None, **_uvicorn: Any) -> None:
        self.endpoint = endpoint
        self.server_state = server_state  # uvicorn's: its shutdown() reaches us there
        self.conn = ServerProtocol(max_size=max_size, logger=HANDSHAKE_LOG)
        self.transport: asyncio.Transport | None = None
        self.client: Any = None  # the endpoint's per-connection object
        self.peer = ""
        self.started = 0.0
        self.is_open = False
        self.gone = False
        self.held = True  # until the handshake completes
        self.paused = False
        self.queue: deque[bytes] | None = None
        self.queued = 0
        self.inbox: deque[bytes] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.read_paused = False
        self.fragments: list[bytes] | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.seen = True  # data arrived since the last keepalive round
        self.pinged = False
        self.lost_called = False

    # asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        transport.set_write_buffer_limits(TRANSPORT_HIGH_WATER, TRANSPORT_LOW_WATER)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.started = asyncio.get_running_loop().time()
        if self.server_state is not None:
            self.server_state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.seen = True
        self.pinged = False
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)
        self._flush_protocol()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self._flush_protocol()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = self.held = True
        self.is_open = False
        self.queue = None
        self.queued = 0
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        if not self.lost_called:
            self.lost_called = True
            self.endpoint.lost(self)

    def pause_writing(self) -> None:
        self.paused = self.held = True

    def resume_writing(self) -> None:
        self.paused = False
        transport = self.transport
        queue = self.queue
        while queue and not self.paused and transport is not None:
            data = queue.popleft()
            self.queued -= len(data)
            transport.write(data)
        if not queue and not self.paused and not self.gone and self.is_open:
            self.queue = None
            self.held = False

    # handshake ----------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        response = self.endpoint.handshake(self, request)
        self.conn.send_response(response)
        if response.status_code != 101:
            self.gone = True
            return
        self.is_open = True
        self.held = self.paused or self.gone
        self.endpoint.opened(self, request, response)

    def reject(self, status: int, text: str) -> Response:
        """A plain-text HTTP rejection of the handshake (the socket closes after it)."""
        return self.conn.reject(status, text)

    # reads --------------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(bytes(frame.data))
            else:
                self.fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            if self.fragments is not None:
                self.fragments.append(bytes(frame.data))
                if frame.fin:
                    parts, self.fragments = self.fragments, None
                    self._message(b"".join(parts))
        elif opcode is Opcode.CLOSE:
            self.gone = self.held = True  # ServerProtocol answered (or it echoes ours)
            self.queue = None
            self.queued = 0
        # PING: ServerProtocol queued the PONG (flushed below); PONG: `seen` is enough

    def _message(self, data: bytes) -> None:
        if self.gone or not self.is_open:
            return
        if self.inbox is None:
            self.inbox = deque((data,))
            self.worker = asyncio.get_running_loop().create_task(self._serve())
            return
        self.inbox.append(data)
        if len(self.inbox) >= INBOX_PAUSE and not self.read_paused and self.transport:
            self.read_paused = True
            self.transport.pause_reading()

    async def _serve(self) -> None:
        inbox = self.inbox
        serve = self.endpoint.serve
        try:
            while inbox:
                await serve(self, inbox[0])
                inbox.popleft()
                if self.read_paused and len(inbox) < INBOX_PAUSE // 2:
                    self.read_paused = False
                    if self.transport is not None and not self.transport.is_closing():
                        self.transport.resume_reading()
        except Exception:
            log.exception("a connection's command loop failed")
            self.close_now(1011, "internal error")
        finally:
            self.inbox = None
            self.worker = None

    # writes -------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.is_open and not self.gone

    def fast_path(self) -> FastPath | None:
        """The transport's own `write` and `get_write_buffer_size`, for a socket that is
        open now; None otherwise. Use `write` only while `held` is False."""
        transport = self.transport
        if not self.open or transport is None or transport.is_closing():
            return None
        return transport.write, transport.get_write_buffer_size

    def write(self, data: bytes) -> None:
        """Complete frames to the socket, or to this wire's queue while the transport is
        full; never blocks, never awaits. The caller bounds `buffered()`."""
        if self.gone or not self.is_open:
            return
        if self.held:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(data)
            self.queued += len(data)
            return
        assert self.transport is not None
        self.transport.write(data)

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel: the transport's and the queue's."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return self.queued
        return int(transport.get_write_buffer_size()) + self.queued

    def close_now(self, code: int, reason: str = "", *, drop_queued: bool | None = None) -> None:
        """Send a close frame and drop the socket if the peer never answers. What is queued
        here is discarded first (the close frame goes out alone: a slow consumer sees its
        4008), except for 1001 (a drain), which goes out behind it."""
        if drop_queued is None:
            drop_queued = code != GOING_AWAY
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self.is_open:  # handshake not complete: just drop the socket
            transport.close()
            return
        if self.gone:
            return
        self.gone = self.held = True
        if self.conn.state is State.OPEN:
            self.conn.send_close(code, reason)
        frames = self.conn.data_to_send()
        queue, self.queue, self.queued = self.queue, None, 0
        if not drop_queued and queue:
            frames = [*queue, *frames]
        for data in frames:
            if data:
                transport.write(data)
        if self.read_paused:  # read the peer's close reply
            self.read_paused = False
            transport.resume_reading()
        self.close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S,
                                                                 self.abort)

    def ping(self) -> None:
        """A keepalive ping (the endpoint's sweep decides when)."""
        if self.open and self.conn.state is State.OPEN:
            self.conn.send_ping(b"lc")
            self.pinged = True
            self._flush_protocol()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """uvicorn's shutdown (SIGTERM): close open sockets with 1001 after what is queued,
        refuse handshakes still in progress."""
        if self.open:
            self.close_now(GOING_AWAY, "server draining")
        elif self.transport is not None and not self.is_open:
            self.transport.close()

    def _flush_protocol(self) -> None:
        """Write what ServerProtocol produced (handshake response, pongs, close replies);
        an empty chunk means: close the TCP connection."""
        transport = self.transport
        if transport is None:
            return
        for data in self.conn.data_to_send():
            if data:
                transport.write(data)
            elif not transport.is_closing():
                transport.close()  # after the buffered bytes are written
