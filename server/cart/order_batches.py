"""The one-script orders of a loop tick, placed together.

On one Valkey a one-line order is one `order_place.lua` call (saga.py `one_script`). In a
burst — a flash sale's first buyers, an order spike — many are placed in the same loop
tick, and one call each pays the script's setup each time and moves the same session
counters and creator balance field by field, order by order. `OrderBatches` collects the
orders of a tick and places them with one `order_place.lua` call per `ORDERS_PER_CALL`:
each order is still entirely or not at all and has its own result; the counters and
balances they move are added once per field at the end of the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.errors import ApiError
from server.valkey.batching import settle
from server.valkey.scripts import Scripts

# orders per call: bounds how long one call holds Valkey (~0.1-0.2 ms of Valkey per order
# on the machines of docs/benchmarks.md)
ORDERS_PER_CALL = 32

Placement = tuple[str, bytes, bytes]  # status, order JSON, a deal the reserve closed or b""
_Pending = tuple[tuple[str, str, dict[str, Any], str], "asyncio.Future[Placement]"]


class OrderBatches:
    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts
        self._queued: list[_Pending] = []
        self._tasks: set[asyncio.Future[Any]] = set()

    def place(self, oid: str, fingerprint: str, plan: dict[str, Any],
              mode: str) -> asyncio.Future[Placement]:
        """Queue one order for this tick's call; its (status 'new' | 'committed' | 'saga',
        order JSON, closed deal JSON or b""), or the ApiError it failed with."""
        loop = asyncio.get_running_loop()
        if not self._queued:
            loop.call_soon(self._flush)
        fut: asyncio.Future[Placement] = loop.create_future()
        self._queued.append(((oid, fingerprint, plan, mode), fut))
        return fut

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), ORDERS_PER_CALL):
            self._send(queued[start:start + ORDERS_PER_CALL])

    def _send(self, chunk: list[_Pending]) -> None:
        futures = [fut for _, fut in chunk]
        call = self.scripts.place_orders([order for order, _ in chunk])
        task = asyncio.ensure_future(call)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._answer(done, futures))

    def _answer(self, done: asyncio.Future[list[Placement | ApiError]],
                futures: list[asyncio.Future[Placement]]) -> None:
        self._tasks.discard(done)
        settle(done, futures, lambda result: result)
