"""The composition root: one node's store, broker, hub and services, each built with its
collaborators and callbacks, and the command table. Nothing here decides a rule: the
services do, and the signals created first carry what a lower layer tells a higher one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from server.auth import Identity
from server.cart.carts import Carts
from server.cart.ops import CartOps
from server.cart.orders import Orders
from server.cart.products import Products
from server.cart.refunds import Refunds
from server.cart.saga import Saga, Timing
from server.cart.stock_watch import StockWatch
from server.cart.waitlists import Waitlists
from server.clock import Ticker
from server.counters.ledger import Ledger
from server.counters.room_counters import RoomCounters
from server.edge.client import Client, Sink
from server.edge.codecs import Codec
from server.edge.commands import Dispatcher, Handler
from server.errors import ApiError
from server.events import EventType
from server.facts import ClosedDeal
from server.fanout.broker import Broker
from server.fanout.connections import Connections
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
        self.hub = hub = Hub(fetch_history=sessions.history_since,
                             fetch_chat=sessions.chat_since, on_fact=self._on_fact,
                             coalesce_s=s.coalesce_ms / 1000,
                             observe_fanout=self.metrics.fanout_seconds.observe)
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
        self.cart_ops = CartOps(carts, orders, rooms.room_facts, rooms.known_sold_out,
                                rooms.deal_units, users.publish, notices.placed)
        self.connections = Connections(s, hub, users, giveaways.left)
        handlers: dict[str, Handler] = {}
        for service in (self.connections, rooms, self.cart_ops, self.auctions, giveaways, self.chat,
                        self.reminders,
                        PromoOps(sessions, products, self.vouchers, self.waitlists)):
            handlers.update(service.handlers())
        self.dispatcher = Dispatcher(handlers, observe=self.metrics.observe_command)
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

    # the Gate's side (server/edge/gate.py) ------------------------------------------

    def connect(self, sink: Sink, codec: Codec, identity: Identity) -> Client:
        return self.connections.connect(sink, codec, identity)

    def disconnect(self, client: Client) -> None:
        self.connections.disconnect(client)

    async def handle(self, client: Client, data: str | bytes) -> None:
        await self.dispatcher.handle(client, data)

    def drain(self) -> None:
        self.draining = True
        self.connections.drain()

    # pub/sub: room channels to the hub, user channels to the users' connections ---------

    def _on_fact(self, sid: str, event: Any) -> None:
        self.rooms.on_room_event(sid, event)
        self.giveaways.on_room_event(sid, event)
        if event["t"] == EventType.SOLD_OUT:  # the storm's queue need not wait for a place
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

    def _readings(self) -> list[Reading]:
        return [Reading("gauge", "livecart_connections", "open WebSocket connections",
                        lambda: len(self.connections.clients)),
                *self.hub.readings(), *self.store.readings(), *self.broker.readings(),
                *self.sessions.readings(), *self.chat.readings(), *self.reminders.readings()]
