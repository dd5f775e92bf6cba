"""Pub/sub: one connection, one reader task, any number of channels.

The broker knows nothing about clients. A node subscribes to a session's channel while it
has viewers of that session, and to a user's private channel while that user is connected
(subscriptions requested in the same loop tick go out as one SUBSCRIBE). Every message is
handed to `on_message(channel, payload)` in arrival order, which for a session channel is
`seq` order because one Lua script both sequences and publishes. After a lost connection
it reconnects, resubscribes every channel and calls `on_resubscribed(channel)` so the hub
can fill the gap from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from server.store import StoreDown, text

log = logging.getLogger("livecart.broker")


class Broker:
    def __init__(self, redis: aioredis.Redis,
                 on_message: Callable[[str, bytes], None],
                 on_resubscribed: Callable[[str], None]) -> None:
        self.redis = redis
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.pubsub: PubSub | None = None
        self.wanted: set[str] = set()
        self.confirmed: dict[str, asyncio.Future[None]] = {}
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._flush_scheduled = False
        self._flush_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = False
        self.reconnects = 0

    async def start(self) -> None:
        self.pubsub = self.redis.pubsub()
        # Connect now: two first-time SUBSCRIBEs racing would each take a pool connection,
        # and the confirmation sent on the one the reader does not watch would be lost.
        await self.pubsub.connect()  # type: ignore[no-untyped-call]
        self._reader = asyncio.create_task(self._read_loop(), name="broker-reader")

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()  # type: ignore[no-untyped-call]

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        """Ask for a channel; the future resolves once the server confirmed it."""
        self._to_unsubscribe.discard(channel)
        fut = self.confirmed.get(channel)
        if channel in self.wanted and fut is not None:
            return fut
        self.wanted.add(channel)
        fut = self.confirmed[channel] = asyncio.get_running_loop().create_future()
        self._to_subscribe.add(channel)
        self._schedule_flush()
        return fut

    def unsubscribe(self, channel: str) -> None:
        if channel not in self.wanted:
            return
        self.wanted.discard(channel)
        fut = self.confirmed.pop(channel, None)
        if fut is not None and not fut.done():
            fut.cancel()
        self._to_subscribe.discard(channel)
        self._to_unsubscribe.add(channel)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))

    async def _flush(self) -> None:
        async with self._flush_lock:  # one SUBSCRIBE/UNSUBSCRIBE exchange at a time
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        self._flush_scheduled = False
        subs, self._to_subscribe = self._to_subscribe, set()
        unsubs, self._to_unsubscribe = self._to_unsubscribe, set()
        assert self.pubsub is not None
        try:
            if unsubs:
                await self.pubsub.unsubscribe(*unsubs)
            if subs:
                await self.pubsub.subscribe(*subs)
        except StoreDown as exc:
            log.warning("subscribe failed: %s", exc)
            for channel in subs:
                self.wanted.discard(channel)
                fut = self.confirmed.pop(channel, None)
                if fut is not None and not fut.done():
                    fut.set_exception(ConnectionError("store unreachable"))
                    fut.add_done_callback(lambda f: f.exception())

    async def _read_loop(self) -> None:
        assert self.pubsub is not None
        backoff = 0.05
        while not self._closing:
            try:
                if not self.pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                msg = await self.pubsub.get_message(timeout=1.0)
                if not self.connected:
                    self.connected = True
                backoff = 0.05
                if msg is None:
                    continue
                kind = msg["type"]
                channel = text(msg["channel"])
                if kind == "message":
                    self.on_message(channel, msg["data"])
                elif kind == "subscribe":
                    self._confirm(channel)
            except asyncio.CancelledError:
                raise
            except StoreDown as exc:
                if self.connected:
                    log.warning("pub/sub connection lost: %s", exc)
                self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                await self._reconnect()
            except Exception:
                log.exception("pub/sub reader error")
                await asyncio.sleep(backoff)

    def _confirm(self, channel: str) -> None:
        fut = self.confirmed.get(channel)
        if fut is None or channel not in self.wanted:
            return
        if fut.done():
            self.on_resubscribed(channel)  # a confirmation after a reconnect: fill the gap
        else:
            fut.set_result(None)

    async def _reconnect(self) -> None:
        assert self.pubsub is not None
        with contextlib.suppress(*StoreDown):
            await self.pubsub.connect()  # type: ignore[no-untyped-call]  # redis-py resubscribes every channel on connect
            self.reconnects += 1
