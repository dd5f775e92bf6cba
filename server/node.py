"""The composition root: one node's store, broker, hub, domain services and command table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from server import validate as v
from server.auth import Identity, verify_token
from server.cart.carts import Carts
from server.cart.ops import CartOps
from server.cart.orders import Orders
from server.cart.products import Products
from server.cart.refunds import Refunds
from server.cart.saga import Placed, Saga, Timing
from server.cart.waitlists import Waitlists
from server.counters.ledger import Ledger
from server.counters.reports import live_stats
from server.counters.room_counters import RoomCounters
from server.edge.client import Client, Sink
from server.edge.codecs import JSON, Codec
from server.edge.commands import Dispatcher, Handler
from server.errors import ApiError, CloseCode, ErrorCode
from server.fanout.broker import Broker
from server.fanout.hub import Hub, deliver
from server.observe.gc_timing import Collector
from server.observe.metrics import Metrics, Reading
from server.rooms.auctions import Auctions
from server.rooms.chat import Chat
from server.rooms.giveaways import Giveaways
from server.rooms.ops import RoomOps
from server.rooms.promos import PromoOps
from server.rooms.reminders import Reminders
from server.rooms.sessions import Sessions
from server.rooms.social import SocialProof
from server.settings import Settings
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store, as_dict
from server.valkey.store import text as as_str

log = logging.getLogger("livecart.node")

ANSWERING = 256  # commands in flight above which a room's stats wait (Node.answering)
STATS_DEFER_TICKS = 3  # ... for at most this many of their ticks


class StatsGate:
    """Room stats (social proof, counters) wait while the node answers a burst, at most
    STATS_DEFER_TICKS of their ticks in a row: `holds()` once per tick says whether this
    tick's stats wait."""

    def __init__(self, answering: Callable[[], bool]) -> None:
        self.answering = answering
        self.held = 0

    def holds(self) -> bool:
        hold = self.answering() and self.held < STATS_DEFER_TICKS
        self.held = self.held + 1 if hold else 0
        return hold


class Node:
    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings = settings
        self.secret = settings.signing_secret
        self.keys = Keys(settings.key_prefix)
        self.store = Store(store_url, timeout_s=settings.store_timeout_s,
                           cluster=settings.redis_cluster)
        self.scripts = Scripts(self.store, self.keys, settings.history_max_events,
                               settings.history_max_age_s * 1000, settings.chat_history_max)
        self.saga = Saga(self.store, self.keys, self.scripts,
                         Timing(settings.saga_takeover_ms, settings.saga_redo_ms))
        self.products = Products(self.store, self.keys, self.scripts, settings.currency)
        self.sessions = Sessions(self.store, self.keys, self.scripts, self.products)
        self.counters = RoomCounters(self.store, self.keys, self.scripts, settings.node_id,
                                     settings.presence_ttl_s)
        self.carts = Carts(self.store, self.keys, self.scripts, self.products)
        self.orders = Orders(self.store, self.keys, self.saga, settings)
        self.social = SocialProof(self.sessions, self.products)
        self.vouchers = self.orders.vouchers
        self.waitlists = Waitlists(self.store, self.keys, self.scripts, self.products,
                                   settings.waitlist_hold_ms)
        self.waitlists.on_offer = self._offered
        self.waitlists.on_stock = self.social.stock_changed
        self.ledger = Ledger(self.store, self.keys, settings)
        self.refunds = Refunds(self.saga)
        self.products.on_deal_closed = self._deal_closed_by_price
        self.saga.on_deal_closed = self._deal_closed_lazily
        self.saga.on_cart_left = self._cart_left
        self.saga.on_released = self.social.units_returned
        self._background: set[asyncio.Task[None]] = set()
        self._attached_at: dict[str, int] = {}  # user -> when this node subscribed for them
        self._orders_seen: dict[str, set[str]] = {}  # user -> orders delivered here
        self.last_stats: dict[str, dict[str, int]] = {}
        self.chat = Chat(self.store, self.keys, self.scripts, rate_per_s=settings.chat_rate_per_s,
                         burst=settings.chat_rate_burst, audit_max=settings.audit_max)
        self.metrics = Metrics()
        self.hub = Hub(fetch_history=self._fetch_history, fetch_chat=self.chat.chat_since,
                       on_fact=self._on_fact,  # keeps the node's room facts
                       coalesce_s=settings.coalesce_ms / 1000,
                       observe_fanout=self.metrics.fanout_seconds.observe)
        self.broker = Broker(
            self.store, self._on_message, self._on_resubscribed,
            probe_channel=lambda k: self.keys.probe_channel(settings.node_id, k),
            probe_interval_s=settings.pubsub_probe_interval_s,
            probe_timeout_s=settings.pubsub_probe_timeout_s)
        self.rooms = RoomOps(self.sessions, self.products, self.counters, self.hub, self.broker,
                             subscribe_timeout_s=settings.store_timeout_s,
                             chat_messages=settings.chat_snapshot_messages)
        self.reminders = Reminders(self.store, self.keys, self.scripts)
        self.sessions.on_live = self.reminders.went_live
        self.sessions.on_stock_moved = self.social.stock_changed
        self.cart_ops = CartOps(self.carts, self.orders, self.rooms.room_facts,
                                self.rooms.known_sold_out, self.rooms.deal_units,
                                self.publish_private, self._placed)
        self.clients: dict[int, Client] = {}
        self.users: dict[str, dict[int, Client]] = {}
        handlers: dict[str, Handler] = {"ping": self.ping, "auth": self.auth}
        handlers.update(self.rooms.handlers())
        handlers.update(self.cart_ops.handlers())
        self.auctions = Auctions(self.store, self.keys, self.scripts, self.sessions,
                                 self.products, self.orders, self.publish_private,
                                 settings.auction_extend_s)
        self.giveaways = Giveaways(self.store, self.keys, self.scripts, self.sessions,
                                   self.products, self.orders, self.hub, self.publish_private,
                                   settings.presence_ttl_s)
        self.auctions.on_order = self.giveaways.on_order = self._prize_placed
        self.chat.on_message = self.giveaways.said
        handlers.update(self.auctions.handlers())
        handlers.update(self.giveaways.handlers())
        handlers.update(self.chat.handlers())
        handlers.update(self.reminders.handlers())
        handlers.update(PromoOps(self.sessions, self.products, self.vouchers,
                                 self.waitlists).handlers())
        self.dispatcher = Dispatcher(handlers, observe=self.metrics.observe_command)
        self.metrics.attach(self._readings())
        self._ticker: asyncio.Task[None] | None = None
        self._social: asyncio.Task[None] | None = None
        self._stopping = False
        self.collector: Collector | None = None  # `serve` sets it (server/observe/gc_timing.py)
        self._social_gate = StatsGate(self.answering)
        self._counters_gate = StatsGate(self.answering)
        self.draining = False

    def _readings(self) -> list[Reading]:
        hub = self.hub
        return [
            Reading("gauge", "livecart_connections", "open WebSocket connections",
                    lambda: len(self.clients)),
            Reading("gauge", "livecart_rooms", "sessions with viewers on this node",
                    lambda: len(hub.rooms)),
            Reading("gauge", "livecart_joined_viewers", "connections joined to a session",
                    lambda: sum(room.size for room in hub.rooms.values())),
            Reading("counter", "livecart_events_published",
                    "room events published by this node's commands",
                    lambda: self.sessions.published),
            Reading("counter", "livecart_events_received", "room events received from pub/sub",
                    lambda: hub.received),
            Reading("counter", "livecart_events_delivered", "room events written to viewers",
                    lambda: hub.delivered),
            Reading("counter", "livecart_slow_consumer_evictions", "viewers closed with 4008",
                    lambda: hub.evictions),
            Reading("counter", "livecart_store_errors", "store calls that failed",
                    lambda: self.store.errors),
            Reading("counter", "livecart_store_reconnects", "pub/sub reconnections",
                    lambda: self.broker.reconnects),
            Reading("counter", "livecart_pubsub_probes_failed",
                    "subscriber connections rebuilt because a probe did not come back",
                    lambda: self.broker.probes_failed),
            Reading("counter", "livecart_chat_messages",
                    "chat messages published by this node's commands",
                    lambda: self.chat.messages),
            Reading("counter", "livecart_chat_events_received",
                    "chat-lane events received from pub/sub", lambda: hub.chat_received),
            Reading("counter", "livecart_live_notifications",
                    "`live` notices sent to reminded users", lambda: self.reminders.sent),
            Reading("counter", "livecart_sold_out_events",
                    "sold_out room events received by this node's rooms", lambda: hub.sold_out),
        ]

    async def start(self) -> None:
        await self.store.open()
        await self.store.load_all()
        await self.broker.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="counters-tick")
        self._social = asyncio.create_task(self._social_loop(), name="social-proof")

    async def stop(self) -> None:
        # A cancel can be swallowed by a wait_for inside redis-py (Python 3.11) just as
        # its call completes, so the loops also check `_stopping`, and we never wait
        # on them unboundedly.
        self._stopping = True
        tasks = {t for t in (self._ticker, self._social) if t is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
        with contextlib.suppress(ApiError):
            await self.social.flush()
        with contextlib.suppress(ApiError):
            await self.counters.tick([(sid, 0, room.likes) for sid, room in self.hub.rooms.items()])
        await self.broker.close()
        await self.store.close()

    # connections ------------------------------------------------------------

    def _on_fact(self, sid: str, event: Any) -> None:
        self.rooms.on_room_event(sid, event)
        self.giveaways.on_room_event(sid, event)
        if event["t"] == "sold_out":  # the storm's queue need not wait for a place
            self.orders.sold_out_heard(sid, str(event["d"]["product"]))

    def connect(self, sink: Sink, codec: Codec, identity: Identity) -> Client:
        s = self.settings
        client = Client(sink, codec, identity, rate=s.rate_per_s, burst=s.rate_burst,
                        abuse_errors=s.abuse_errors, abuse_window_s=s.abuse_window_s,
                        max_buffer=s.send_buffer_bytes, on_evict=self._evicted)
        self.clients[client.id] = client
        self._attach_user(client)
        return client

    def disconnect(self, client: Client) -> None:
        self.giveaways.left(client, self.users.get(client.user or "", {}).values())
        self.hub.remove(client)
        self.clients.pop(client.id, None)
        self._detach_user(client)

    def _attach_user(self, client: Client) -> None:
        uid = client.user
        if uid is None:
            return
        mine = self.users.setdefault(uid, {})
        if not mine:
            self._attached_at[uid] = int(time.time() * 1000)
            self.broker.subscribe(self.keys.user_channel(uid))
        mine[client.id] = client

    def _detach_user(self, client: Client) -> None:
        uid = client.user
        mine = self.users.get(uid) if uid else None
        if mine is None or uid is None:
            return
        mine.pop(client.id, None)
        if not mine:
            del self.users[uid]
            self._attached_at.pop(uid, None)
            self._orders_seen.pop(uid, None)
            self.broker.unsubscribe(self.keys.user_channel(uid))

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

    # connection-level ops -------------------------------------------------------

    async def ping(self, client: Client, args: Mapping[str, Any]) -> Any:
        return {"pong": int(time.time() * 1000)}

    async def auth(self, client: Client, args: Mapping[str, Any]) -> Any:
        token = v.req_str(args, "token", max_len=4096)
        identity = verify_token(self.secret, token)
        if client.identity.sub is not None and identity.sub != client.identity.sub:
            raise ApiError(ErrorCode.FORBIDDEN, "a refreshed token must be for the same user")
        signing_in = client.identity.sub is None
        client.identity = identity
        if signing_in:
            self._attach_user(client)
        return {"sub": identity.sub, "role": identity.role, "exp": identity.exp}

    # private events ---------------------------------------------------------------

    async def publish_private(self, uid: str, data: Any, event: str = "cart") -> None:
        doc = {"t": event, "ts": int(time.time() * 1000), "d": data}
        await self.store.call("SPUBLISH", self.keys.user_channel(uid), JSON.encode(doc))

    async def _offered(self, user: str, product: str, hold_until: int) -> None:
        """A restock (or a passed-on hold) holds a unit for this waiting user."""
        await self.publish_private(user, {"product": product, "hold_until": hold_until},
                                   "restocked")

    async def _deal_closed_by_price(self, sid: str, deal: bytes) -> None:
        """A list price cut to or below a deal's price closed it: announce it."""
        self.sessions.closed_deal_log(sid, deal, "the list price dropped to its price")
        await self.sessions.announce_closed(sid, deal)

    def _deal_closed_lazily(self, sid: str, deal: bytes) -> None:
        """A purchase closed a deal at its ends_at (in the product's slot): announce it."""
        self.sessions.closed_deal_log(sid, deal, "its time is up")
        self._spawn(self.sessions.announce_closed(sid, deal))

    async def _placed(self, client: Client, placed: Placed) -> None:
        """After a new order (its private events went out from purchase.lua): stock notices
        and social proof, aggregated."""
        if not placed.new:
            return
        order = placed.order
        self.metrics.order_placed(order)
        log.info("order %s placed: %s %s, %d line(s)", order["id"], order["total"],
                 order["currency"], len(order["lines"]),
                 extra={"order": order["id"], "user": order["buyer"], "session": client.session,
                        "total": order["total"], "currency": order["currency"]})
        for line in order["lines"]:
            self.social.stock_changed(str(line["product"]))
        if client.session is not None:
            name = client.identity.display_name()
            for line in order["lines"]:
                self.social.note(client.session, str(line["product"]), int(line["qty"]), name)

    def _prize_placed(self, order: dict[str, Any]) -> None:
        """A new auction or giveaway order: metrics and stock notices."""
        self.metrics.order_placed(order)
        log.info("order %s placed (%s): %s %s", order["id"], order["source"], order["total"],
                 order["currency"], extra={"order": order["id"], "user": order["buyer"]})
        for line in order["lines"]:
            self.social.stock_changed(str(line["product"]))

    def _on_message(self, channel: str, data: bytes) -> None:
        parsed = self.keys.parse_channel(channel)
        if parsed is None:
            return
        kind, ident = parsed
        if kind == "s":
            self.hub.on_event(ident, data)
            return
        mine = self.users.get(ident)
        if mine:
            if data.startswith(b'{"t":"order"'):
                self._orders_seen.setdefault(ident, set()).add(
                    str(orjson.loads(data)["d"]["id"]))
            deliver(list(mine.values()), bytes(data))

    def _on_resubscribed(self, channel: str) -> None:
        parsed = self.keys.parse_channel(channel)
        if parsed is None:
            return
        if parsed[0] == "s":
            self.hub.resync(parsed[1])
        else:
            self._spawn(self._resync_user(parsed[1]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _resync_user(self, uid: str) -> None:
        """A user's private channel was (re)subscribed after events may have been missed:
        send each of the user's connections here the current cart (its version lets a
        client drop an older one) and every recent order it was not sent yet."""
        if uid not in self.users:
            return
        try:
            cart = await self.carts.get(uid)
            recent = [as_str(o) for o in
                      await self.store.call("LRANGE", self.keys.user_orders(uid), 0, 9)]
            seen = self._orders_seen.setdefault(uid, set())
            missed = [oid for oid in reversed(recent) if oid not in seen]
            found = [await self.orders.find(oid) for oid in missed]
        except ApiError:
            return  # still unreachable: the next resubscribe tries again
        mine = list(self.users.get(uid, {}).values())
        now = int(time.time() * 1000)
        deliver(mine, JSON.encode({"t": "cart", "ts": now, "d": cart}))
        for oid, row in zip(missed, found, strict=True):
            if row is not None and row[0]["created_at"] >= self._attached_at.get(uid, now):
                seen.add(oid)
                deliver(mine, JSON.encode({"t": "order", "ts": now, "d": row[0]}))

    def _cart_left(self, buyer: str) -> None:
        """A checkout left lines in the buyer's cart: every device gets that cart."""
        async def publish() -> None:
            with contextlib.suppress(ApiError):
                await self.publish_private(buyer, await self.carts.get(buyer))

        self._spawn(publish())

    # background -----------------------------------------------------------------

    def answering(self) -> bool:
        """Is this node in a burst of commands (a flash-sale storm, a join spike)? Then a
        room's stats — social proof, counters — wait: each is one more frame to every
        viewer, and the burst's replies go first (at most `STATS_DEFER_TICKS` ticks)."""
        return self.dispatcher.in_flight > ANSWERING

    async def _social_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.social_interval_s)
            if self._social_gate.holds():
                continue
            try:
                await self.social.flush()
            except ApiError:
                pass
            except Exception:
                log.exception("social proof flush failed")

    async def _push_stats(self, reports: list[Any]) -> None:
        """`stats` to each room's creator connected here, at most once a tick, on change."""
        watching = []
        for report in reports:
            known = self.rooms.facts.get(report.sid)
            creator = known.session.creator if known else None
            mine = [c for c in self.users.get(creator, {}).values()
                    if c.session == report.sid and not c.joining] if creator else []
            if mine:
                watching.append((report, mine))
        if not watching:
            return
        rows = await self.store.batch(
            [("HGETALL", self.keys.counters(r.sid)) for r, _ in watching])
        now = int(time.time() * 1000)
        for (report, mine), row in zip(watching, rows, strict=True):
            stats = live_stats(as_dict(row), report.viewers)
            if stats == self.last_stats.get(report.sid):
                continue
            self.last_stats[report.sid] = stats
            deliver(mine, JSON.encode({"t": "stats", "ts": now, "d": stats}))

    async def _close_due_deals(self) -> None:
        """Close every deal past its ends_at, whichever node opened it (idempotent)."""
        now = int(time.time() * 1000)
        due = await self.store.call("ZRANGEBYSCORE", self.keys.open_deals(), 0, now,
                                    "LIMIT", 0, 100)
        for member in due:
            await self.sessions.close_due(as_str(member))

    async def _fetch_history(self, sid: str, since: int) -> list[tuple[int, bytes]] | None:
        return await self.sessions.history_since(sid, since)

    async def _tick_loop(self) -> None:
        interval = self.settings.counters_interval_s
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except ApiError:
                pass  # store down: presence expires by itself; try again next tick
            except Exception:
                log.exception("counters tick failed")
            if self.collector is not None:
                self.collector.tick()

    def _audience(self, sid: str, joined: int) -> int:
        """Viewers of a room here: its live (joined, not joining) connections, less the
        session creator's own (a creator watching the console is not an audience). A
        connection is live only once its room's facts are known, so the creator is always
        recognised."""
        known = self.rooms.facts.get(sid)
        mine = self.users.get(known.session.creator, {}) if known else {}
        own = sum(1 for c in mine.values() if c.session == sid and not c.joining)
        return max(0, joined - own)

    async def tick(self) -> None:
        await self._close_due_deals()
        await self.saga.sweep()
        await self.auctions.sweep()
        await self.giveaways.sweep()
        await self.giveaways.refresh_joined()
        await self.waitlists.sweep()
        rooms = list(self.hub.rooms.values())
        if not rooms:
            return
        likes = {room.sid: room.likes for room in rooms}
        for room in rooms:
            room.likes = 0
        try:
            reports = await self.counters.tick(
                [(r.sid, self._audience(r.sid, len(r.clients)), likes[r.sid]) for r in rooms])
        except ApiError:
            for room in rooms:  # keep the likes for the next tick
                room.likes += likes[room.sid]
            raise
        now = int(time.time() * 1000)
        await self._push_stats(reports)
        defer = self._counters_gate.holds()
        for room, report in zip(rooms, reports, strict=True):
            if room.size == 0:
                self.broker.unsubscribe(self.keys.channel(room.sid))
                self.hub.drop_room(room.sid)
                self.rooms.forget(room.sid)
                self.giveaways.keywords.pop(room.sid, None)
                self.last_stats.pop(room.sid, None)
                continue
            values = (report.viewers, report.likes, report.orders, report.units)
            pushed = values != room.last_counters and not defer
            joiners, room.catch_up = room.catch_up, []
            if not pushed and not joiners:
                continue
            event = {"t": "counters", "ts": now, "d": report.counters()}
            if pushed:
                room.last_counters = values
                self.hub.push(room, event)
            for client, seen in joiners:  # joined around the last push (rooms/ops.join)
                if not pushed and seen != values and client.id in room.clients:
                    client.send_obj(event)
