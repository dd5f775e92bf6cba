"""Each signed-in user's connections on this node, and the user's private channel.

Private events (`cart`, `order`, `outbid`, `won`, `restocked`, `live`, …) go to every
device of one user, on whichever node each is connected: they are published on the
user's channel, which a node subscribes while it serves at least one of that user's
connections. After a (re)subscribe a node cannot know what it missed, so it resyncs
each of the user's connections here: the current cart (its version lets a client drop an
older one) and every recent order not delivered here yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from server.clock import now_ms
from server.edge.client import Client
from server.edge.codecs import JSON
from server.errors import ApiError
from server.fanout.broker import Broker
from server.fanout.hub import deliver
from server.valkey.keys import Keys
from server.valkey.store import Store, text

RECENT_ORDERS = 10  # orders looked at by a resync

FetchCart = Callable[[str], Awaitable[dict[str, Any]]]
FindOrder = Callable[[str], Awaitable[tuple[dict[str, Any], list[str]] | None]]


class UserChannels:
    def __init__(self, store: Store, keys: Keys, broker: Broker, fetch_cart: FetchCart,
                 find_order: FindOrder) -> None:
        self.store, self.keys, self.broker = store, keys, broker
        self.fetch_cart, self.find_order = fetch_cart, find_order
        self.connections: dict[str, dict[int, Client]] = {}  # user -> its connections here
        self._attached_at: dict[str, int] = {}  # user -> when this node subscribed for them
        self._orders_seen: dict[str, set[str]] = {}  # user -> orders delivered here
        self._resyncs: set[asyncio.Task[None]] = set()

    def of(self, user: str | None) -> list[Client]:
        """The user's connections on this node."""
        return list(self.connections.get(user, {}).values()) if user else []

    def attach(self, client: Client) -> None:
        uid = client.user
        if uid is None:
            return
        mine = self.connections.setdefault(uid, {})
        if not mine:
            self._attached_at[uid] = now_ms()
            self.broker.subscribe(self.keys.user_channel(uid))
        mine[client.id] = client

    def detach(self, client: Client) -> None:
        uid = client.user
        mine = self.connections.get(uid) if uid else None
        if mine is None or uid is None:
            return
        mine.pop(client.id, None)
        if not mine:
            del self.connections[uid]
            self._attached_at.pop(uid, None)
            self._orders_seen.pop(uid, None)
            self.broker.unsubscribe(self.keys.user_channel(uid))

    async def publish(self, uid: str, data: Any, event: str = "cart") -> None:
        """A private event to every device of `uid`, on any node."""
        doc = {"t": event, "ts": now_ms(), "d": data}
        await self.store.call("SPUBLISH", self.keys.user_channel(uid), JSON.encode(doc))

    async def offered(self, user: str, product: str, hold_until: int) -> None:
        """A restock (or a passed-on hold) holds a unit for this waiting user."""
        await self.publish(user, {"product": product, "hold_until": hold_until}, "restocked")

    async def cart_left(self, buyer: str) -> None:
        """A checkout left lines in the buyer's cart: every device gets that cart."""
        await self.publish(buyer, await self.fetch_cart(buyer))

    def on_message(self, uid: str, data: bytes) -> None:
        mine = self.connections.get(uid)
        if mine:
            if data.startswith(b'{"t":"order"'):
                self._orders_seen.setdefault(uid, set()).add(str(orjson.loads(data)["d"]["id"]))
            deliver(list(mine.values()), bytes(data))

    def resync_soon(self, uid: str) -> None:
        task = asyncio.ensure_future(self.resync(uid))
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def resync(self, uid: str) -> None:
        """The user's channel was (re)subscribed after events may have been missed: send
        each of the user's connections here the current cart and every recent order it
        was not sent yet."""
        if uid not in self.connections:
            return
        try:
            cart = await self.fetch_cart(uid)
            recent = [text(o) for o in await self.store.call(
                "LRANGE", self.keys.user_orders(uid), 0, RECENT_ORDERS - 1)]
            seen = self._orders_seen.setdefault(uid, set())
            missed = [oid for oid in reversed(recent) if oid not in seen]
            found = [await self.find_order(oid) for oid in missed]
        except ApiError:
            return  # still unreachable: the next resubscribe tries again
        mine = self.of(uid)
        now = now_ms()
        deliver(mine, JSON.encode({"t": "cart", "ts": now, "d": cart}))
        for oid, row in zip(missed, found, strict=True):
            if row is not None and row[0]["created_at"] >= self._attached_at.get(uid, now):
                seen.add(oid)
                deliver(mine, JSON.encode({"t": "order", "ts": now, "d": row[0]}))
