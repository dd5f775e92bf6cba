"""A storm's late buyers' two questions, asked together per loop tick.

A buyer answered from the node's sold-out facts still needs two things from the store:
does a restock hold a unit for them (`{p:…}:holds`), and did their idempotency key buy
already (its order record)? Thousands arrive in the same tick; asked one by one that is
two commands each, and the node's time goes into building and parsing them. `Peeks`
collects the questions of a tick and asks them as one `HMGET` of the holds per product
and one `order_peek.lua` per order bucket (on one Valkey: one for all), then answers each
caller's future. The key's answer is the idempotency rule's, decided in Lua
(lib/idempotency.lua): nothing here compares fingerprints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from server.valkey.batching import TickBatch
from server.valkey.keys import Keys, order_bucket
from server.valkey.scripts import Peeked, Scripts
from server.valkey.store import Store


class Peeks:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self._holds: TickBatch[str, bool] = TickBatch(self._ask_holds,
                                                      each=lambda held: held is not None)
        self._orders: TickBatch[tuple[str, str], Peeked] = TickBatch(self._ask_orders)

    def holding(self, product: str, buyer: str) -> asyncio.Future[bool]:
        """Does a restock hold a unit of `product` for `buyer`?"""
        return self._holds.ask(buyer, product)

    def order(self, oid: str, fingerprint: str) -> asyncio.Future[Peeked]:
        """What the idempotency rule answers a request with `fingerprint` for order `oid`."""
        return self._orders.ask((oid, fingerprint),
                                0 if not self.store.cluster else order_bucket(oid))

    async def _ask_holds(self, product: Hashable, buyers: list[str]) -> Any:
        return await self.store.call_pipelined("HMGET", self.keys.holds(str(product)), *buyers)

    async def _ask_orders(self, bucket: Hashable, asks: list[tuple[str, str]]) -> Any:
        return await self.scripts.peek_orders([oid for oid, _ in asks], [fp for _, fp in asks])
