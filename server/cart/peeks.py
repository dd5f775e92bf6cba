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
from collections import defaultdict
from typing import Any

from server.valkey.batching import settle
from server.valkey.keys import Keys, order_bucket
from server.valkey.scripts import Scripts
from server.valkey.store import Store

OrderRow = tuple[Any, Any, Any]  # status, req_hash, order JSON (None when absent)


class Peeks:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self._holds: dict[str, list[tuple[str, asyncio.Future[bool]]]] = defaultdict(list)
        self._orders: dict[int, list[tuple[str, asyncio.Future[OrderRow]]]] = defaultdict(list)
        self._tasks: set[asyncio.Future[Any]] = set()

    def holding(self, product: str, buyer: str) -> asyncio.Future[bool]:
        """Does a restock hold a unit of `product` for `buyer`?"""
        fut: asyncio.Future[bool] = self._future()
        self._holds[product].append((buyer, fut))
        return fut

    def order(self, oid: str) -> asyncio.Future[OrderRow]:
        """The order record's (status, req_hash, json)."""
        fut: asyncio.Future[OrderRow] = self._future()
        self._orders[0 if not self.store.cluster else order_bucket(oid)].append((oid, fut))
        return fut

    def _future(self) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self._holds and not self._orders:
            loop.call_soon(self._flush)
        return loop.create_future()

    def _flush(self) -> None:
        holds, self._holds = self._holds, defaultdict(list)
        orders, self._orders = self._orders, defaultdict(list)
        for product, asks in holds.items():
            self._ask(self.store.call_pipelined(
                "HMGET", self.keys.holds(product), *(buyer for buyer, _ in asks)),
                [fut for _, fut in asks], lambda held: held is not None)
        for asks_of_bucket in orders.values():
            self._ask(self.scripts.peek_orders([oid for oid, _ in asks_of_bucket]),
                      [fut for _, fut in asks_of_bucket], tuple)

    def _ask(self, call: Any, futures: list[asyncio.Future[Any]], each: Any) -> None:
        task = asyncio.ensure_future(call)
        self._tasks.add(task)

        def answer(done: asyncio.Future[Any]) -> None:
            self._tasks.discard(done)
            settle(done, futures, each)

        task.add_done_callback(answer)
