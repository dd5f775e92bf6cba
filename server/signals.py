"""A typed event between services: the one way a lower layer tells a higher one.

A service that announces something gets a `Signal` in its constructor and sends on it; a
service that reacts gets the same signal in its own constructor and connects a handler.
The composition root (server/node.py) creates the signals first, so the two may be built
in either order, and neither imports the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("livecart.signals")

T = TypeVar("T")
Handler = Callable[[T], Awaitable[None] | None]


class Signal(Generic[T]):
    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: list[Handler[T]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def connect(self, handler: Handler[T]) -> None:
        self._handlers.append(handler)

    async def send(self, value: T) -> None:
        """Run every handler, in the order they connected, awaiting those that are async.
        A handler's exception propagates to the sender."""
        for handler in self._handlers:
            result = handler(value)
            if result is not None:
                await result

    def post(self, value: T) -> None:
        """`send` in a task of its own: the sender does not wait (an order reply must not
        wait for an announcement). A failure is logged."""
        if not self._handlers:
            return
        task = asyncio.ensure_future(self._send_logged(value))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_logged(self, value: T) -> None:
        try:
            await self.send(value)
        except Exception as exc:  # the store down (ApiError) or a bug: never lost silently
            log.warning("%s handler failed: %r", self.name, exc)
