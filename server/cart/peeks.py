"""A storm's late buyers' two questions, asked together per loop tick.

A buyer answered from the node's sold-out facts still needs two things from the store:
does a restock hold a unit for them (`{p:…}:holds`), and did their idempotency key buy
already (its order record)? Thousands arrive in the same tick; asked one by one that is
two commands each, and the node's time goes into building and parsing them. `Peeks`
collects the questions of a tick and asks them as one `HMGET` of the holds per product
and one `order_peek.lua` per order bucket (on one Valkey: one for all), then answers each
caller's future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from server.valkey.batching import TickBatch
from server.valkey.keys import Keys, order_bucket
from server.valkey.scripts import Scripts
from server.valkey.store import Store

OrderRow = tuple[Any, Any, Any]  # status, req_hash, order JSON (None when absent)


class Peeks:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self._holds: TickBatch[str, bool] = TickBatch(self._ask_holds,
                                                      each=lambda held: held is not None)
        self._orders: TickBatch[str, OrderRow] = TickBatch(self._ask_orders, each=tuple)

    def holding(self, product: str, buyer: str) -> asyncio.Future[bool]:
        """Does a restock hold a unit of `product` for `buyer`?"""
        return self._holds.ask(buyer, product)

    def order(self, oid: str) -> asyncio.Future[OrderRow]:
        """The order record's (status, req_hash, json)."""
        return self._orders.ask(oid, 0 if not self.store.cluster else order_bucket(oid))

    async def _ask_holds(self, product: Hashable, buyers: list[str]) -> Any:
        return await self.store.call_pipelined("HMGET", self.keys.holds(str(product)), *buyers)

    async def _ask_orders(self, bucket: Hashable, oids: list[str]) -> Any:
        return await self.scripts.peek_orders(oids)
