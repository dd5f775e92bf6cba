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
from collections.abc import Hashable
from typing import Any

from server.valkey.batching import TickBatch
from server.valkey.scripts import Scripts

# orders per call: bounds how long one call holds Valkey (~0.1-0.2 ms of Valkey per order
# on the machines of docs/benchmarks.md)
ORDERS_PER_CALL = 32

Placement = tuple[str, bytes, bytes]  # status, order JSON, a deal the reserve closed or b""
Order = tuple[str, str, dict[str, Any], str]  # order id, fingerprint, plan, reserve mode


class OrderBatches:
    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts
        self._batch: TickBatch[Order, Placement] = TickBatch(self._send,
                                                             per_call=ORDERS_PER_CALL)

    def place(self, oid: str, fingerprint: str, plan: dict[str, Any],
              mode: str) -> asyncio.Future[Placement]:
        """Queue one order for this tick's call; its (status 'new' | 'committed' | 'saga',
        order JSON, closed deal JSON or b""), or the ApiError it failed with."""
        return self._batch.ask((oid, fingerprint, plan, mode))

    async def _send(self, group: Hashable, orders: list[Order]) -> Any:
        return await self.scripts.place_orders(orders)
