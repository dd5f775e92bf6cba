"""Sharded pub/sub: one subscriber connection per shard, any number of channels.

Every channel is a shard channel (`SSUBSCRIBE`; scripts `SPUBLISH` it under the session's
or user's hash tag, in the same slot as the keys they change). On one server there is
one shard; on a cluster each channel is routed to the master owning its slot, and the
broker keeps one `PubSub` connection and one reader task per master it needs.

The broker knows nothing about clients. A node subscribes to a session's channel while it
has viewers of that session, and to a user's private channel while that user is connected.
Subscriptions asked for in the same loop tick go out together, one `SSUBSCRIBE` per slot.
Every message is handed to `on_message(channel, payload)` in arrival order, which for a
session channel is `seq` order because one Lua script both sequences and publishes.

A lost connection is replaced by a fresh one that subscribes this shard's channels again,
one SSUBSCRIBE per slot (redis-py's own resubscribe sends them all in one command, which
a cluster refuses). A wanted channel stays wanted until `unsubscribe`: a subscribe that
retried until it is confirmed. After a lost connection, a server-side `SUNSUBSCRIBE`
(its slot moved) or a failover, the channel is subscribed again — on whichever master
owns its slot now — and `on_resubscribed(channel)` tells the node to repair what it may
have missed (room history, private state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import ResponseError

from server.observe.metrics import Reading
from server.valkey.store import Store, StoreDown, text

log = logging.getLogger("livecart.broker")

RETRY_S = 0.2  # a failed subscribe is tried again after this long (doubling, ≤ 2 s)


class Shard:
    """One subscriber connection (to one server or one cluster master) and its reader."""

    def __init__(self, broker: Broker, name: str, client: aioredis.Redis) -> None:
        self.broker, self.name, self.client = broker, name, client
        self.pubsub: PubSub = client.pubsub()
        self.channels: set[str] = set()  # routed here and wanted
        self.reader: asyncio.Task[None] | None = None
        self.connected = False
        self.stale = False  # the connection was lost: resubscribe on a fresh one
        self.heard_at = 0.0  # loop time of the last message of any kind
        self.probe: str | None = None  # this node's probe channel on this shard
        self.probe_echo: asyncio.Future[None] | None = None
        self.lock = asyncio.Lock()  # one SSUBSCRIBE/SUNSUBSCRIBE exchange at a time

    async def start(self) -> None:
        # Connect now: two first-time subscribes racing would each take a connection,
        # and the confirmation sent on the one the reader does not watch would be lost.
        await self.pubsub.connect()  # type: ignore[no-untyped-call]
        self.connected = True
        self.reader = asyncio.create_task(self._read_loop(), name=f"broker-{self.name}")

    async def send(self, subs: list[str], unsubs: list[str]) -> None:
        """SSUBSCRIBE / SUNSUBSCRIBE, one command per slot (a command's channels must
        share a slot on a cluster). Raises StoreDown."""
        async with self.lock:
            await self._send(subs, unsubs)

    async def _send(self, subs: list[str], unsubs: list[str]) -> None:
        try:
            for group in _by_slot(unsubs):
                await self.pubsub.sunsubscribe(*group)
            for group in _by_slot(subs):
                await self.pubsub.ssubscribe(*group)
        except (AttributeError, RuntimeError) as exc:  # a connection closed under us
            self.stale = True
            raise ConnectionError(str(exc)) from exc

    async def _read_loop(self) -> None:
        backoff = 0.05
        while not self.broker.closing:
            try:
                if self.stale:
                    await self._resubscribe()
                if not self.pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                msg = await self.pubsub.get_message(timeout=1.0)
                backoff = 0.05
                if msg is None:
                    continue
                self.heard_at = asyncio.get_running_loop().time()
                kind = msg["type"]
                channel = text(msg["channel"])
                if kind == "smessage":
                    if channel == self.probe:
                        if self.probe_echo is not None and not self.probe_echo.done():
                            self.probe_echo.set_result(None)
                        continue
                    self.broker.on_message(channel, msg["data"])
                elif kind == "ssubscribe":
                    self.broker.confirm(self, channel)
                elif kind == "sunsubscribe":
                    self.broker.dropped(self, channel)
            except asyncio.CancelledError:
                raise
            except (*StoreDown, ResponseError) as exc:
                # ResponseError: redis-py's own reconnect resubscribed every channel in one
                # SSUBSCRIBE, which a cluster refuses (CROSSSLOT): start over, per slot
                if self.connected:
                    log.warning("pub/sub connection to %s lost: %s", self.name, exc)
                self.connected = False
                self.stale = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception:
                log.exception("pub/sub reader error on %s", self.name)
                await asyncio.sleep(backoff)

    async def _resubscribe(self) -> None:
        """A fresh connection with every channel of this shard subscribed again, one
        SSUBSCRIBE per slot (the confirmations make the node repair what it missed)."""
        async with self.lock:
            old, self.pubsub = self.pubsub, self.client.pubsub()
            with contextlib.suppress(Exception):
                await old.aclose()  # type: ignore[no-untyped-call]
            await self.pubsub.connect()  # type: ignore[no-untyped-call]
            await self._send(sorted(self.channels), [])
            self.stale = False
        self.connected = True
        await self.broker.reconnected(self)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        if self.client is not self.broker.store.redis:
            with contextlib.suppress(Exception):
                await self.client.aclose()


def _by_slot(channels: list[str]) -> list[list[str]]:
    groups: dict[int, list[str]] = defaultdict(list)
    for channel in channels:
        groups[key_slot(channel.encode())].append(channel)
    return list(groups.values())


class Broker:
    def __init__(self, store: Store,
                 on_message: Callable[[str, bytes], None],
                 on_resubscribed: Callable[[str], None],
                 probe_channel: Callable[[int], str] | None = None,
                 probe_interval_s: float = 5.0, probe_timeout_s: float = 2.0) -> None:
        """`probe_channel(k)`: the k-th candidate name of this node's own probe channel;
        the first whose slot a shard owns is that shard's (see `probe`)."""
        self.store = store
        self.probe_channel = probe_channel
        self.probe_interval_s, self.probe_timeout_s = probe_interval_s, probe_timeout_s
        self.probes_failed = 0
        self._prober: asyncio.Task[None] | None = None
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.shards: dict[str, Shard] = {}
        self.route: dict[str, Shard] = {}  # wanted channel -> the shard it is subscribed on
        self.wanted: set[str] = set()
        self.confirmed: dict[str, asyncio.Future[None]] = {}
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: dict[str, Shard] = {}
        self._flush_scheduled = False
        self._flush_lock = asyncio.Lock()
        self._retry: asyncio.TimerHandle | None = None
        self._retry_s = RETRY_S
        self._missed: set[str] = set()  # wanted channels whose subscribe failed once
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.reconnects = 0


    def readings(self) -> list[Reading]:
        return [
            Reading("counter", "livecart_store_reconnects", "pub/sub reconnections",
                    lambda: self.reconnects),
            Reading("counter", "livecart_pubsub_probes_failed",
                    "subscriber connections rebuilt because a probe did not come back",
                    lambda: self.probes_failed),
        ]

    @property
    def connected(self) -> bool:
        return bool(self.shards) and all(s.connected for s in self.shards.values())

    async def start(self) -> None:
        if not self.store.cluster:
            shard = Shard(self, "valkey", self.store.redis)
            self.shards[shard.name] = shard
            await shard.start()
        if self.probe_channel is not None:
            self._prober = asyncio.create_task(self._probe_loop(), name="broker-probe")

    async def close(self) -> None:
        self.closing = True
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prober
        if self._retry is not None:
            self._retry.cancel()
        for shard in list(self.shards.values()):
            await shard.close()

    async def _shard_for(self, channel: str) -> Shard:
        if not self.store.cluster:
            return self.shards["valkey"]
        cluster: Any = self.store.redis
        node = cluster.get_node_from_key(channel)
        shard = self.shards.get(node.name)
        if shard is None:
            client = aioredis.Redis(host=node.host, port=node.port,
                                    socket_timeout=self.store.timeout_s,
                                    socket_connect_timeout=self.store.timeout_s)
            shard = self.shards[node.name] = Shard(self, node.name, client)
            await shard.start()
        return shard

    # liveness ---------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.probe_interval_s)
            for shard in list(self.shards.values()):
                if self.closing:
                    return
                try:
                    await self.probe(shard)
                except Exception:
                    log.exception("pub/sub probe of %s failed to run", shard.name)

    async def probe(self, shard: Shard) -> bool:
        """A subscriber connection can stay open yet deliver nothing (seen after
        failovers): when a shard has been quiet for a probe interval, publish on this
        node's own probe channel there and expect it back within the timeout; if it does
        not come, rebuild the connection (resubscribe and repair, as after a loss).
        Returns False when the probe failed."""
        loop = asyncio.get_running_loop()
        if (not shard.connected or shard.stale or not shard.channels
                or loop.time() - shard.heard_at < self.probe_interval_s):
            return True
        if shard.probe is None:
            shard.probe = await self._probe_channel_for(shard)
            if shard.probe is None:
                return True
            self.subscribe(shard.probe)
            return True
        shard.probe_echo = loop.create_future()
        try:
            await self.store.call("SPUBLISH", shard.probe, b"probe")
            await asyncio.wait_for(asyncio.shield(shard.probe_echo), self.probe_timeout_s)
            return True
        except TimeoutError:
            self.probes_failed += 1
            log.warning("pub/sub connection to %s delivers nothing: rebuilding it", shard.name)
            shard.stale = True
            shard.connected = False
            return False
        except Exception:  # the store is unreachable: the reader notices that by itself
            return True

    async def _probe_channel_for(self, shard: Shard) -> str | None:
        assert self.probe_channel is not None
        for k in range(4096):
            channel = self.probe_channel(k)
            if not self.store.cluster or (await self._shard_for(channel)) is shard:
                return channel
        return None

    # what the node asks for -----------------------------------------------------------

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        """Ask for a channel; the future resolves once the server confirmed it (or fails
        when the store is unreachable — the channel stays wanted and is retried)."""
        self._to_unsubscribe.pop(channel, None)
        fut = self.confirmed.get(channel)
        if channel in self.wanted and fut is not None and not fut.cancelled() and (
                not fut.done() or fut.exception() is None):
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
        self._missed.discard(channel)
        fut = self.confirmed.pop(channel, None)
        if fut is not None and not fut.done():
            fut.cancel()
        self._to_subscribe.discard(channel)
        shard = self.route.pop(channel, None)
        if shard is not None:
            shard.channels.discard(channel)
            self._to_unsubscribe[channel] = shard
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self.closing:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn_flush)

    def _spawn_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        async with self._flush_lock:
            self._flush_scheduled = False
            subs, self._to_subscribe = self._to_subscribe, set()
            unsubs, self._to_unsubscribe = self._to_unsubscribe, {}
            failed: list[str] = []
            by_shard_unsubs: dict[Shard, list[str]] = defaultdict(list)
            for channel, shard in unsubs.items():
                by_shard_unsubs[shard].append(channel)
            by_shard_subs: dict[Shard, list[str]] = defaultdict(list)
            for channel in sorted(subs):
                if channel not in self.wanted:
                    continue
                try:
                    shard = await self._shard_for(channel)
                except StoreDown:
                    failed.append(channel)
                    continue
                by_shard_subs[shard].append(channel)
            for shard in set(by_shard_subs) | set(by_shard_unsubs):
                channels = by_shard_subs.get(shard, [])
                try:
                    await shard.send(channels, by_shard_unsubs.get(shard, []))
                except (*StoreDown, ResponseError) as exc:
                    log.warning("subscribe on %s failed: %s", shard.name, exc)
                    failed.extend(channels)
                    continue
                for channel in channels:
                    self.route[channel] = shard
                    shard.channels.add(channel)
            if failed:
                self._failed(failed)
            else:
                self._retry_s = RETRY_S

    def _failed(self, channels: list[str]) -> None:
        """Fail the waiters (a join answers `unavailable` now) but keep the channels
        wanted, and try again shortly."""
        for channel in channels:
            fut = self.confirmed.get(channel)
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError("store unreachable"))
                fut.add_done_callback(lambda f: f.exception())
        self._to_subscribe.update(c for c in channels if c in self.wanted)
        self._missed.update(c for c in channels if c in self.wanted)
        if self._retry is None and not self.closing:
            delay, self._retry_s = self._retry_s, min(self._retry_s * 2, 2.0)

            def retry() -> None:
                self._retry = None
                for channel in list(self._to_subscribe):
                    fut = self.confirmed.get(channel)
                    if fut is None or fut.done():
                        self.confirmed[channel] = asyncio.get_running_loop().create_future()
                self._schedule_flush()

            self._retry = asyncio.get_running_loop().call_later(delay, retry)

    # what the shards tell ---------------------------------------------------------

    def confirm(self, shard: Shard, channel: str) -> None:
        fut = self.confirmed.get(channel)
        if fut is None or channel not in self.wanted:
            return
        if fut.done():
            self.on_resubscribed(channel)  # a confirmation after a reconnect: fill the gap
            return
        fut.set_result(None)
        if channel in self._missed:  # subscribed only after a failure: events may be missed
            self._missed.discard(channel)
            self.on_resubscribed(channel)

    def dropped(self, shard: Shard, channel: str) -> None:
        """A SUNSUBSCRIBE we did not ask for (its slot moved): subscribe it again, on the
        master that owns the slot now."""
        if channel not in self.wanted or self.route.get(channel) is not shard:
            return
        self.route.pop(channel, None)
        shard.channels.discard(channel)
        self._to_subscribe.add(channel)
        self._schedule_flush()
        self.on_resubscribed(channel)

    async def reconnected(self, shard: Shard) -> None:
        """A shard's connection is back (redis-py resubscribed its channels on connect).
        On a cluster, a channel whose slot now lives elsewhere moves there."""
        self.reconnects += 1
        if not self.store.cluster:
            return
        for channel in list(shard.channels):
            with contextlib.suppress(*StoreDown):
                if await self._shard_for(channel) is not shard:
                    self.dropped(shard, channel)
