"""The composition root: one node's store, broker, hub, domain services and command table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from server import validate as v
from server.auth import Identity, verify_token
from server.broker import Broker
from server.cart.products import Products
from server.client import Client, Sink
from server.codecs import Codec
from server.commands import Dispatcher, Handler
from server.counters.room_counters import RoomCounters
from server.errors import ApiError, CloseCode, ErrorCode
from server.hub import Hub
from server.keys import Keys
from server.metrics import Metrics
from server.rooms.ops import RoomOps
from server.rooms.sessions import Sessions
from server.settings import Settings
from server.store import Store

log = logging.getLogger("livecart.node")


class Node:
    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings = settings
        self.secret = settings.signing_secret
        self.keys = Keys(settings.key_prefix)
        self.store = Store(store_url, timeout_s=settings.store_timeout_s)
        self.products = Products(self.store, self.keys, settings.currency)
        self.sessions = Sessions(self.store, self.keys, settings)
        self.counters = RoomCounters(self.store, self.keys, settings.node_id,
                                     settings.presence_ttl_s)
        self.hub = Hub(self._fetch_history)
        self.broker = Broker(self.store.redis, self.keys, self.hub.on_event, self.hub.resync)
        self.rooms = RoomOps(self.sessions, self.products, self.counters, self.hub, self.broker,
                             subscribe_timeout_s=settings.store_timeout_s)
        self.clients: dict[int, Client] = {}
        handlers: dict[str, Handler] = {"ping": self.ping, "auth": self.auth}
        handlers.update(self.rooms.handlers())
        self.metrics = Metrics()
        self.dispatcher = Dispatcher(handlers, observe=self.metrics.observe_command)
        self.hub.observe_fanout = self.metrics.fanout_seconds.observe
        self.metrics.attach(self)
        self._ticker: asyncio.Task[None] | None = None
        self.draining = False

    async def start(self) -> None:
        await self.store.load_all()
        await self.broker.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="counters-tick")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        with contextlib.suppress(ApiError):
            await self.counters.tick([(sid, 0, room.likes) for sid, room in self.hub.rooms.items()])
        await self.broker.close()
        await self.store.close()

    # connections ------------------------------------------------------------

    def connect(self, sink: Sink, codec: Codec, identity: Identity) -> Client:
        s = self.settings
        client = Client(sink, codec, identity, rate=s.rate_per_s, burst=s.rate_burst,
                        abuse_errors=s.abuse_errors, abuse_window_s=s.abuse_window_s,
                        max_buffer=s.send_buffer_bytes, on_evict=self._evicted)
        self.clients[client.id] = client
        return client

    def disconnect(self, client: Client) -> None:
        self.hub.remove(client)
        self.clients.pop(client.id, None)

    def _evicted(self, client: Client, code: int) -> None:
        if code == CloseCode.SLOW_CONSUMER:
            self.hub.evictions += 1
        self.hub.remove(client)

    async def handle(self, client: Client, data: str | bytes) -> None:
        await self.dispatcher.handle(client, data)

    def drain(self) -> None:
        """Close every connection with 1001 behind what is already queued for it."""
        self.draining = True
        for client in list(self.clients.values()):
            client.evict(CloseCode.GOING_AWAY, "server draining")

    # connection-level ops -------------------------------------------------------

    async def ping(self, client: Client, args: Mapping[str, Any]) -> Any:
        return {"pong": int(time.time() * 1000)}

    async def auth(self, client: Client, args: Mapping[str, Any]) -> Any:
        token = v.req_str(args, "token", max_len=4096)
        identity = verify_token(self.secret, token)
        if client.identity.sub is not None and identity.sub != client.identity.sub:
            raise ApiError(ErrorCode.FORBIDDEN, "a refreshed token must be for the same user")
        client.identity = identity
        return {"sub": identity.sub, "role": identity.role, "exp": identity.exp}

    # background -----------------------------------------------------------------

    async def _fetch_history(self, sid: str, since: int) -> list[tuple[int, bytes]] | None:
        return await self.sessions.history_since(sid, since)

    async def _tick_loop(self) -> None:
        interval = self.settings.counters_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except ApiError:
                pass  # store down: presence expires by itself; try again next tick
            except Exception:
                log.exception("counters tick failed")

    async def tick(self) -> None:
        rooms = list(self.hub.rooms.values())
        if not rooms:
            return
        likes = {room.sid: room.likes for room in rooms}
        for room in rooms:
            room.likes = 0
        try:
            reports = await self.counters.tick([(r.sid, r.size, likes[r.sid]) for r in rooms])
        except ApiError:
            for room in rooms:  # keep the likes for the next tick
                room.likes += likes[room.sid]
            raise
        now = int(time.time() * 1000)
        for room, report in zip(rooms, reports, strict=True):
            if room.size == 0:
                self.broker.unsubscribe(room.sid)
                self.hub.drop_room(room.sid)
                continue
            values = (report.viewers, report.likes, report.orders, report.units)
            if values != room.last_counters:
                room.last_counters = values
                self.hub.push(room, {"t": "counters", "ts": now, "d": report.counters()})
