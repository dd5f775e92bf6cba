"""The join snapshot: one read in flight per room, encoded once per room state.

Every `join` of a room that arrives in the same loop tick — or while the room's previous
snapshot read is still in flight, so a join spike batches itself — shares one read: one pipeline
with the session, its presence, counters, the pinned deal (it lives with its product: from
the deal product this node saw last for that room) and the showcase products (from the
showcase this node saw last; a changed or unknown showcase or deal product costs a second
round trip), each distinct `since`'s missed history, and one `PFADD` of all those viewers
to the unique-viewer count (only for a session already known to exist). The snapshot
document is built once for the batch and kept with an `Encoded` form (JSON / msgpack
bytes made at most once each); the next batch whose state reads are byte-for-byte the
same reuses it, so a join spike builds and encodes the snapshot once per room state, not
once per viewer.

The chat lane rides along: the same pipeline reads the newest chat-lane events (the
snapshot's `chat`: the last messages, up to the snapshot's `cseq`), each distinct
`chat_since`'s missed chat, and whether any signed-in joiner is banned. Pins-only joiners
get the same snapshot without `chat` (`Snapshot.quiet`, also encoded at most once).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.cart.products import Products
from server.clock import now_ms
from server.counters.room_counters import counters_view
from server.edge.codecs import Encoded
from server.errors import not_found
from server.facts import Session
from server.rooms.sessions import Sessions
from server.valkey.batching import Reads
from server.valkey.store import as_dict
from server.valkey.store import text as as_text


@dataclass(frozen=True, slots=True)
class Snapshot:
    session: Session
    doc: dict[str, Any]  # shared by every viewer of the batch: copy before changing it
    encoded: Encoded  # `doc`, encoded at most once per codec
    histories: dict[int, Any]  # since -> raw XRANGE reply
    quiet: Encoded  # `doc` without `chat`, for pins-only viewers
    chats: dict[int, Any] = field(default_factory=dict)  # chat_since -> raw XRANGE reply
    banned: frozenset[str] = frozenset()  # signed-in joiners of the batch who are banned
    cseq: int = 0  # the chat lane's sequence in this snapshot
    chat_floor: int = 0  # the lowest cseq a chat recovery may start after - 1


@dataclass(slots=True)
class _Batch:
    future: asyncio.Future[Snapshot]
    viewers: list[str] = field(default_factory=list)
    sinces: set[int] = field(default_factory=set)
    chat_sinces: set[int] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


class Snapshots:
    def __init__(self, sessions: Sessions, products: Products, chat_messages: int = 50) -> None:
        self.sessions = sessions
        self.products = products
        self.chat_messages = chat_messages
        self.reads = 0  # store round trips made for snapshots (tests, metrics)
        self._batches: dict[str, _Batch] = {}
        self._showcase: dict[str, list[str]] = {}  # last showcase seen per room
        self._deal_product: dict[str, str] = {}  # last pinned deal's product per room
        self._creator: dict[str, str] = {}  # each room's creator (not a unique viewer)
        self._last: dict[str, tuple[tuple[Any, ...], Session, dict[str, Any], Encoded,
                                    Encoded]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading: set[str] = set()  # rooms with a read in flight

    async def read(self, sid: str, viewer: str, since: int | None, chat_since: int | None = None,
                   user: str | None = None) -> Snapshot:
        """The snapshot for one joining viewer (and its history after `since`, its chat
        after `chat_since`, whether `user` is banned), shared with every other join of
        `sid` in this loop tick or queued behind its read."""
        batch = self._batches.get(sid)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batches[sid] = _Batch(loop.create_future())
            batch.future.add_done_callback(_retrieve)
            if sid not in self._reading:
                loop.call_soon(self._start, sid)
        batch.viewers.append(viewer)
        if since is not None:
            batch.sinces.add(since)
        if chat_since is not None:
            batch.chat_sinces.add(chat_since)
        if user is not None:
            batch.users.add(user)
        return await asyncio.shield(batch.future)

    def forget(self, sid: str) -> None:
        """The room is no longer served here."""
        self._showcase.pop(sid, None)
        self._deal_product.pop(sid, None)
        self._creator.pop(sid, None)
        self._last.pop(sid, None)

    def _start(self, sid: str) -> None:
        batch = self._batches.pop(sid, None)
        if batch is None:
            return
        self._reading.add(sid)
        task = asyncio.ensure_future(self._run(sid, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, sid: str, batch: _Batch) -> None:
        try:
            result = await self._read(sid, batch)
        except BaseException as exc:
            self._next(sid)
            if not batch.future.done():
                batch.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._next(sid)
            if not batch.future.done():
                batch.future.set_result(result)

    def _next(self, sid: str) -> None:
        """This room's read is done: start the batch that queued behind it, if any."""
        self._reading.discard(sid)
        if sid in self._batches:
            asyncio.get_running_loop().call_soon(self._start, sid)

    async def _read(self, sid: str, batch: _Batch) -> Snapshot:
        k = self.sessions.keys
        store = self.sessions.store
        deal_guess = self._deal_product.get(sid, "")
        reads = Reads()
        reads.add("session", ("HGETALL", k.session(sid)))
        reads.add("counters", ("HGETALL", k.counters(sid)))
        if deal_guess:
            reads.add("deal", ("HGET", k.deals(deal_guess), f"s:{sid}"))
        sinces = sorted(batch.sinces)
        reads.add("histories", *[self.sessions.history_command(sid, s) for s in sinces])
        chat_sinces = sorted(batch.chat_sinces)
        users = sorted(batch.users)
        reads.add("chat", ("XREVRANGE", k.chat(sid), "+", "-", "COUNT", 2 * self.chat_messages))
        reads.add("chats", *[("XRANGE", k.chat(sid), f"{c + 1}-0", "+") for c in chat_sinces])
        if users:
            reads.add("bans", ("HMGET", k.moderation(sid), *[f"ban:{u}" for u in users]))
        guess = self._showcase.get(sid)
        counted = [v for v in batch.viewers if v != self._creator.get(sid)]
        if guess is not None:  # the session existed: count the viewers now
            reads.add("products", *self.products.read_commands(guess))
            if counted:
                reads.add("uniques", ("PFADD", k.uniques(sid), *counted))
        self.reads += 1
        reads.answered(await store.batch(reads.commands))
        state = as_dict(reads.one("session"))
        if not state:
            raise not_found("session", sid)
        session = Session.from_hash(state)
        histories = dict(zip(sinces, reads.many("histories"), strict=True))
        chats = dict(zip(chat_sinces, reads.many("chats"), strict=True))
        banned = frozenset(u for u, b in zip(users, reads.one("bans"), strict=True) if b) \
            if users else frozenset()
        cseq, chat_floor = int(state.get("cseq") or 0), int(state.get("chat_floor") or 0)
        extra: dict[str, Any] = {"chats": chats, "banned": banned, "cseq": cseq,
                                 "chat_floor": chat_floor}
        raw_deal = reads.one("deal") if deal_guess and deal_guess == session.pin_deal_product \
            else None
        deal_known = not session.pin_deal or raw_deal is not None
        if guess == session.showcase and deal_known:
            product_rows = reads.many("products")
        else:
            again = Reads()
            again.add("products", *self.products.read_commands(session.showcase))
            if not deal_known:
                again.add("deal", ("HGET", k.deals(session.pin_deal_product), f"s:{sid}"))
            counted = [v for v in batch.viewers if v != session.creator]
            if guess is None and counted:  # the creator is not a viewer
                again.add("uniques", ("PFADD", k.uniques(sid), *counted))
            self.reads += 1
            again.answered(await store.batch(again.commands))
            product_rows = again.many("products")
            if not deal_known:
                raw_deal = again.one("deal")
        self._showcase[sid] = session.showcase
        self._creator[sid] = session.creator
        if session.pin_deal_product:
            self._deal_product[sid] = session.pin_deal_product
        counters_row = reads.one("counters")
        counters = counters_view(as_dict(counters_row), now_ms())
        key = (reads.one("session"), counters_row, raw_deal, *product_rows, *counters.values())
        last = self._last.get(sid)
        if last is not None and last[0] == key:
            _, session, doc, encoded, quiet = last
            return Snapshot(session, doc, encoded, histories, quiet, **extra)
        products = self.products.parse_rows(product_rows)
        deal = orjson.loads(raw_deal) if session.pin_deal and raw_deal else None
        doc = {
            "session": session.id, "status": session.status, "kind": session.kind,
            "title": session.title, "creator": session.creator,
            "started_at": session.started_at, "ended_at": session.ended_at,
            "showcase": [products[p].to_wire() for p in session.showcase if p in products],
            "pinned": session.pinned(deal), "counters": counters, "seq": session.seq,
            "epoch": session.epoch,
        }
        quiet = Encoded(dict(doc))
        doc["cseq"] = cseq
        doc["chat"] = self._last_messages(reads.one("chat"), cseq)
        encoded = Encoded(doc)
        self._last[sid] = (key, session, doc, encoded, quiet)
        return Snapshot(session, doc, encoded, histories, quiet, **extra)

    def _last_messages(self, newest_first: Any, cseq: int) -> list[Any]:
        """The last `chat_messages` chat messages up to `cseq`, oldest first."""
        out: list[Any] = []
        for entry_id, fields in newest_first:
            if len(out) == self.chat_messages:
                break
            if int(as_text(entry_id).split("-", 1)[0]) > cseq:
                continue  # published after the session hash was read: it follows live
            kind = fields[b"k"] if isinstance(fields, dict) else fields[fields.index(b"k") + 1]
            if kind == b"chat":
                body = fields[b"e"] if isinstance(fields, dict) else fields[
                    fields.index(b"e") + 1]
                out.append(orjson.loads(body))
        out.reverse()
        return out


def _retrieve(future: asyncio.Future[Snapshot]) -> None:
    """Mark a failed batch's exception as seen even if every waiter was cancelled."""
    if not future.cancelled():
        future.exception()
