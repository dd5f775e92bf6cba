"""The socket under each WebSocket: uvicorn's sans-I/O protocol with a direct write path.

Fan-out must not run a coroutine per viewer per event. Server frames are unmasked, so
the hub builds each frame once and this class writes those bytes straight to the
asyncio transport (no ASGI message, no task wake-up). Reads, the handshake, pings and
the closing handshake stay with uvicorn. The app finds this object in the ASGI scope
under `scope["extensions"][WIRE_EXTENSION]`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

WIRE_EXTENSION = "livecart.wire"


FastPath = tuple[Callable[[bytes], object], Callable[[], int]]


class _Inbox:
    """What uvicorn uses of `asyncio.Queue` (put_nowait, get, empty, qsize) for its one
    consumer, the app's `receive()`: a list and at most one future instead of a Queue's
    three deques and an Event (about 3 KB less per idle connection)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class _Flag:
    """What uvicorn uses of `asyncio.Event` (set, clear, is_set, wait) with no deque
    until someone actually waits (only a paused writer does)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> bool:
        if self._set:
            return True
        fut = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if self._waiters is not None and fut in self._waiters:
                self._waiters.remove(fut)
        return True


class Wire(WebSocketsSansIOProtocol):
    """uvicorn's protocol plus `write`, `buffered` and `close_now` for the hub.

    `gone` turns True the moment no further data frame may be written (we sent a close
    frame, the peer's close was answered, or the socket was lost), whatever code path of
    uvicorn's did it: `close_sent` and `disconnected` are properties here that also set
    `gone`. The hub's fan-out loop checks that one attribute per viewer and calls the
    transport's C methods directly (`fast_path()`), so a viewer costs no Python call.
    """

    abort_after_s = 2.0
    gone = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()
    _close_sent = False
    _disconnected = False

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        if value != self._close_sent:  # no instance attribute for the class default
            self._close_sent = value
        if value:
            self.gone = True

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        if value != self._disconnected:  # no instance attribute for the class default
            self._disconnected = value
        if value:
            self.gone = True

    def handle_close(self, event: Any) -> None:
        super().handle_close(event)
        if self.transport is not None and self.transport.is_closing():
            self.gone = True

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message.get("type") == "websocket.accept" and self.handshake_complete:
            self.response = None  # type: ignore[assignment]  # sent; only the handshake reads it

    def fast_path(self) -> FastPath | None:
        """The transport's own `write` and `get_write_buffer_size` (C methods under uvloop),
        for a socket that is open now; None otherwise. Valid while `gone` is False."""
        if not self.open or self.transport is None or self.transport.is_closing():
            return None
        return self.transport.write, self.transport.get_write_buffer_size

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.request = None  # type: ignore[assignment]  # the scope has the headers
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][WIRE_EXTENSION] = self

    @property
    def open(self) -> bool:
        return bool(self.handshake_complete and not self.gone)

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
