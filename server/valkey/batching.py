"""Batching store calls: the requests of one loop tick sent as one call, each caller
answered on its own future (`TickBatch`: cart/peeks.py, cart/order_batches.py), and the
replies of one batch read back by name (`Reads`: rooms/snapshots.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


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


class TickBatch(Generic[Item, Result]):
    """Requests made during one loop tick, sent together at its end.

    `ask(item, group)` queues an item and returns the caller's future. When the tick
    ends, each group's items go out as `send(group, items)` — in calls of at most
    `per_call` items when set — whose reply holds one raw result per item, in order;
    caller i gets `each(raw[i])` (raised in the caller when that is an exception), or the
    call's own failure."""

    def __init__(self, send: Callable[[Hashable, list[Item]], Awaitable[Sequence[Any]]], *,
                 each: Callable[[Any], Any] = lambda raw: raw,
                 per_call: int | None = None) -> None:
        self.send, self.each, self.per_call = send, each, per_call
        self._queued: dict[Hashable, list[tuple[Item, asyncio.Future[Result]]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    def ask(self, item: Item, group: Hashable = None) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        if not self._queued:
            loop.call_soon(self._flush)
        fut: asyncio.Future[Result] = loop.create_future()
        self._queued.setdefault(group, []).append((item, fut))
        return fut

    def _flush(self) -> None:
        queued, self._queued = self._queued, {}
        for group, asks in queued.items():
            size = self.per_call or len(asks)
            for start in range(0, len(asks), size):
                self._send(group, asks[start:start + size])

    async def _call(self, group: Hashable, items: list[Item]) -> Sequence[Any]:
        return await self.send(group, items)

    def _send(self, group: Hashable, asks: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        futures = [fut for _, fut in asks]
        call = self._call(group, [item for item, _ in asks])
        task = asyncio.ensure_future(call)
        self._tasks.add(task)

        def answer(done: asyncio.Future[Any]) -> None:
            self._tasks.discard(done)
            settle(done, futures, self.each)

        task.add_done_callback(answer)


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
