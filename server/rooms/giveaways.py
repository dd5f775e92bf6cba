"""Giveaways: a creator gives units of a showcase product away; joined viewers enter.

At the end the winners are drawn uniformly at random among the entrants still joined,
reproducibly: the eligible entrants are frozen (sorted) with a seed by the first node to
close the giveaway (`giveaway_close.lua freeze`), every node computes the same winners
from them (`draw`), each winner gets a free order (`Orders.prize`, price 0, order id
derived from the giveaway and the winner) and the giveaway closes once
(`giveaway_close.lua settle`). `GET /api/sessions/{id}/giveaways/{gid}` publishes the
seed, the entrant list, its hash and the winners, so anyone can re-run the draw:

    entrants = sorted(entrant ids)        # e_<16 hex>, see entrant_id
    entrant_hash = sha256("\\n".join(entrants)).hexdigest()
    for i in range(min(k, n)):
        j = i + int(sha256(f"{seed}:{i}").hexdigest(), 16) % (n - i)
        entrants[i], entrants[j] = entrants[j], entrants[i]
    winners = entrants[:k]

(a partial Fisher-Yates shuffle; a 256-bit value mod n is uniform within n / 2^256).
Entrants are published as `entrant_id`s, not user ids (which may be e-mail addresses): an
entrant finds their own as `e_` + the first 16 hex digits of sha256("<giveaway id>:<user id>").

"Still joined": each node refreshes, every tick while a giveaway is open in a room it
serves, when its signed-in viewers of that room were last seen (`keys.joined`, valid for
`LIVECART_PRESENCE_TTL_S`); a viewer's last connection closing removes them at once. The
creator and the session's moderators never win (giveaway_close.lua excludes them at the
freeze). A giveaway with a `keyword` is also entered by chatting it (the whole message,
case and surrounding spaces aside): each node keeps the open keyword of the rooms it serves
from their `giveaway` events and enters the author of a matching message it accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from server import validate as v
from server.auth import require_user
from server.cart.orders import Orders
from server.cart.products import Products
from server.clock import now_ms
from server.edge.client import Client
from server.edge.commands import Handler
from server.errors import ApiError, ErrorCode, not_found
from server.fanout.hub import Hub
from server.rooms.auctions import PublishPrivate, creator_session, joined_session, member
from server.rooms.sessions import Sessions
from server.signals import Signal
from server.valkey.due import DueIndex
from server.valkey.keys import Keys
from server.valkey.ops import GiveawayPhase
from server.valkey.scripts import Scripts
from server.valkey.store import Store, as_dict, text

log = logging.getLogger("livecart.giveaways")

MAX_WINNERS = 100
MAX_AHEAD_MS = 24 * 3600 * 1000
ALGORITHM = (
    "entrants sorted; entrant_hash = sha256 hex of the entrants joined by '\\n'; "
    "for i in 0..min(k, n)-1: j = i + int(sha256(seed + ':' + str(i)) as 256-bit "
    "big-endian) mod (n - i), swap entrants[i] and entrants[j]; winners = entrants[0:k]; "
    "an entrant id is 'e_' + the first 16 hex digits of sha256(giveaway id + ':' + user id)")


def fold(text: str) -> str:
    return text.strip().casefold()



def entrant_id(gid: str, uid: str) -> str:
    return "e_" + hashlib.sha256(f"{gid}:{uid}".encode()).hexdigest()[:16]


def entrant_hash(entrants: list[str]) -> str:
    return hashlib.sha256("\n".join(entrants).encode()).hexdigest()


def draw(seed: str, entrants: Iterable[str], k: int) -> list[str]:
    """The winners of a draw: a partial Fisher-Yates shuffle of the sorted entrants keyed
    by sha256(seed:i) — the documented algorithm (module docstring, docs/protocol.md)."""
    pool = sorted(entrants)
    for i in range(min(k, len(pool))):
        j = i + int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(), 16) % (len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


class Giveaways:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts, sessions: Sessions,
                 products: Products, orders: Orders, hub: Hub,
                 publish_private: PublishPrivate, presence_ttl_s: float,
                 on_order: Callable[[dict[str, Any]], None], room_dropped: Signal[str]) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self.sessions, self.products, self.orders, self.hub = sessions, products, orders, hub
        self.publish_private = publish_private
        self.ttl_ms = int(presence_ttl_s * 1000)
        self.on_order = on_order  # told each new prize order (metrics, stock notices)
        self.open_in: set[str] = set()  # sessions with an open giveaway (last sweep)
        self.keywords: dict[str, tuple[str, str]] = {}  # sid -> (giveaway, folded keyword)
        self._timers: set[asyncio.Task[None]] = set()
        self.closings = DueIndex(store, [keys.open_giveaways()], "closing giveaway",
                                 self.close_due)
        room_dropped.connect(self._room_dropped)

    def handlers(self) -> dict[str, Handler]:
        return {"giveaway": self.open, "enter": self.enter}

    def _room_dropped(self, sid: str) -> None:
        self.keywords.pop(sid, None)

    # commands ---------------------------------------------------------------------

    async def open(self, client: Client, args: Mapping[str, Any]) -> Any:
        """`giveaway {product, winners, ends_at, keyword?, session?}` — the creator, live."""
        caller = require_user(client.identity)
        sid = creator_session(client, args)
        product_id = v.req_ident(args, "product")
        winners = v.req_int(args, "winners", lo=1, hi=MAX_WINNERS)
        ends_at = v.req_int(args, "ends_at", lo=0, hi=now_ms() + MAX_AHEAD_MS)
        keyword = v.string(args, "keyword", max_len=32, required=False) or ""
        product = await self.products.find(product_id)
        if product is None:
            raise not_found("product", product_id)
        if product.stock < winners:
            raise ApiError(ErrorCode.OUT_OF_STOCK, "not enough stock for every winner",
                           product=product_id, available=product.stock)
        gid = f"gw_{secrets.token_hex(6)}"
        entry = member(sid, gid)
        await self.store.call("ZADD", self.keys.open_giveaways(), ends_at, entry)
        try:
            data, seq = await self.scripts.open_giveaway(
                sid, gid, caller, product_id, winners, ends_at, keyword)
        except ApiError:
            await self.store.call("ZREM", self.keys.open_giveaways(), entry)
            raise
        self.sessions.published += 1
        self.open_in.add(sid)
        log.info("giveaway %s opened on %s", gid, product_id,
                 extra={"session": sid, "product": product_id, "user": caller})
        self.closings.arm(entry, ends_at)
        return {"giveaway": orjson.loads(data), "seq": seq}

    async def enter(self, client: Client, args: Mapping[str, Any]) -> Any:
        """`enter {giveaway}` — signed in, joined to its session; once per user."""
        uid = require_user(client.identity)
        sid = joined_session(client)
        gid = v.req_ident(args, "giveaway")
        new, entries = await self.scripts.enter_giveaway(
            sid, gid, uid, client.identity.display_name(), now_ms() + self.ttl_ms)
        return {"giveaway": gid, "entered": True, "new": new, "entries": entries}

    def on_room_event(self, sid: str, event: Any) -> None:
        """A `giveaway` event of a room this node serves: remember or forget its keyword."""
        if event["t"] != "giveaway":
            return
        d = event["d"]
        if d.get("status") == "open" and d.get("keyword"):
            self.keywords[sid] = (str(d["id"]), fold(str(d["keyword"])))
        elif self.keywords.get(sid, ("",))[0] == d.get("id"):
            del self.keywords[sid]

    def said(self, client: Client, sid: str, text: str) -> None:
        """A chat message accepted in `sid`: the open giveaway's keyword enters its author."""
        found = self.keywords.get(sid)
        uid = client.user
        if found is None or uid is None or fold(text) != found[1]:
            return
        task = asyncio.ensure_future(self._enter_by_keyword(client, sid, found[0], uid))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _enter_by_keyword(self, client: Client, sid: str, gid: str, uid: str) -> None:
        try:
            await self.scripts.enter_giveaway(sid, gid, uid, client.identity.display_name(),
                                              now_ms() + self.ttl_ms)
        except ApiError as exc:  # ended meanwhile, the creator, the store away: no entry
            log.info("keyword entry to %s refused: %s", gid, exc.code.value,
                     extra={"session": sid, "user": uid})

    # presence of entrants -----------------------------------------------------------

    async def refresh_joined(self) -> None:
        """Every tick: the signed-in viewers of rooms here with an open giveaway are
        joined until now + the presence TTL."""
        until = now_ms() + self.ttl_ms
        calls: list[tuple[Any, ...]] = []
        for sid in self.open_in & set(self.hub.rooms):
            users = {c.user for c in self.hub.rooms[sid].clients.values() if c.user}
            if users:
                flat: list[Any] = []
                for uid in sorted(users):
                    flat += [until, uid]
                calls.append(("ZADD", self.keys.joined(sid), *flat))
            calls.append(("ZREMRANGEBYSCORE", self.keys.joined(sid), "-inf", now_ms()))
        if calls:
            await self.store.batch(calls)

    def left(self, client: Client, others: Iterable[Client]) -> None:
        """A connection closed: if it was its user's last one in that room here and a
        giveaway is open there, the user is no longer joined (another node's report of
        another device brings them back within a tick)."""
        sid, uid = client.session, client.user
        if sid is None or uid is None or sid not in self.open_in:
            return
        if any(c is not client and c.session == sid for c in others):
            return
        task = asyncio.ensure_future(self._forget(sid, uid))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _forget(self, sid: str, uid: str) -> None:
        with contextlib.suppress(ApiError):
            await self.store.call("ZREM", self.keys.joined(sid), uid)

    # reading ----------------------------------------------------------------------

    async def get(self, sid: str, gid: str) -> dict[str, Any]:
        """A giveaway with what re-running its draw needs (seed, entrants, their hash)."""
        g = as_dict(await self.store.call("HGETALL", self.keys.giveaway(sid, gid)))
        if not g:
            raise not_found("giveaway", gid)
        drawn = g.get("status") in ("drawn", "closed")
        entrants = self._entrants(gid, g) if drawn else None
        return {
            "id": gid, "session": sid, "product": g["product"],
            "status": "open" if g["status"] == "open" else "closed",
            "ends_at": int(g["ends_at"]), "winner_count": int(g["winners"]),
            "entries": int(g.get("entries") or 0), "keyword": g.get("keyword") or None,
            "seed": g.get("seed") if drawn else None,
            "entrants": entrants,
            "entrant_hash": entrant_hash(entrants) if entrants is not None else None,
            "winners": [{k: w[k] for k in ("entrant", "name", "order")}
                        for w in orjson.loads(g.get("winner_list") or "[]")],
            "algorithm": ALGORITHM,
        }

    @staticmethod
    def _entrants(gid: str, g: dict[str, str]) -> list[str]:
        return sorted(entrant_id(gid, uid) for uid in g.get("eligible", "").split("\n") if uid)

    # closing ----------------------------------------------------------------------

    async def sweep(self) -> int:
        """Every tick: note which sessions have an open giveaway (for `refresh_joined`)
        and close every giveaway past its end."""
        members = await self.store.call("ZRANGE", self.keys.open_giveaways(), 0, -1)
        self.open_in = {text(m).split("/", 1)[0] for m in members}
        return await self.closings.sweep()

    async def close_due(self, entry: str) -> str:
        """Drive one open-giveaways entry: draw and close it if due (idempotent)."""
        sid, gid = entry.split("/", 1)
        index = self.keys.open_giveaways()
        state, g = await self.scripts.close_giveaway(
            sid, gid, GiveawayPhase.FREEZE, secrets.token_hex(16), "")
        if state == "absent":
            await self.store.call("ZREM", index, entry)
            return state
        if state == "drawn":
            state, g = await self._settle(sid, gid, g)
        if state == "closed_now":
            self.sessions.published += 1
            winners = orjson.loads(g["winner_list"])
            log.info("giveaway %s closed: %d winner(s) of %s entries", gid, len(winners),
                     g.get("entries"), extra={"session": sid, "product": g["product"]})
            for w in winners:
                with contextlib.suppress(ApiError):
                    await self.publish_private(w["user"], {
                        "giveaway": gid, "product": g["product"], "price": 0,
                        "order": w["order"]}, "won")
        if state in ("closed", "closed_now"):
            await self.store.call("ZREM", index, entry)
        return state

    async def _settle(self, sid: str, gid: str,
                      g: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        uids = [uid for uid in str(g.get("eligible", "")).split("\n") if uid]
        by_entrant = {entrant_id(gid, uid): uid for uid in uids}
        picked = [by_entrant[e] for e in draw(str(g["seed"]), by_entrant, int(g["winners"]))]
        names = ([text(n) for n in await self.store.call(
            "HMGET", self.keys.giveaway_entrants(sid, gid), *picked)] if picked else [])
        room = (await self.sessions.get(sid)).facts()
        placed = await asyncio.gather(*(
            self.orders.prize("giveaway", f"{gid}:{uid}", uid, room, str(g["product"]), 0)
            for uid in picked))
        winners = []
        for uid, name, p in zip(picked, names, placed, strict=True):
            if p is not None and p.new:
                self.on_order(p.order)
            winners.append({"entrant": entrant_id(gid, uid), "user": uid, "name": name,
                            "order": p.order["id"] if p is not None else None})
        return await self.scripts.close_giveaway(
            sid, gid, GiveawayPhase.SETTLE, orjson.dumps(winners), orjson.dumps(names))
