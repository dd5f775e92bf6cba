"""Local rooms: which connections on this node watch which session, and the fan-out.

An event arrives once (from the broker, in `seq` order). The hub decodes it once, and at
the end of the loop tick (or, when the room fanned out less than `Hub.coalesce_s` ago, at
the end of that window) builds one frame per codec for everything that arrived meanwhile
(one event, or an array of events) and hands the same bytes to every viewer's socket.
Nothing here awaits a viewer: writes are synchronous and bounded; a viewer whose socket
buffer passes the limit is closed with 4008 and recovers with `since`.

The per-viewer loop is the whole cost of a fan-out, so it does no Python call per viewer:
each room keeps a list of `(client, sink, write, limit)` entries, rebuilt only when
membership changes, where `write` is the asyncio transport's own method (a C method
under uvloop; see `Wire.fast_path`) and `sink.held` is a plain attribute that is True
while the socket must not be written directly (its transport buffer is full and frames
queue in the Wire, bounded by `limit`; or it is gone). Sinks that are not a `Wire`
(tests, other transports) go through `Client.send_frame`.

A joining viewer is held back: live events are kept in its `hold` list until its join
reply and its missed history are written, then the ones newer than its snapshot follow.

**The chat lane.** Chat-lane events (`chat`, `chat_deleted`, `banned`) arrive on the same
channel but carry `cseq` (their own gap-free sequence) instead of `seq`; the room keeps a
second lane for them (last cseq, pending events, gap repair from the chat stream, a hold
list per joining chat viewer). A room has two audiences: chat viewers get room and chat
events, pins-only viewers (`join {chat: false}`) room events only. Each flush encodes the
room events once per codec and, when chat arrived, room + chat events once more per codec
for the chat audience: never per viewer. A `banned` event closes the banned user's
connections to the room here (4003) as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

import orjson

from server.edge.client import Client, HeldEvent
from server.edge.codecs import JSON, MSGPACK, OP_BINARY, OP_TEXT, batch, frame
from server.errors import CloseCode

log = logging.getLogger("livecart.hub")

HistoryFetch = Callable[[str, int], Awaitable[list[tuple[int, bytes]] | None]]
SLOW_CONSUMER = 4008
FACT_EVENTS = frozenset({"session", "sold_out", "deal", "pinned", "product", "giveaway"})


async def _no_chat_history(sid: str, since: int) -> list[tuple[int, bytes]] | None:
    """The chat history of a hub nobody wired (tests): none, so a gap evicts."""
    return None


class _Generic:
    """Stands in for a sink without a fast path: never `held`, writes via the client."""

    held = False


_GENERIC = _Generic()


class Entry(NamedTuple):
    client: Client
    sink: Any  # has `held` and `gone` attributes, `write` and `buffered` methods
    write: Callable[[bytes], object]
    limit: int


def _entry(client: Client) -> Entry | None:
    fast = getattr(client.sink, "fast_path", None)
    if fast is None:
        return Entry(client, _GENERIC, client.send_frame, 1 << 62)
    path = fast()
    if path is None:
        return None
    return Entry(client, client.sink, path[0], client.max_buffer)


def fan_out(entries: list[Entry], data: bytes) -> int:
    """Write `data` to every entry's socket; close the ones past their buffer limit with
    4008. Returns how many sockets got it. No Python call per flowing viewer."""
    skipped = 0
    for client, sink, write, limit in entries:
        if sink.held:  # the rare path: queued behind a full transport, or gone
            if sink.gone:
                skipped += 1
                continue
            sink.write(data)
            if sink.buffered() > limit:
                client.evict(SLOW_CONSUMER, "slow consumer: reconnect with since")
            continue
        write(data)
    return len(entries) - skipped


def deliver(clients: Iterable[Client], doc: bytes) -> None:
    """One JSON event to a few clients (a user's connections, a creator), each in its
    codec, encoded at most once per codec."""
    json_frame = frame(OP_TEXT, doc)
    msgpack_frame = b""
    for client in clients:
        if client.codec is MSGPACK:
            if not msgpack_frame:
                msgpack_frame = frame(OP_BINARY, MSGPACK.encode(orjson.loads(doc)))
            client.send_frame(msgpack_frame)
        else:
            client.send_frame(json_frame)


Lists = tuple[list[Entry], list[Entry], list[Entry], list[Entry]]


class Room:
    __slots__ = (
        "_entries", "backlog", "catch_up", "chat_backlog", "chat_hold", "chat_last",
        "chat_pending",
        "chat_repairing", "clients", "flush_handle", "flush_scheduled", "joining",
        "last_counters", "last_flush", "last_seq", "likes", "pending", "quiet", "received_at",
        "repairing", "sid", "waiters",
    )

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.clients: dict[int, Client] = {}
        self.joining: dict[int, Client] = {}
        self.last_seq: int | None = None
        self.pending: list[HeldEvent] = []
        self.flush_scheduled = False
        self.flush_handle: asyncio.Handle | None = None
        self.last_flush = float("-inf")  # loop time the last fan-out ended
        self.received_at = 0.0
        self.repairing = False
        self.backlog: list[HeldEvent] = []
        self.likes = 0
        self.last_counters: tuple[int, ...] | None = None
        # joiners whose snapshot counters differ from the last push: the next counters tick
        # sends each the fresh values if they still differ (its snapshot may be the newer)
        self.catch_up: list[tuple[Client, tuple[int, ...]]] = []
        self.waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # see Hub.caught_up
        self._entries: Lists | None = None
        # the chat lane (cseq): see the module docstring
        self.chat_last: int | None = None
        self.chat_pending: list[HeldEvent] = []
        self.chat_repairing = False
        self.chat_backlog: list[HeldEvent] = []
        self.chat_hold: dict[int, list[HeldEvent]] = {}  # joining chat viewers' held chat
        self.quiet: set[int] = set()  # clients (here) that joined with `chat: false`

    @property
    def size(self) -> int:
        return len(self.clients) + len(self.joining)

    def changed(self) -> None:
        """A viewer left: rebuild the fan-out lists at the next flush."""
        self._entries = None

    def joined(self, client: Client) -> None:
        """A viewer went live: append it (a join spike must not rebuild N entries per
        flush; only departures do, at most once per flush)."""
        if self._entries is not None:
            entry = _entry(client)
            if entry is not None:
                self._entries[self._list_of(client)].append(entry)

    def _list_of(self, client: Client) -> int:
        return (1 if client.codec is MSGPACK else 0) + (2 if client.id in self.quiet else 0)

    def entries(self) -> Lists:
        """(JSON chat viewers, msgpack chat viewers, JSON pins-only viewers, msgpack
        pins-only viewers) as fan-out entries, cached until `changed()`."""
        if self._entries is None:
            lists: Lists = ([], [], [], [])
            for client in self.clients.values():
                entry = _entry(client)
                if entry is not None:
                    lists[self._list_of(client)].append(entry)
            self._entries = lists
        return self._entries


class Hub:
    # A room flushes at once when it has been quiet; events that arrive within
    # `coalesce_s` of its previous fan-out wait for the rest of that window and go out
    # together as one array frame. One send() per viewer costs ~8 µs of kernel time here
    # (python -m loadtest.sendfloor), so under bursts this divides the per-event cost;
    # an isolated event (a pin) is never delayed.
    coalesce_s = 0.010

    def __init__(self, fetch_history: HistoryFetch) -> None:
        self.rooms: dict[str, Room] = {}
        self.fetch_history = fetch_history
        self.received = 0
        self.delivered = 0
        self.observe_fanout: Callable[[float], None] = lambda seconds: None
        self.evictions = 0
        self.sold_out = 0  # `sold_out` events received (for /metrics)
        # told (session, event) for every event of a room served here whose type is in
        # FACT_EVENTS (the node's copy of session status and sold-out products)
        self.on_fact: Callable[[str, Any], None] = lambda sid, event: None
        self.fetch_chat: HistoryFetch = _no_chat_history  # the chat lane's history
        self.chat_received = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # membership -------------------------------------------------------------

    def add_joining(self, client: Client, sid: str, chat: bool = True) -> Room:
        room = self.rooms.get(sid)
        if room is None:
            room = self.rooms[sid] = Room(sid)
        client.session = sid
        client.joining = True
        client.hold = []
        room.joining[client.id] = client
        if chat:
            room.chat_hold[client.id] = []
        else:
            room.quiet.add(client.id)
        return room

    def activate(self, client: Client, snapshot_seq: int, replay: list[tuple[int, bytes]],
                 snapshot_cseq: int = 0, chat_replay: list[tuple[int, bytes]] | None = None,
                 ) -> None:
        """Write missed history then held events (seq > snapshot), the missed chat then
        held chat (cseq > the snapshot's), and go live. Synchronous."""
        room = self.rooms.get(client.session or "")
        if room is None or client.id not in room.joining:
            return
        if room.pending or room.chat_pending:
            # Events waiting for the next fan-out may be older than this snapshot: send
            # them now, while this client is still joining (they go to its hold list and
            # are filtered by seq below), so it never gets one twice.
            self._flush(room)
        room.joining.pop(client.id, None)
        if room.last_seq is None:
            room.last_seq = snapshot_seq
        frames: list[bytes] = []
        for _seq, data in replay:  # since < seq <= snapshot_seq, in order
            frames.append(self._single(client, data, None))
        last = snapshot_seq
        for seq, data, obj in client.hold:
            if seq > last:
                frames.append(self._single(client, data, obj))
                last = seq
        client.hold = []
        if room.chat_last is None:
            room.chat_last = snapshot_cseq
        held_chat = room.chat_hold.pop(client.id, None)
        if held_chat is not None:
            for _cseq, data in chat_replay or ():
                frames.append(self._single(client, data, None))
            last = snapshot_cseq
            for cseq, data, obj in held_chat:
                if cseq > last:
                    frames.append(self._single(client, data, obj))
                    last = cseq
        client.joining = False
        if frames:
            client.send_frame(b"".join(frames))
        if client.evicted:
            return
        room.clients[client.id] = client
        room.joined(client)

    def remove(self, client: Client) -> None:
        sid = client.session
        client.session = None
        client.joining = False
        client.hold = []
        room = self.rooms.get(sid) if sid else None
        if room is None:
            return
        room.joining.pop(client.id, None)
        room.chat_hold.pop(client.id, None)
        if room.clients.pop(client.id, None) is not None:
            room.changed()
        room.quiet.discard(client.id)

    @staticmethod
    def _caught(room: Room, seq: int, cseq: int) -> bool:
        return ((room.last_seq is None or room.last_seq >= seq)
                and (room.chat_last is None or room.chat_last >= cseq))

    def _wake(self, room: Room) -> None:
        for seq, cseq, waiter in room.waiters:
            if not waiter.done() and self._caught(room, seq, cseq):
                waiter.set_result(None)

    async def caught_up(self, sid: str, seq: int, timeout_s: float, cseq: int = 0) -> None:
        """Wait (at most `timeout_s`) until this node has received the room's events up to
        `seq` (and its chat up to `cseq`), so none published before a joiner's snapshot
        reaches it after it goes live."""
        room = self.rooms.get(sid)
        if room is None or self._caught(room, seq, cseq):
            return
        waiter = (seq, cseq, asyncio.get_running_loop().create_future())
        room.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter[2], timeout_s)
        except TimeoutError:
            pass  # events lost beyond repair: the room's gap handling takes over
        finally:
            if waiter in room.waiters:
                room.waiters.remove(waiter)

    def drop_room(self, sid: str) -> None:
        room = self.rooms.get(sid)
        if room is not None and room.size == 0:
            del self.rooms[sid]

    # inbound events -----------------------------------------------------------

    def on_event(self, sid: str, data: bytes) -> None:
        """One published room event (JSON text with `seq`), in channel order."""
        room = self.rooms.get(sid)
        if room is None:
            return
        self.received += 1
        obj = orjson.loads(data)
        if "cseq" in obj:
            self._on_chat(room, obj, bytes(data))
            return
        if obj["t"] in FACT_EVENTS:
            self.on_fact(sid, obj)
        if obj["t"] == "sold_out":
            self.sold_out += 1
        seq = int(obj["seq"])
        entry: HeldEvent = (seq, bytes(data), obj)
        if room.repairing:
            room.backlog.append(entry)
            return
        if room.last_seq is not None and seq <= room.last_seq:
            return  # already delivered (overlap after a resubscribe)
        if room.last_seq is not None and seq > room.last_seq + 1:
            room.repairing = True
            room.backlog.append(entry)
            self._spawn_repair(room)
            return
        self._enqueue(room, entry)

    def resync(self, sid: str) -> None:
        """The channel was resubscribed after a lost connection: fetch what we missed."""
        room = self.rooms.get(sid)
        if room is not None and not room.repairing and room.last_seq is not None:
            room.repairing = True
            self._spawn_repair(room)
        if room is not None and not room.chat_repairing and room.chat_last is not None:
            room.chat_repairing = True
            self._spawn(self._repair_chat(room))

    # the chat lane ------------------------------------------------------------------

    def _on_chat(self, room: Room, obj: Any, data: bytes) -> None:
        self.chat_received += 1
        if obj["t"] == "banned":
            user = obj["d"]["user"]
            for client in [*room.clients.values(), *room.joining.values()]:
                if client.user == user:
                    client.evict(CloseCode.BANNED, "banned from this session")
        entry: HeldEvent = (int(obj["cseq"]), data, obj)
        if room.chat_repairing:
            room.chat_backlog.append(entry)
            return
        last = room.chat_last
        if last is not None and entry[0] <= last:
            return
        if last is not None and entry[0] > last + 1:
            room.chat_repairing = True
            room.chat_backlog.append(entry)
            self._spawn(self._repair_chat(room))
            return
        self._enqueue_chat(room, entry)

    async def _repair_chat(self, room: Room) -> None:
        assert room.chat_last is not None
        try:
            missed = await self.fetch_chat(room.sid, room.chat_last)
        except Exception:
            missed = None
        if missed is None:
            log.warning("room %s lost chat beyond its history; evicting its chat viewers",
                        room.sid)
            for client in [*room.clients.values(), *room.joining.values()]:
                if client.id not in room.quiet:
                    client.evict(4008, "missed chat: rejoin")
            room.chat_last = None
        else:
            for cseq, data in missed:
                self._enqueue_chat(room, (cseq, data, orjson.loads(data)))
        backlog, room.chat_backlog = room.chat_backlog, []
        room.chat_repairing = False
        for entry in backlog:
            self._enqueue_chat(room, entry)

    def _enqueue_chat(self, room: Room, entry: HeldEvent) -> None:
        if room.chat_last is not None and entry[0] <= room.chat_last:
            return
        room.chat_last = entry[0]
        if room.waiters:
            self._wake(room)
        if not room.pending and not room.chat_pending:
            room.received_at = time.perf_counter()
        room.chat_pending.append(entry)
        self._schedule(room)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_repair(self, room: Room) -> None:
        self._spawn(self._repair(room))

    async def _repair(self, room: Room) -> None:
        assert room.last_seq is not None
        try:
            missed = await self.fetch_history(room.sid, room.last_seq)
        except Exception:
            missed = None
        if missed is None:
            log.warning("room %s lost events beyond history; evicting its viewers", room.sid)
            for client in [*room.clients.values(), *room.joining.values()]:
                client.evict(4008, "missed events: rejoin")
            room.last_seq = None
        else:
            for seq, data in missed:
                self._enqueue(room, (seq, data, orjson.loads(data)))
        backlog, room.backlog = room.backlog, []
        room.repairing = False
        for entry in backlog:
            if room.last_seq is None or entry[0] > room.last_seq:
                self._enqueue(room, entry)

    def _enqueue(self, room: Room, entry: HeldEvent) -> None:
        if room.last_seq is not None and entry[0] <= room.last_seq:
            return
        room.last_seq = entry[0]
        if room.waiters:
            self._wake(room)
        if not room.pending and not room.chat_pending:
            room.received_at = time.perf_counter()
        room.pending.append(entry)
        self._schedule(room)

    def _schedule(self, room: Room) -> None:
        if not room.flush_scheduled:
            room.flush_scheduled = True
            loop = asyncio.get_running_loop()
            wait = room.last_flush + self.coalesce_s - loop.time()
            room.flush_handle = (loop.call_later(wait, self._flush, room) if wait > 0
                                 else loop.call_soon(self._flush, room))

    # fan-out ------------------------------------------------------------------

    def _flush(self, room: Room) -> None:
        room.flush_scheduled = False
        if room.flush_handle is not None:
            room.flush_handle.cancel()
            room.flush_handle = None
        entries, room.pending = room.pending, []
        chats, room.chat_pending = room.chat_pending, []
        if not entries and not chats:
            return
        if entries:
            for client in room.joining.values():
                client.hold.extend(entries)
        if chats:
            for held in room.chat_hold.values():
                held.extend(chats)
        if not room.clients:
            return
        json_chat, msgpack_chat, json_quiet, msgpack_quiet = room.entries()
        if entries:  # room events: to everyone (with the chat, when some arrived)
            self._send(json_quiet, msgpack_quiet, entries)
            if not chats:
                self._send(json_chat, msgpack_chat, entries)
        if chats:
            self._send(json_chat, msgpack_chat, entries + chats)
        room.last_flush = asyncio.get_running_loop().time()
        self.observe_fanout(time.perf_counter() - room.received_at)

    def _send(self, json_entries: list[Entry], msgpack_entries: list[Entry],
              events: list[HeldEvent]) -> None:
        """One frame per codec for `events` (one event, or an array), to those viewers."""
        sent = 0
        if json_entries:
            if len(events) == 1:
                json_frame = frame(OP_TEXT, events[0][1])
            else:
                json_frame = frame(OP_TEXT, batch(JSON, [e[1] for e in events]))
            sent += fan_out(json_entries, json_frame)
        if msgpack_entries:
            packed = [MSGPACK.encode(e[2]) for e in events]
            body = packed[0] if len(packed) == 1 else batch(MSGPACK, packed)
            sent += fan_out(msgpack_entries, frame(OP_BINARY, body))
        self.delivered += len(events) * sent

    def push(self, room: Room, obj: Any) -> None:
        """An unsequenced event (counters) to the room's live viewers, encoded once per codec."""
        if not room.clients:
            return
        json_chat, msgpack_chat, json_quiet, msgpack_quiet = room.entries()
        if json_chat or json_quiet:
            json_frame = frame(OP_TEXT, JSON.encode(obj))
            fan_out(json_chat, json_frame)
            fan_out(json_quiet, json_frame)
        if msgpack_chat or msgpack_quiet:
            msgpack_frame = frame(OP_BINARY, MSGPACK.encode(obj))
            fan_out(msgpack_chat, msgpack_frame)
            fan_out(msgpack_quiet, msgpack_frame)

    @staticmethod
    def _single(client: Client, data: bytes, obj: Any) -> bytes:
        if client.codec is MSGPACK:
            return frame(OP_BINARY, MSGPACK.encode(obj if obj is not None else orjson.loads(data)))
        return frame(OP_TEXT, data)
