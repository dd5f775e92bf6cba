"""Sessions: a creator's live show or shoppable video, its showcase, pin and event history.

Every change a room must hear about runs in one Lua script that also appends the event
to the session's bounded history stream and publishes it (see lib/room.lua), so `seq`
is gap-free and the same on every node.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from server import validate as v
from server.cart.products import Products
from server.clock import now_ms
from server.errors import ApiError, ErrorCode, bad_request, forbidden, not_found
from server.facts import ClosedDeal, Session
from server.observe.metrics import Reading
from server.signals import Signal
from server.valkey.due import DueIndex
from server.valkey.keys import Keys
from server.valkey.ops import PinAction, SessionAction
from server.valkey.scripts import Scripts, StreamPatch
from server.valkey.store import Store, as_dict, text
from server.video.streams import MAX_OFFSET_MS, MAX_URL

log = logging.getLogger("livecart.sessions")

KINDS = ("live", "video")
MAX_SHOWCASE = 100
MAX_SCHEDULED_AT = 32503680000000  # year 3000, in epoch ms


@dataclass(frozen=True, slots=True)
class NewSession:
    kind: str
    title: str
    showcase: list[str]
    scheduled_at: int | None = None  # epoch ms the show is announced for (landing page)
    stream_url: str | None = None  # checked against the allow-list by the caller
    stream_clock_offset_ms: int = 0


def _stream_url(args: Mapping[str, Any]) -> str | None:
    return v.string(args, "stream_url", max_len=MAX_URL, required=False)


def _offset(args: Mapping[str, Any], default: int | None) -> int | None:
    return v.integer(args, "stream_clock_offset_ms", lo=-MAX_OFFSET_MS, hi=MAX_OFFSET_MS,
                     default=default, required=False)


def parse_stream_patch(body: Any) -> StreamPatch:
    """`PATCH /api/sessions/{id}`: `stream_url` (null removes it) and/or the offset."""
    args = v.obj(body)
    v.only(args, {"stream_url", "stream_clock_offset_ms"})
    patch = StreamPatch("stream_url" in args, _stream_url(args) if "stream_url" in args
                        else None, _offset(args, None))  # offset null: absent
    if not patch.changes_url and patch.offset_ms is None:
        raise bad_request("nothing to change: send `stream_url` and/or "
                          "`stream_clock_offset_ms`")
    return patch


def parse_new(body: Any) -> NewSession:
    args = v.obj(body)
    v.only(args, {"kind", "title", "showcase", "scheduled_at", "stream_url",
                  "stream_clock_offset_ms"})
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
    scheduled_at = v.integer(args, "scheduled_at", lo=0, hi=MAX_SCHEDULED_AT, required=False)
    return NewSession(kind=kind, title=v.req_str(args, "title"), showcase=ids,
                      scheduled_at=scheduled_at, stream_url=_stream_url(args),
                      stream_clock_offset_ms=_offset(args, 0) or 0)


def deal_member(sid: str, pid: str, deal_id: str) -> str:
    """A deal's entry in the open-deals index (keys.open_deals)."""
    return f"{sid}/{pid}/{deal_id}"  # "/" is in no id (validate.ID_RE)


class Sessions:
    """Sessions, pins and deals. A pin with a deal spans two slots (the deal and its stock
    live with the product, the pin with the session): the deal's index entry is written
    first, the deal opens in the product's slot, then pin.lua checks the session and
    announces it; a refused pin closes the deal again, and a crash in between leaves an
    index entry that any node's sweep closes at `ends_at` (docs/architecture.md)."""

    def __init__(self, store: Store, keys: Keys, scripts: Scripts, products: Products, *,
                 deal_closed: Signal[ClosedDeal], on_stock_moved: Callable[[str], None],
                 on_live: Callable[[Session], Awaitable[None]]) -> None:
        self.store, self.keys, self.scripts, self.products = store, keys, scripts, products
        self.published = 0  # room events this node's commands published (for /metrics)
        # told the product whose available stock a deal moved (opened or closed)
        self.on_stock_moved = on_stock_moved
        # awaited with a session that just went live (reminders: server/rooms/reminders.py)
        self.on_live = on_live
        # deals past their ends_at, closed by any node (the index: keys.open_deals)
        self.due_deals = DueIndex(store, [keys.open_deals()], "closing deal", self.close_due)
        deal_closed.connect(self._deal_closed)


    def readings(self) -> list[Reading]:
        return [Reading("counter", "livecart_events_published",
                        "room events published by this node's commands",
                        lambda: self.published)]

    async def _deal_closed(self, closed: ClosedDeal) -> None:
        """A deal closed in its product's slot (a price cut, a purchase at its ends_at):
        announce it in its room."""
        self.closed_deal_log(closed.session, closed.deal, closed.why)
        await self.announce_closed(closed.session, closed.deal)

    async def create(self, creator: str, new: NewSession,
                     sid: str | None = None) -> tuple[Session, bool]:
        """Create a session (or find the one with this fixed id); True when it was created."""
        sid = sid or f"sess_{secrets.token_hex(6)}"
        now = now_ms()
        created = await self.scripts.create_session(
            sid, creator, new.kind, new.title, new.showcase, now, new.scheduled_at,
            new.stream_url, new.stream_clock_offset_ms)
        if created:
            await self.store.batch(
                [("ZADD", self.keys.session_index(), now, sid)]
                + [("SADD", self.keys.product_sessions(pid), sid) for pid in new.showcase]
            )
        return await self.get(sid), bool(created)

    async def find(self, sid: str) -> Session | None:
        return _session_of(await self.store.call("HGETALL", self.keys.session(sid)))

    async def get(self, sid: str) -> Session:
        found = await self.find(sid)
        if found is None:
            raise not_found("session", sid)
        return found

    async def recent_ids(self, limit: int = 20) -> list[str]:
        rows = await self.store.call("ZREVRANGE", self.keys.session_index(), 0, limit - 1)
        return [text(r) for r in rows]

    async def _own(self, sid: str, caller: str) -> Session:
        session = await self.get(sid)
        if session.creator != caller:
            raise forbidden("only the session creator can do this")
        return session

    async def _close_current(self, session: Session, why: str) -> bytes:
        """Close the session's open deal in its product's slot; its JSON, or b""."""
        if not session.pin_deal or not session.pin_deal_product:
            return b""
        state, deal = await self.scripts.close_deal(
            session.pin_deal_product, session.id, session.pin_deal)
        if state == "closed":
            self.closed_deal_log(session.id, deal, why)
            self.on_stock_moved(session.pin_deal_product)
        return deal

    @staticmethod
    def closed_deal_log(sid: str, deal: bytes, why: str) -> None:
        """One INFO line per deal, when it closes."""
        product = orjson.loads(deal)["product"]
        log.info("deal closed on %s (%s)", product, why,
                 extra={"session": sid, "product": product})

    async def _forget(self, deal: bytes) -> None:
        if deal:
            d = orjson.loads(deal)
            await self.store.call("ZREM", self.keys.open_deals(),
                                  deal_member(d["session"], d["product"], d["id"]))

    async def set_status(self, sid: str, caller: str, action: SessionAction) -> Session:
        closed = b""
        if action is SessionAction.END:
            closed = await self._close_current(await self._own(sid, caller), "the show ended")
        status, _ = await self.scripts.set_status(sid, action, caller, closed)
        await self._forget(closed)
        self.published += 1
        log.info("session %s", "went live" if status == "live" else "ended",
                 extra={"session": sid, "user": caller})
        session = await self.get(sid)
        if status == "live":
            try:
                await self.on_live(session)
            except ApiError:  # the show is live either way; the notices are at most once
                log.warning("could not tell the reminded users that the show is live",
                            extra={"session": sid})
        return session

    async def pin(self, sid: str, caller: str, product_id: str, stream_ts_ms: int | None,
                  deal: dict[str, int] | None = None) -> tuple[Any, int]:
        if deal is None and not self.store.cluster:
            # one round trip: the script checks the session and reads the product itself
            try:
                done = await self.scripts.pin_reading_product(sid, caller, stream_ts_ms,
                                                              product_id)
            except ApiError as exc:
                if exc.code == ErrorCode.NOT_FOUND and "product" not in exc.details:
                    raise not_found("session", sid) from None
                raise
            if done is not None:
                self.published += 1
                return done
            # a deal is pinned: close it in its product's slot first (below)
        session_row, *product_row = await asyncio.gather(*(
            self.store.call_pipelined(*command) for command in
            [("HGETALL", self.keys.session(sid)), *self.products.read_commands([product_id])]))
        found = _session_of(session_row)
        if found is None:
            raise not_found("session", sid)
        session, product = found, self.products.parse_rows(product_row).get(product_id)
        if product is None:  # may the caller pin here at all (as pin.lua checks it)?
            await self.scripts.may_pin(sid, caller, PinAction.MAY_UNPIN, "")
            raise not_found("product", product_id)
        if deal is not None or session.pin_deal:
            # pin.lua decides who may pin before a deal opens or closes in its product's slot
            await self.scripts.may_pin(sid, caller, PinAction.MAY_DEAL if deal is not None
                                       else PinAction.MAY_PIN, product_id)
        closed = await self._close_current(session, "a new pin")
        opened = b""
        if deal is not None:
            deal_id = f"deal_{secrets.token_hex(6)}"
            member = deal_member(sid, product_id, deal_id)
            await self.store.call("ZADD", self.keys.open_deals(), deal["ends_at"], member)
            try:
                opened, replaced = await self.scripts.open_deal(product_id, sid, deal_id, deal)
            except ApiError:
                await self.store.call("ZREM", self.keys.open_deals(), member)
                raise
            if replaced and not closed:
                self.closed_deal_log(sid, replaced, "a new pin")
            closed = closed or replaced
            self.on_stock_moved(product_id)
            log.info("deal opened on %s: %d units at %d, %d per buyer", product_id,
                     deal["stock"], deal["price"], deal["per_buyer_limit"],
                     extra={"session": sid, "product": product_id, "deal": deal_id})
        if opened or closed:  # a deal moved stock since the read above
            product = await self.products.get(product_id)
        try:
            pin, seq = await self.scripts.pin(
                sid, caller, stream_ts_ms, orjson.dumps(product.to_wire()), product_id,
                opened, closed)
        except ApiError:
            if opened:
                await self.scripts.close_deal(product_id, sid, orjson.loads(opened)["id"])
                await self._forget(opened)
                self.on_stock_moved(product_id)
            if closed:
                await self.announce_closed(sid, closed)
            raise
        await self._forget(closed)
        self.published += 1
        return pin, seq

    async def unpin(self, sid: str, caller: str, stream_ts_ms: int | None) -> int:
        session = await self.get(sid)
        if session.pin_deal:  # pin.lua decides before the deal closes in its product's slot
            await self.scripts.may_pin(sid, caller, PinAction.MAY_UNPIN, "")
        closed = await self._close_current(session, "unpin")
        seq = await self.scripts.unpin(sid, caller, stream_ts_ms, closed)
        await self._forget(closed)
        self.published += 1 if seq else 0
        return seq

    async def announce_closed(self, sid: str, deal: bytes) -> None:
        """Tell the room a deal closed in its product's slot (once per deal), then drop
        the deal from the open-deals index."""
        if sid and await self.scripts.announce_closed_deal(sid, deal):
            self.published += 1
        await self._forget(deal)
        self.on_stock_moved(orjson.loads(deal)["product"])

    async def close_due(self, member: str) -> None:
        """Close one open-deals index entry whose ends_at has passed (idempotent)."""
        sid, pid, deal_id = member.split("/", 2)
        state, deal = await self.scripts.close_deal(pid, sid, deal_id, only_due=True)
        if state == "closed":
            self.closed_deal_log(sid, deal, "its time is up")
        if state in ("closed", "was_closed"):
            await self.announce_closed(sid, deal)
        elif state == "unknown":  # opened by a node that then failed: nothing to close
            await self.store.call("ZREM", self.keys.open_deals(), member)

    async def close_pinned_if_due(self, sid: str) -> None:
        """Close the session's pinned deal if its ends_at has passed (a node's own timer)."""
        row = await self.store.call("HMGET", self.keys.session(sid), "pin_deal",
                                    "pin_deal_product")
        if row and row[0] and row[1]:
            await self.close_due(deal_member(sid, text(row[1]), text(row[0])))

    async def set_stream(self, sid: str, caller: str, patch: StreamPatch) -> Session:
        """Set or remove the session's stream (its creator only; the URL already checked)."""
        await self.scripts.set_stream(sid, caller, patch)
        return await self.get(sid)

    async def set_timeline(self, sid: str, entries: list[Any]) -> None:
        await self.store.call("HSET", self.keys.session(sid), "timeline", orjson.dumps(entries))

    async def pin_log(self, sid: str) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in
                await self.store.call("LRANGE", self.keys.pin_log(sid), 0, -1)]

    async def deal(self, sid: str) -> dict[str, Any]:
        """The session's pinned deal (open or closed), as the deals hash holds it; {} if none."""
        pid = await self.store.call("HGET", self.keys.session(sid), "pin_deal_product")
        if not pid:
            return {}
        raw = await self.store.call("HGET", self.keys.deals(text(pid)), f"s:{sid}")
        return dict(orjson.loads(raw)) if raw else {}

    async def emit(self, sid: str, event_type: str, data: Any) -> int:
        seq = await self.scripts.emit(sid, event_type, data)
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


def _session_of(row: Any) -> Session | None:
    """A session hash's HGETALL reply as a Session; None when there is no such session."""
    h = as_dict(row)
    return Session.from_hash(h) if h else None


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


def parse_chat(rows: Any, since: int, floor: int) -> list[tuple[int, bytes]] | None:
    """An XRANGE reply of the chat stream as (cseq, event); None when `since` lies before
    what the stream still holds."""
    if since + 1 < floor:
        return None
    events: list[tuple[int, bytes]] = []
    for entry_id, fields in rows:
        cseq = int(text(entry_id).split("-", 1)[0])
        body = fields[b"e"] if isinstance(fields, dict) else fields[fields.index(b"e") + 1]
        events.append((cseq, bytes(body)))
    return events
