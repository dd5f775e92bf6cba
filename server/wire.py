"""The socket under each WebSocket: uvicorn's sans-I/O protocol with a direct write path.

Fan-out must not run a coroutine per viewer per event. Server frames are unmasked, so
the hub builds each frame once and this class writes those bytes straight to the
asyncio transport (no ASGI message, no task wake-up). Reads, the handshake, pings and
the closing handshake stay with uvicorn. The app finds this object in the ASGI scope
under `scope["extensions"][WIRE_EXTENSION]`.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

WIRE_EXTENSION = "livecart.wire"


class Wire(WebSocketsSansIOProtocol):
    """uvicorn's protocol plus `write`, `buffered` and `close_now` for the hub."""

    abort_after_s = 2.0

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][WIRE_EXTENSION] = self

    @property
    def open(self) -> bool:
        return bool(self.handshake_complete and not self.close_sent and not self.disconnected)

    def write(self, data: bytes) -> None:
        """Queue complete frames on the socket; never blocks, never awaits."""
        if self.open:
            self.transport.write(data)

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        if self.transport is None or self.transport.is_closing():
            return 0
        return int(self.transport.get_write_buffer_size())

    def close_now(self, code: int, reason: str = "") -> None:
        """Send a close frame behind what is queued, and drop the socket if it never drains."""
        if not self.open:
            return
        self.close_sent = True
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.abort_after_s, self._abort)

    def shutdown(self) -> None:
        """Server shutdown (SIGTERM): close open sockets with 1001 after what is queued."""
        if self.open:
            self.stop_keepalive()
            self.close_now(1001, "server draining")
        else:
            super().shutdown()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
