"""Room commands over the WebSocket: join, leave, like, click, pin, unpin, start, end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from server import validate as v
from server.auth import require_user
from server.cart.deals import parse_deal
from server.cart.products import Products
from server.counters.room_counters import RoomCounters
from server.edge.client import Client
from server.edge.commands import Handler, Then
from server.errors import ApiError, ErrorCode, bad_request, not_found, unavailable
from server.facts import RoomFacts, Session
from server.fanout.broker import Broker
from server.fanout.hub import Hub
from server.rooms.sessions import Sessions, parse_chat, parse_history
from server.rooms.snapshots import Snapshot, Snapshots
from server.rooms.sold_out import SoldOut
from server.rooms.timeline import Entry, active_at, replay_timeline
from server.signals import Signal
from server.valkey.ops import SessionAction

log = logging.getLogger("livecart.rooms")

MAX_LIKES_PER_COMMAND = 1000
COUNTER_KEYS = ("viewers", "likes", "orders", "units")
MAX_STREAM_TS = 10 * 24 * 3600 * 1000


def caller_and_session(client: Client, args: Mapping[str, Any]) -> tuple[str, str]:
    """(the signed-in caller, the session a command acts on: `session`, else the joined
    one); the rights themselves are decided by the scripts."""
    caller = require_user(client.identity)
    sid = v.ident(args, "session", required=False) or client.session
    if sid is None:
        raise bad_request("join the session (or name it in `session`) first")
    return caller, sid


class RoomOps:
    def __init__(self, sessions: Sessions, products: Products, counters: RoomCounters,
                 hub: Hub, broker: Broker, subscribe_timeout_s: float, chat_messages: int,
                 room_dropped: Signal[str]) -> None:
        self.sessions = sessions
        self.products = products
        self.counters = counters
        self.hub = hub
        self.broker = broker
        self.subscribe_timeout_s = subscribe_timeout_s
        self._timers: set[asyncio.Task[None]] = set()
        # what this node knows of sessions it serves: kept current by their events
        self.facts: dict[str, RoomFacts] = {}
        self.sold_out = SoldOut()
        self.snapshots = Snapshots(sessions, products, chat_messages)
        room_dropped.connect(self._dropped)

    def handlers(self) -> dict[str, Handler]:
        return {
            "join": self.join, "leave": self.leave, "like": self.like, "click": self.click,
            "pin": self.pin, "unpin": self.unpin, "start": self.start, "end": self.end,
            "position": self.position,
        }

    async def timed_entries(self, session: Session) -> list[Entry]:
        """The timeline a position is read against: the video's, or the live replay's."""
        if session.kind == "video":
            return [Entry(e["at_ms"], e["product"], e.get("until_ms")) for e in session.timeline]
        if session.status == "ended":
            return replay_timeline(await self.sessions.pin_log(session.id))
        raise bad_request("`position` is for videos and replays; live pins arrive as events")

    async def position(self, client: Client, args: Mapping[str, Any]) -> Any:
        sid = self._joined(client)
        ms = v.req_int(args, "ms", lo=0, hi=MAX_STREAM_TS)
        session = await self.sessions.get(sid)
        entry = active_at(await self.timed_entries(session), ms)
        if entry is None:
            return {"ms": ms, "pinned": None}
        product = await self.products.find(entry.product)
        if product is None:
            return {"ms": ms, "pinned": None}
        pinned_at = entry.pinned_at or (session.started_at or session.created_at) + entry.at_ms
        return {"ms": ms, "pinned": {"product": product.to_wire(), "pinned_at": pinned_at,
                                     "stream_ts_ms": entry.at_ms, "deal": None}}

    def _dropped(self, sid: str) -> None:
        """No connection here watches the room any more: stop serving it."""
        self.broker.unsubscribe(self.sessions.keys.channel(sid))
        self.hub.drop_room(sid)
        self.forget(sid)

    def forget(self, sid: str) -> None:
        """The room is no longer served on this node: drop what it knew of it."""
        self.facts.pop(sid, None)
        self.sold_out.forget(sid)
        self.snapshots.forget(sid)

    async def join(self, client: Client, args: Mapping[str, Any]) -> Any:
        sid = v.req_ident(args, "session")
        since = v.integer(args, "since", lo=0, required=False)
        epoch = v.string(args, "epoch", max_len=64, required=False)
        chat_since = v.integer(args, "chat_since", lo=0, required=False)
        chat_on = args.get("chat", True)
        if not isinstance(chat_on, bool):
            raise bad_request("`chat` must be true or false", field="chat")
        if client.session is not None:
            self.hub.remove(client)
        self.hub.add_joining(client, sid, chat=chat_on)
        try:
            try:
                channel = self.sessions.keys.channel(sid)
                subscribed = self.broker.subscribe(channel)
                if not subscribed.done():  # the common case (room already served) skips this
                    await asyncio.wait_for(asyncio.shield(subscribed), self.subscribe_timeout_s)
                elif subscribed.exception() is not None:
                    raise ConnectionError("store unreachable")
            except (TimeoutError, ConnectionError) as exc:
                raise unavailable() from exc
            snap = await self.snapshots.read(sid, client.user or client.viewer_key, since,
                                             chat_since if chat_on else None, client.user)
            if client.user in snap.banned:
                raise ApiError(ErrorCode.BANNED, "you are banned from this session")
            session = snap.session
            # the same bytes for every viewer of this state
            result: Any = snap.encoded if chat_on else snap.quiet
            replay: list[tuple[int, bytes]] = []
            if since is not None:
                recovered = False
                if epoch == session.epoch and since <= session.seq:
                    found = parse_history(snap.histories[since], since)
                    if found is not None:
                        replay = [(s, e) for s, e in found if s <= session.seq]
                        recovered = len(replay) == session.seq - since
                result = {**(snap.doc if chat_on else snap.quiet.doc), "recovered": recovered}
                if not recovered:
                    replay = []
            chat_replay: list[tuple[int, bytes]] = []
            if chat_on and chat_since is not None:
                chat_replay, chat_recovered = self._chat_recovery(snap, epoch, chat_since)
                base = result if isinstance(result, dict) else snap.doc
                result = {**base, "chat_recovered": chat_recovered}
                if chat_recovered:
                    del result["chat"]  # the missed chat follows as events instead
            await self.hub.caught_up(sid, session.seq, self.subscribe_timeout_s,
                                     snap.cseq if chat_on else 0)
        except BaseException:
            self.hub.remove(client)
            raise
        self.facts[sid] = RoomFacts(session.facts(), frozenset(session.showcase))
        counters = snap.doc["counters"]

        def go_live() -> None:
            self.hub.activate(client, session.seq, replay, snap.cseq, chat_replay)
            room = self.hub.rooms.get(sid)
            seen = tuple(counters[k] for k in COUNTER_KEYS)
            if room is not None and room.last_counters is not None \
                    and room.last_counters != seen:
                # a counters push went out while this client was joining, older or newer
                # than its snapshot: the next tick's fresh values decide (node.tick)
                room.catch_up.append((client, seen))

        return Then(result, go_live)

    @staticmethod
    def _chat_recovery(snap: Snapshot, epoch: str | None,
                       chat_since: int) -> tuple[list[tuple[int, bytes]], bool]:
        """The chat events after `chat_since` up to the snapshot's cseq, and whether they
        are all there (same epoch, the chat stream still reaches back)."""
        if epoch != snap.session.epoch or chat_since > snap.cseq:
            return [], False
        found = parse_chat(snap.chats[chat_since], chat_since, snap.chat_floor)
        if found is None:
            return [], False
        return [(c, e) for c, e in found if c <= snap.cseq], True

    async def leave(self, client: Client, args: Mapping[str, Any]) -> Any:
        left = client.session
        if left is not None:
            self.hub.remove(client)
        return {"left": left}

    def _joined(self, client: Client) -> str:
        if client.session is None or client.joining:
            raise bad_request("join a session first")
        return client.session

    async def like(self, client: Client, args: Mapping[str, Any]) -> Any:
        sid = self._joined(client)
        count = v.integer(args, "count", lo=1, hi=MAX_LIKES_PER_COMMAND, default=1,
                          required=False) or 1
        room = self.hub.rooms.get(sid)
        if room is not None:
            room.likes += count
        return {"count": count}

    async def click(self, client: Client, args: Mapping[str, Any]) -> Any:
        sid = self._joined(client)
        buyer = require_user(client.identity)
        product = v.req_ident(args, "product")
        if product not in (await self.room_facts(sid)).showcase:
            raise not_found("product", product)
        await self.counters.click(sid, product, buyer)
        return {"product": product}

    async def _own_session(self, client: Client, args: Mapping[str, Any]) -> tuple[str, str]:
        return caller_and_session(client, args)

    async def pin(self, client: Client, args: Mapping[str, Any]) -> Any:
        caller, sid = await self._own_session(client, args)
        product_id = v.req_ident(args, "product")
        sts = v.integer(args, "stream_ts_ms", lo=0, hi=MAX_STREAM_TS, required=False)
        deal = parse_deal(args["deal"]) if args.get("deal") is not None else None
        pin, seq = await self.sessions.pin(sid, caller, product_id, sts, deal)  # checks rights
        log.info("pinned %s%s", product_id, " with a deal" if deal else "",
                 extra={"session": sid, "user": caller})
        if deal is not None:
            self._close_at(sid, deal["ends_at"])
        return {"pinned": pin, "seq": seq}

    def on_room_event(self, sid: str, event: Any) -> None:
        """Keep this node's facts of a room it serves: the session's status, and which
        products are sold out in it (server/rooms/sold_out.py has the rules)."""
        kind, data = event["t"], event["d"]
        if kind == "session":
            known = self.facts.get(sid)
            if known is not None:
                self.facts[sid] = replace(known, session=replace(known.session,
                                                                 status=data["status"]))
        else:
            self.sold_out.on_event(sid, kind, data)

    def deal_units(self, sid: str, product: str) -> int | None:
        """Units left in room `sid`'s open deal on `product`, as this node last heard."""
        return self.sold_out.deal_units(sid, product) if sid in self.hub.rooms else None

    def known_sold_out(self, sid: str, product: str) -> bool:
        """True when this node serves room `sid` and knows `product` is sold out there."""
        return sid in self.hub.rooms and self.sold_out.known(sid, product)

    async def room_facts(self, sid: str) -> RoomFacts:
        """The session's creator/kind/status/showcase: from this node's copy when it serves
        the room (updated by `session` events), else from the store."""
        known = self.facts.get(sid)
        if known is not None and sid in self.hub.rooms:
            return known
        session = await self.sessions.get(sid)
        return RoomFacts(session.facts(), frozenset(session.showcase))

    def _close_at(self, sid: str, ends_at_ms: int) -> None:
        """Close the deal on time from this node (every node's tick also sweeps due deals)."""
        loop = asyncio.get_running_loop()
        delay = max(0.0, ends_at_ms / 1000 - time.time())

        def fire() -> None:
            task = loop.create_task(self._close_due(sid))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

        loop.call_later(delay + 0.005, fire)

    async def _close_due(self, sid: str) -> None:
        with contextlib.suppress(ApiError):
            await self.sessions.close_pinned_if_due(sid)

    async def unpin(self, client: Client, args: Mapping[str, Any]) -> Any:
        caller, sid = await self._own_session(client, args)
        sts = v.integer(args, "stream_ts_ms", lo=0, hi=MAX_STREAM_TS, required=False)
        seq = await self.sessions.unpin(sid, caller, sts)
        return {"pinned": None, "seq": seq or None}

    async def start(self, client: Client, args: Mapping[str, Any]) -> Any:
        caller, sid = await self._own_session(client, args)
        return (await self.sessions.set_status(sid, caller, SessionAction.START)).to_wire()

    async def end(self, client: Client, args: Mapping[str, Any]) -> Any:
        caller, sid = await self._own_session(client, args)
        return (await self.sessions.set_status(sid, caller, SessionAction.END)).to_wire()
