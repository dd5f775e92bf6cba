"""Sessions: a creator's live show or shoppable video, its showcase, pin and event history.

Every change a room must hear about runs in one Lua script that also appends the event
to the session's bounded history stream and publishes it (see lib/room.lua), so `seq`
is gap-free and the same on every node.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from server import validate as v
from server.counters.attribution import SessionFacts
from server.errors import bad_request, not_found
from server.keys import Keys
from server.settings import Settings
from server.store import Store, as_dict, text

log = logging.getLogger("livecart.sessions")

KINDS = ("live", "video")
MAX_SHOWCASE = 100


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    creator: str
    kind: str
    title: str
    status: str
    showcase: list[str]
    created_at: int
    started_at: int | None
    ended_at: int | None
    pin: bytes | None  # the pin as JSON without its deal
    pin_deal: str  # id of the deal opened with the current pin, or ""
    seq: int
    epoch: str
    timeline: list[dict[str, Any]]  # video sessions: [{at_ms, product, until_ms?}]

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Session:
        return cls(
            id=h["id"], creator=h["creator"], kind=h["kind"], title=h["title"],
            status=h["status"], showcase=list(orjson.loads(h.get("showcase") or "[]")),
            created_at=int(h.get("created_at") or 0),
            started_at=int(h["started_at"]) if h.get("started_at") else None,
            ended_at=int(h["ended_at"]) if h.get("ended_at") else None,
            pin=h["pin"].encode() if h.get("pin") else None, pin_deal=h.get("pin_deal", ""),
            seq=int(h.get("seq") or 0), epoch=h.get("epoch", ""),
            timeline=list(orjson.loads(h.get("timeline") or "[]")),
        )

    def pinned(self, deal: dict[str, str] | None = None) -> Any:
        """The pin as clients see it; `deal` is the session's deal hash, if any."""
        if not self.pin:
            return None
        pin = orjson.loads(self.pin)
        pin["deal"] = deal_view(deal) if deal and deal.get("id") == self.pin_deal else None
        return pin

    def facts(self) -> SessionFacts:
        return SessionFacts(self.id, self.creator, self.kind, self.status)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "creator": self.creator, "kind": self.kind, "title": self.title,
            "status": self.status, "showcase": self.showcase, "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True, slots=True)
class NewSession:
    kind: str
    title: str
    showcase: list[str]


def deal_view(d: dict[str, str]) -> dict[str, Any]:
    return {"price": int(d["price"]), "stock_left": int(d["stock_left"]),
            "per_buyer_limit": int(d["per_buyer_limit"]), "ends_at": int(d["ends_at"]),
            "status": d["status"]}


def parse_new(body: Any) -> NewSession:
    args = v.obj(body)
    v.only(args, {"kind", "title", "showcase"})
    kind = v.req_str(args, "kind")
    if kind not in KINDS:
        raise bad_request("`kind` must be live or video", field="kind")
    showcase = args.get("showcase", [])
    if not isinstance(showcase, list) or len(showcase) > MAX_SHOWCASE:
        raise bad_request(f"`showcase` must be a list of at most {MAX_SHOWCASE} product ids",
                          field="showcase")
    ids: list[str] = []
    for item in showcase:
        if not isinstance(item, str) or not v.ID_RE.match(item):
            raise bad_request("`showcase` must hold product ids", field="showcase")
        if item in ids:
            raise bad_request(f"product {item!r} appears twice in the showcase", field="showcase")
        ids.append(item)
    return NewSession(kind=kind, title=v.req_str(args, "title"), showcase=ids)


def new_epoch() -> str:
    return secrets.token_hex(4)


class Sessions:
    def __init__(self, store: Store, keys: Keys, settings: Settings) -> None:
        self.store, self.keys, self.settings = store, keys, settings
        self.published = 0  # room events this node's commands published (for /metrics)
        # told the product whose available stock a deal moved (opened or closed)
        self.on_stock_moved: Callable[[str], None] = lambda product: None

    def context(self) -> tuple[list[str], list[Any]]:
        """The ARGV head every event-emitting script takes (lib/context.lua)."""
        return [], [self.keys.prefix, self.settings.history_max_events,
                    self.settings.history_max_age_s * 1000, new_epoch()]

    def _room(self, sid: str) -> tuple[list[str], list[Any]]:
        _, args = self.context()
        return [self.keys.session(sid)], [*args, sid]

    async def create(self, creator: str, new: NewSession,
                     sid: str | None = None) -> tuple[Session, bool]:
        """Create a session (or find the one with this fixed id); True when it was created."""
        sid = sid or f"sess_{secrets.token_hex(6)}"
        created = await self.store.run(
            "session_create.lua", [self.keys.session(sid)],
            [sid, creator, new.kind, new.title, orjson.dumps(new.showcase),
             int(time.time() * 1000), new_epoch()],
        )
        if created:
            await self.store.batch(
                [("ZADD", self.keys.session_index(), int(time.time() * 1000), sid)]
                + [("SADD", self.keys.product_sessions(pid), sid) for pid in new.showcase]
            )
        return await self.get(sid), bool(created)

    async def find(self, sid: str) -> Session | None:
        h = as_dict(await self.store.call("HGETALL", self.keys.session(sid)))
        return Session.from_hash(h) if h else None

    async def get(self, sid: str) -> Session:
        found = await self.find(sid)
        if found is None:
            raise not_found("session", sid)
        return found

    async def recent_ids(self, limit: int = 20) -> list[str]:
        rows = await self.store.call("ZREVRANGE", self.keys.session_index(), 0, limit - 1)
        return [text(r) for r in rows]

    async def set_status(self, sid: str, caller: str, action: str) -> Session:
        keys, args = self._room(sid)
        status, _, closed = await self.store.run("session_status.lua", keys,
                                                 [*args, action, caller])
        self.published += 1
        log.info("session %s", "went live" if text(status) == "live" else "ended",
                 extra={"session": sid, "user": caller})
        self._closed(sid, closed, "the show ended")
        return await self.get(sid)

    async def pin(self, sid: str, caller: str, product_id: str, stream_ts_ms: int | None,
                  deal: dict[str, int] | None = None) -> tuple[Any, int]:
        keys, args = self._room(sid)
        deal_id = f"deal_{secrets.token_hex(6)}"
        pin, seq, closed = await self.store.run(
            "pin.lua", keys,
            [*args, "pin", caller, "" if stream_ts_ms is None else stream_ts_ms, product_id,
             orjson.dumps(deal) if deal else "", deal_id],
        )
        self.published += 1
        self._closed(sid, closed, "a new pin")
        opened = orjson.loads(pin)
        if deal is not None:
            log.info("deal opened on %s: %d units at %d, %d per buyer", product_id,
                     deal["stock"], deal["price"], deal["per_buyer_limit"],
                     extra={"session": sid, "product": product_id, "deal": deal_id})
            if text(closed) != product_id:
                self._moved(product_id)
        return opened, int(seq)

    async def unpin(self, sid: str, caller: str, stream_ts_ms: int | None) -> int:
        keys, args = self._room(sid)
        _, seq, closed = await self.store.run(
            "pin.lua", keys,
            [*args, "unpin", caller, "" if stream_ts_ms is None else stream_ts_ms, "", "", ""],
        )
        self.published += 1 if seq else 0
        self._closed(sid, closed, "unpin")
        return int(seq)

    def _moved(self, product: Any) -> None:
        if product:
            self.on_stock_moved(text(product))

    def _closed(self, sid: str, product: Any, why: str) -> None:
        """A script closed the deal on `product` (empty: no deal was open)."""
        if product:
            log.info("deal closed on %s (%s)", text(product), why,
                     extra={"session": sid, "product": text(product)})
        self._moved(product)

    async def set_timeline(self, sid: str, entries: list[Any]) -> None:
        await self.store.call("HSET", self.keys.session(sid), "timeline", orjson.dumps(entries))

    async def pin_log(self, sid: str) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in
                await self.store.call("LRANGE", self.keys.pin_log(sid), 0, -1)]

    async def close_deal_if_due(self, sid: str) -> None:
        _, args = self._room(sid)
        self._closed(sid, await self.store.run("deal_close.lua", [self.keys.deal(sid)], args),
                     "its time is up")

    async def deal(self, sid: str) -> dict[str, str]:
        return as_dict(await self.store.call("HGETALL", self.keys.deal(sid)))

    async def emit(self, sid: str, event_type: str, data: Any) -> int:
        keys, args = self._room(sid)
        seq = int(await self.store.run("room_event.lua", keys,
                                       [*args, event_type, orjson.dumps(data)]))
        self.published += 1
        return seq

    async def sessions_showing(self, pid: str) -> list[str]:
        members = await self.store.call("SMEMBERS", self.keys.product_sessions(pid))
        return sorted(text(s) for s in members)

    async def announce_product(self, pid: str, price: int, stock: int, *,
                               sold_out: bool = False) -> None:
        """`product {id, price, stock}` (and `sold_out` when asked) to every session
        showing the product."""
        for sid in await self.sessions_showing(pid):
            await self.emit(sid, "product", {"id": pid, "price": price, "stock": stock})
            if sold_out:
                await self.emit(sid, "sold_out", {"product": pid})

    def history_command(self, sid: str, since: int) -> tuple[str, ...]:
        return ("XRANGE", self.keys.history(sid), f"{since + 1}-0", "+")

    async def history_since(self, sid: str, since: int) -> list[tuple[int, bytes]] | None:
        """(seq, event) with seq > since, oldest first; None when history has a hole there."""
        return parse_history(await self.store.call(*self.history_command(sid, since)), since)


def parse_history(rows: Any, since: int) -> list[tuple[int, bytes]] | None:
    """An XRANGE reply as (seq, event); None when it does not start right after `since`."""
    events: list[tuple[int, bytes]] = []
    for entry_id, fields in rows:
        seq = int(text(entry_id).split("-", 1)[0])
        if not events and seq != since + 1:
            return None
        body = fields[b"e"] if isinstance(fields, dict) else fields[fields.index(b"e") + 1]
        events.append((seq, bytes(body)))
    return events
