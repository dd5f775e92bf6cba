"""Local rooms: which connections on this node watch which session, and the fan-out.

An event arrives once (from the broker, in `seq` order). The hub decodes it once, and at
the end of the loop tick (or, when the room fanned out less than `coalesce_s` ago, at the
end of that window) builds one frame per codec for everything that arrived meanwhile
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

**Two lanes.** A room has two sequenced lanes of the same class (server/fanout/lane.py):
the room lane (`seq`: pins, deals, sold-outs, …; a viewer it lost events for is closed
with 4008 and rejoins) and the chat lane (`cseq`: `chat`, `chat_deleted`, `banned`; a
viewer it lost events for gets `chat_gap` and stays). Both arrive on the room's channel;
each orders, repairs and holds back its own events, and starts a new epoch when some are
gone for good (the store lost them). A joining viewer is held back in each lane: live
events wait until its join reply and its missed history are written, then the ones newer
than its snapshot follow.

A room has two audiences: chat viewers get room and chat events, pins-only viewers
(`join {chat: false}`) room events only. Each flush encodes the room events once per codec
and, when chat arrived, room + chat events once more per codec for the chat audience:
never per viewer. A `banned` event closes the banned user's connections to the room here
(4003) as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import orjson

from server.edge.client import Client
from server.edge.codecs import JSON, MSGPACK, OP_BINARY, OP_TEXT, batch, frame
from server.errors import CloseCode
from server.events import EventType
from server.fanout.lane import REJOIN, SKIP, HeldEvent, HistoryFetch, Lane, LaneKind
from server.fanout.lane import deliver as deliver
from server.observe.metrics import Reading

log = logging.getLogger("livecart.hub")

# the room events the node keeps facts from (session status, sold-out products, …)
FACT_EVENTS = frozenset({EventType.SESSION, EventType.SOLD_OUT, EventType.DEAL,
                         EventType.PINNED, EventType.PRODUCT, EventType.GIVEAWAY})


def _no_fact(sid: str, event: Any) -> None:
    """The `on_fact` of a hub nobody asked for facts (tests)."""


def _no_observation(seconds: float) -> None:
    """The `observe_fanout` of a hub without metrics (tests)."""


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
                client.evict(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect with since")
            continue
        write(data)
    return len(entries) - skipped


Lists = tuple[list[Entry], list[Entry], list[Entry], list[Entry]]


class Room:
    __slots__ = (
        "_entries", "catch_up", "chat", "clients", "flush_handle", "flush_scheduled",
        "joining", "lane", "last_counters", "last_flush", "likes", "quiet", "received_at",
        "sid", "waiters",
    )

    def __init__(self, sid: str, hub: Hub) -> None:
        self.sid = sid
        self.clients: dict[int, Client] = {}
        self.joining: dict[int, Client] = {}
        ready, flush = partial(hub.ready, self), partial(hub.flush, self)
        self.lane = Lane(hub.room_lane, sid, ready, flush)  # `seq`
        self.chat = Lane(hub.chat_lane, sid, ready, flush)  # `cseq`: chat viewers only
        self.flush_scheduled = False
        self.flush_handle: asyncio.Handle | None = None
        self.last_flush = float("-inf")  # loop time the last fan-out ended
        self.received_at = 0.0
        self.likes = 0
        self.last_counters: tuple[int, ...] | None = None
        # joiners whose snapshot counters differ from the last push: the next counters tick
        # sends each the fresh values if they still differ (its snapshot may be the newer)
        self.catch_up: list[tuple[Client, tuple[int, ...]]] = []
        self.waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # see Hub.caught_up
        self._entries: Lists | None = None
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
    """The node's local rooms. `fetch_history` / `fetch_chat` read a room's stored room
    events / chat-lane events after a number (for repairs); `on_fact(session, event)` is
    told every event of a room served here whose type is in FACT_EVENTS (the node's copy
    of session status and sold-out products); `observe_fanout(seconds)` gets each
    fan-out's time from the first event's arrival.

    A room flushes at once when it has been quiet; events that arrive within `coalesce_s`
    of its previous fan-out wait for the rest of that window and go out together as one
    array frame. One send() per viewer costs ~8 µs of kernel time here (python -m
    loadtest.sendfloor), so under bursts this divides the per-event cost; an isolated
    event (a pin) is never delayed."""

    def __init__(self, *, fetch_history: HistoryFetch, fetch_chat: HistoryFetch,
                 on_fact: Callable[[str, Any], None] = _no_fact, coalesce_s: float = 0.010,
                 observe_fanout: Callable[[float], None] = _no_observation) -> None:
        self.rooms: dict[str, Room] = {}
        self.room_lane = LaneKind("seq", fetch_history, REJOIN)
        self.chat_lane = LaneKind("cseq", fetch_chat, SKIP)
        self.on_fact = on_fact
        self.coalesce_s = coalesce_s
        self.observe_fanout = observe_fanout
        self.received = 0
        self.delivered = 0
        self.evictions = 0
        self.sold_out = 0  # `sold_out` events received (for /metrics)
        self.chat_received = 0

    def readings(self) -> list[Reading]:
        return [
            Reading("gauge", "livecart_rooms", "sessions with viewers on this node",
                    lambda: len(self.rooms)),
            Reading("gauge", "livecart_joined_viewers", "connections joined to a session",
                    lambda: sum(room.size for room in self.rooms.values())),
            Reading("counter", "livecart_events_received", "room events received from pub/sub",
                    lambda: self.received),
            Reading("counter", "livecart_events_delivered", "room events written to viewers",
                    lambda: self.delivered),
            Reading("counter", "livecart_slow_consumer_evictions", "viewers closed with 4008",
                    lambda: self.evictions),
            Reading("counter", "livecart_chat_events_received",
                    "chat-lane events received from pub/sub", lambda: self.chat_received),
            Reading("counter", "livecart_sold_out_events",
                    "sold_out room events received by this node's rooms",
                    lambda: self.sold_out),
        ]

    def evicted(self, client: Client, code: int) -> None:
        """A connection closed by its own send buffer or by a drain: out of its room."""
        if code == CloseCode.SLOW_CONSUMER:
            self.evictions += 1
            log.info("slow consumer closed with 4008", extra={"session": client.session})
        self.remove(client)

    # membership -------------------------------------------------------------

    def add_joining(self, client: Client, sid: str, chat: bool = True) -> Room:
        room = self.rooms.get(sid)
        if room is None:
            room = self.rooms[sid] = Room(sid, self)
        client.session = sid
        client.joining = True
        room.joining[client.id] = client
        room.lane.add(client)
        if chat:
            room.chat.add(client)
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
        if room.lane.pending or room.chat.pending:
            # Events waiting for the next fan-out may be older than this snapshot: send
            # them now, while this client is still joining (they are held for it and
            # filtered by number below), so it never gets one twice.
            self.flush(room)
        room.joining.pop(client.id, None)
        client.joining = False
        events = room.lane.activate(client, snapshot_seq, replay)
        if events is None:  # left behind by a lost run of the room lane: closed
            room.chat.remove(client.id)
            return
        chat = room.chat.activate(client, snapshot_cseq, chat_replay or ())
        frames = [self._single(client, data, obj) for _n, data, obj in events]
        if chat:
            frames.extend(self._single(client, data, obj) for _n, data, obj in chat)
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
        room = self.rooms.get(sid) if sid else None
        if room is None:
            return
        room.joining.pop(client.id, None)
        room.lane.remove(client.id)
        room.chat.remove(client.id)
        if room.clients.pop(client.id, None) is not None:
            room.changed()
        room.quiet.discard(client.id)

    @staticmethod
    def _caught(room: Room, seq: int, cseq: int) -> bool:
        return room.lane.reached(seq) and room.chat.reached(cseq)

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
            pass  # events lost beyond repair: the lanes' gap handling takes over
        finally:
            if waiter in room.waiters:
                room.waiters.remove(waiter)

    def drop_room(self, sid: str) -> None:
        room = self.rooms.get(sid)
        if room is not None and room.size == 0:
            del self.rooms[sid]

    # inbound events -----------------------------------------------------------

    def on_event(self, sid: str, data: bytes) -> None:
        """One published event of a room (JSON text with `seq`, or `cseq` for the chat
        lane), in channel order."""
        room = self.rooms.get(sid)
        if room is None:
            return
        self.received += 1
        obj = orjson.loads(data)
        kind = obj["t"]
        if "cseq" in obj:
            self.chat_received += 1
            if kind == EventType.BANNED:
                user = obj["d"]["user"]
                for client in [*room.clients.values(), *room.joining.values()]:
                    if client.user == user:
                        client.evict(CloseCode.BANNED, "banned from this session")
            room.chat.receive(bytes(data), obj)
            return
        if kind in FACT_EVENTS:
            self.on_fact(sid, obj)
        if kind == EventType.SOLD_OUT:
            self.sold_out += 1
        room.lane.receive(bytes(data), obj)

    def resync(self, sid: str) -> None:
        """The channel was resubscribed after a lost connection: fetch what we missed."""
        room = self.rooms.get(sid)
        if room is not None:
            room.lane.resync()
            room.chat.resync()

    def ready(self, room: Room) -> None:
        """A lane of `room` has an event pending: wake its joiners waiting for it and
        schedule the room's fan-out."""
        if room.waiters:
            self._wake(room)
        if not room.flush_scheduled:
            room.received_at = time.perf_counter()
            room.flush_scheduled = True
            loop = asyncio.get_running_loop()
            wait = room.last_flush + self.coalesce_s - loop.time()
            room.flush_handle = (loop.call_later(wait, self.flush, room) if wait > 0
                                 else loop.call_soon(self.flush, room))

    # fan-out ------------------------------------------------------------------

    def flush(self, room: Room) -> None:
        room.flush_scheduled = False
        if room.flush_handle is not None:
            room.flush_handle.cancel()
            room.flush_handle = None
        entries = room.lane.take()
        chats = room.chat.take()
        if not entries and not chats:
            return
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
