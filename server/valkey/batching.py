"""Answering the callers of one batched store call: a tick's questions or orders go out
as one call (cart/peeks.py, order_batches.py) and each caller waits on its own future."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any


def settle(done: asyncio.Future[Any], futures: Sequence[asyncio.Future[Any]],
           each: Callable[[Any], Any]) -> None:
    """Settle caller i's future from the finished call `done`: `each(result[i])` (raised
    in the caller when it is an exception), or the call's own exception or cancellation.
    A caller that stopped waiting (its future is done) is skipped."""
    exc = None if done.cancelled() else done.exception()
    results = done.result() if not done.cancelled() and exc is None else ()
    for i, fut in enumerate(futures):
        if fut.done():
            continue
        if done.cancelled():
            fut.cancel()
        elif exc is not None:
            fut.set_exception(exc)
        else:
            value = each(results[i])
            if isinstance(value, BaseException):
                fut.set_exception(value)
            else:
                fut.set_result(value)


class Reads:
    """Plain commands sent as one batch, their replies read back by name rather than by
    position: `add("session", cmd)` then `one("session")`; `add("histories", *cmds)` then
    `many("histories")` (the replies of those commands, in order)."""

    def __init__(self) -> None:
        self.commands: list[Sequence[Any]] = []
        self._spans: dict[str, tuple[int, int]] = {}
        self._replies: list[Any] = []

    def add(self, name: str, *commands: Sequence[Any]) -> None:
        start = len(self.commands)
        self.commands.extend(commands)
        self._spans[name] = (start, len(self.commands))

    def __contains__(self, name: str) -> bool:
        return name in self._spans

    def answered(self, replies: Sequence[Any]) -> None:
        self._replies = list(replies)

    def many(self, name: str) -> list[Any]:
        start, end = self._spans[name]
        return self._replies[start:end]

    def one(self, name: str) -> Any:
        (reply,) = self.many(name)
        return reply
