"""The composition root: one node's store, broker, hub and services, each built with its
collaborators and callbacks, and the command table. Nothing here decides a rule: the
services do, and the signals created first carry what a lower layer tells a higher one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from server import validate as v
from server.auth import Identity, verify_token
from server.cart.carts import Carts
from server.cart.ops import CartOps
from server.cart.orders import Orders
from server.cart.products import Products
from server.cart.refunds import Refunds
from server.cart.saga import Saga, Timing
from server.cart.stock_watch import StockWatch
from server.cart.waitlists import Waitlists
from server.clock import Ticker, now_ms
from server.counters.ledger import Ledger
from server.counters.room_counters import RoomCounters
from server.edge.client import Client, Sink
from server.edge.codecs import Codec
from server.edge.commands import Dispatcher, Handler
from server.errors import ApiError, CloseCode, ErrorCode
from server.facts import ClosedDeal
from server.fanout.broker import Broker
from server.fanout.hub import Hub
from server.fanout.users import UserChannels
from server.observe.gc_timing import GcScheduler
from server.observe.metrics import Metrics, Reading
from server.rooms.auctions import Auctions
from server.rooms.chat import Chat
from server.rooms.giveaways import Giveaways
from server.rooms.notices import OrderNotices
from server.rooms.ops import RoomOps
from server.rooms.promos import PromoOps
from server.rooms.reminders import Reminders
from server.rooms.room_tick import ANSWERING, RoomTick, StatsGate
from server.rooms.sessions import Sessions
from server.rooms.social import SocialProof
from server.settings import Settings
from server.signals import Signal
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store

log = logging.getLogger("livecart.node")


class Node:
    def __init__(self, settings: Settings, store_url: str) -> None:
        s = self.settings = settings
        self.secret = s.signing_secret
        self.draining = False
        self.keys = keys = Keys(s.key_prefix)
        self.store = store = Store(store_url, timeout_s=s.store_timeout_s,
                                   cluster=s.redis_cluster)
        self.scripts = scripts = Scripts(store, keys, s.history_max_events,
                                         s.history_max_age_s * 1000, s.chat_history_max)
        self.metrics = Metrics()
        deal_closed: Signal[ClosedDeal] = Signal("deal closed")
        cart_left: Signal[str] = Signal("cart left")
        room_dropped: Signal[str] = Signal("room dropped")
        self.stock = stock = StockWatch()
        self.saga = saga = Saga(store, keys, scripts, Timing(s.saga_takeover_ms, s.saga_redo_ms),
                                deal_closed=deal_closed, cart_left=cart_left,
                                released=stock.units_returned)
        self.products = products = Products(store, keys, scripts, s.currency, deal_closed)
        self.reminders = Reminders(store, keys, scripts)
        self.sessions = sessions = Sessions(
            store, keys, scripts, products, deal_closed=deal_closed,
            on_stock_moved=stock.changed, on_live=self.reminders.went_live)
        self.counters = RoomCounters(store, keys, scripts, s.node_id, s.presence_ttl_s)
        self.carts = carts = Carts(store, keys, scripts, products)
        self.orders = orders = Orders(store, keys, saga, s)
        self.vouchers = orders.vouchers
        self.ledger = Ledger(store, keys, s)
        self.refunds = Refunds(saga)
        self.social = social = SocialProof(sessions, products, stock)
        self.hub = hub = Hub(sessions.history_since)
        hub.coalesce_s = s.coalesce_ms / 1000
        self.broker = broker = Broker(
            store, self._on_message, self._on_resubscribed,
            probe_channel=lambda k: keys.probe_channel(s.node_id, k),
            probe_interval_s=s.pubsub_probe_interval_s, probe_timeout_s=s.pubsub_probe_timeout_s)
        self.users = users = UserChannels(store, keys, broker, carts.get, orders.find)
        cart_left.connect(users.cart_left)
        self.waitlists = Waitlists(store, keys, scripts, products, s.waitlist_hold_ms,
                                   on_offer=users.offered, on_stock=stock.changed)
        self.rooms = rooms = RoomOps(sessions, products, self.counters, hub, broker,
                                     s.store_timeout_s, s.chat_snapshot_messages, room_dropped)
        notices = OrderNotices(self.metrics, social)
        self.auctions = Auctions(store, keys, scripts, sessions, products, orders, users.publish,
                                 s.auction_extend_s, notices.prize_placed)
        self.giveaways = giveaways = Giveaways(
            store, keys, scripts, sessions, products, orders, hub, users.publish,
            s.presence_ttl_s, notices.prize_placed, room_dropped)
        self.chat = Chat(store, keys, scripts, rate_per_s=s.chat_rate_per_s,
                         burst=s.chat_rate_burst, audit_max=s.audit_max,
                         on_message=giveaways.said)
        hub.fetch_chat = self.chat.chat_since
        hub.on_fact = self._on_fact
        hub.observe_fanout = self.metrics.fanout_seconds.observe
        self.cart_ops = CartOps(carts, orders, rooms.room_facts, rooms.known_sold_out,
                                rooms.deal_units, users.publish, notices.placed)
        handlers: dict[str, Handler] = {"ping": self.ping, "auth": self.auth}
        for service in (rooms, self.cart_ops, self.auctions, giveaways, self.chat,
                        self.reminders,
                        PromoOps(sessions, products, self.vouchers, self.waitlists)):
            handlers.update(service.handlers())
        self.dispatcher = Dispatcher(handlers, observe=self.metrics.observe_command)
        self.clients: dict[int, Client] = {}
        self.metrics.attach(self._readings())
        self.room_tick = RoomTick(store, keys, hub, self.counters, users, rooms.facts.get,
                                  self.answering, room_dropped)
        gc = (GcScheduler(s.gc_full_every_s, s.gc_full_max_s, lambda: self.dispatcher.received)
              if s.manage_gc else None)
        self.ticker = Ticker("counters-tick", s.counters_interval_s, [
            sessions.due_deals.sweep, saga.sweep, self.auctions.sweep, giveaways.sweep,
            giveaways.refresh_joined, self.waitlists.sweep, self.room_tick.tick,
        ], after=gc.tick if gc is not None else None)
        self.social_ticker = Ticker("social-proof", s.social_interval_s, [social.flush],
                                    skip=StatsGate(self.answering).holds)

    def answering(self) -> bool:
        """Is this node in a burst of commands (a flash-sale storm, a join spike)? Then a
        room's stats — social proof, counters — wait (rooms/room_tick.py)."""
        return self.dispatcher.in_flight > ANSWERING

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()  # the loop every store call runs on
        await self.store.open()
        await self.store.load_all()
        await self.broker.start()
        self.ticker.start()
        self.social_ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
        await self.social_ticker.stop()
        with contextlib.suppress(ApiError):
            await self.social.flush()
        await self.room_tick.final()
        await self.broker.close()
        await self.store.close()

    # connections (the Gate's side: server/edge/gate.py) ---------------------------------

    def connect(self, sink: Sink, codec: Codec, identity: Identity) -> Client:
        s = self.settings
        client = Client(sink, codec, identity, rate=s.rate_per_s, burst=s.rate_burst,
                        abuse_errors=s.abuse_errors, abuse_window_s=s.abuse_window_s,
                        max_buffer=s.send_buffer_bytes, on_evict=self._evicted)
        self.clients[client.id] = client
        self.users.attach(client)
        return client

    def disconnect(self, client: Client) -> None:
        self.giveaways.left(client, self.users.of(client.user))
        self.hub.remove(client)
        self.clients.pop(client.id, None)
        self.users.detach(client)

    def _evicted(self, client: Client, code: int) -> None:
        if code == CloseCode.SLOW_CONSUMER:
            self.hub.evictions += 1
            log.info("slow consumer closed with 4008", extra={"session": client.session})
        self.hub.remove(client)

    async def handle(self, client: Client, data: str | bytes) -> None:
        await self.dispatcher.handle(client, data)

    def drain(self) -> None:
        """Close every connection with 1001 behind what is already queued for it."""
        self.draining = True
        for client in list(self.clients.values()):
            client.evict(CloseCode.GOING_AWAY, "server draining")

    async def ping(self, client: Client, args: Mapping[str, Any]) -> Any:
        return {"pong": now_ms()}

    async def auth(self, client: Client, args: Mapping[str, Any]) -> Any:
        identity = verify_token(self.secret, v.req_str(args, "token", max_len=4096))
        if client.identity.sub is not None and identity.sub != client.identity.sub:
            raise ApiError(ErrorCode.FORBIDDEN, "a refreshed token must be for the same user")
        signing_in = client.identity.sub is None
        client.identity = identity
        if signing_in:
            self.users.attach(client)
        return {"sub": identity.sub, "role": identity.role, "exp": identity.exp}

    # pub/sub: room channels to the hub, user channels to the users' connections ---------

    def _on_fact(self, sid: str, event: Any) -> None:
        self.rooms.on_room_event(sid, event)
        self.giveaways.on_room_event(sid, event)
        if event["t"] == "sold_out":  # the storm's queue need not wait for a place
            self.orders.sold_out_heard(sid, str(event["d"]["product"]))

    def _on_message(self, channel: str, data: bytes) -> None:
        parsed = self.keys.parse_channel(channel)
        if parsed is not None:
            kind, ident = parsed
            (self.hub.on_event if kind == "s" else self.users.on_message)(ident, data)

    def _on_resubscribed(self, channel: str) -> None:
        parsed = self.keys.parse_channel(channel)
        if parsed is None:
            return
        if parsed[0] == "s":
            self.hub.resync(parsed[1])
        else:
            self.users.resync_soon(parsed[1])

    def _hub_readings(self) -> list[Reading]:
        hub = self.hub
        return [
            Reading("gauge", "livecart_rooms", "sessions with viewers on this node",
                    lambda: len(hub.rooms)),
            Reading("gauge", "livecart_joined_viewers", "connections joined to a session",
                    lambda: sum(room.size for room in hub.rooms.values())),
            Reading("counter", "livecart_events_received", "room events received from pub/sub",
                    lambda: hub.received),
            Reading("counter", "livecart_events_delivered", "room events written to viewers",
                    lambda: hub.delivered),
            Reading("counter", "livecart_slow_consumer_evictions", "viewers closed with 4008",
                    lambda: hub.evictions),
            Reading("counter", "livecart_chat_events_received",
                    "chat-lane events received from pub/sub", lambda: hub.chat_received),
            Reading("counter", "livecart_sold_out_events",
                    "sold_out room events received by this node's rooms", lambda: hub.sold_out),
        ]

    def _readings(self) -> list[Reading]:
        return [Reading("gauge", "livecart_connections", "open WebSocket connections",
                        lambda: len(self.clients)),
                *self._hub_readings(), *self.store.readings(), *self.broker.readings(),
                *self.sessions.readings(), *self.chat.readings(), *self.reminders.readings()]
