"""One sequenced lane of a room: its events in order, gap repair, hold-back of joiners,
and what happens when some of its events are gone for good.

A room has two lanes (server/fanout/hub.py): the room lane (`seq`: pins, deals, …) and
the chat lane (`cseq`: chat, deletions, bans). Both are this class, told apart by a
`LaneKind`: the number's field in an event, the fetch that reads the lane's stored events
after a number (the session's history or its chat stream), and the `GapPolicy`.

**Order and repair.** The lane passes on each event once, in number order: a repeat is
dropped, a gap (`n > last + 1`) holds what follows in a backlog while the missing events
are read from the store (tried a few times if the store fails), then everything goes on.

**Epochs.** An epoch of a lane is a run of events this node knows to be continuous. It
ends when the lane learns that some events are gone for good:

- *an unrepairable gap*: the store no longer holds the missing events (its history was
  trimmed past them, or lost and restarted under a new store epoch), so the lane goes on
  right before the next event it has. Viewers whose join snapshot already covers the
  missing events (they joined after them: on the new store epoch) lose nothing;
- *the store went back*: it lost its last writes (a crash whose AOF missed them, a
  failover to a replica behind) and numbers events again from an earlier point. The lane
  sees it when a joiner's snapshot is older than what the lane had passed on when that
  joiner came (a store that loses nothing never answers that), or when an event arrives
  with a number the lane has passed but a `ts` newer than anything it passed on (a repeat
  is never newer). Every viewer of the lane saw events that no longer exist; the lane
  starts again at the store's point, and the joiner that showed it is on the new epoch.

The viewers left behind are handled by the lane's `GapPolicy`, once: the room lane closes
them with 4008 `missed events: rejoin` (they rejoin with `since` and `epoch` and get
`recovered: false` and the snapshot, as for any lost history); the chat lane never closes
anyone for chat: it sends them a `chat_gap` event (the lane goes on after its `cseq`) and
keeps them. Joiners caught in the change are judged at their activation by their snapshot.

Per event the lane does a few comparisons and one list append, nothing per viewer; the
epoch bookkeeping costs one dict entry per viewer at join, and work only when it changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.clock import now_ms
from server.edge.client import Client
from server.edge.codecs import MSGPACK, OP_BINARY, OP_TEXT, frame
from server.errors import CloseCode
from server.events import EventType

log = logging.getLogger("livecart.hub")

HeldEvent = tuple[int, bytes, Any]  # (number, JSON bytes, decoded object or None)
HistoryFetch = Callable[[str, int], Awaitable[list[tuple[int, bytes]] | None]]
"""(session, after) -> the lane's stored events numbered after `after`, oldest first, or
None when they no longer start right after it (some are gone)."""

REPAIR_TRIES = 3  # a failing store read is tried this often before the events count as gone
REPAIR_RETRY_S = 0.2  # the first wait between tries (doubling)


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


@dataclass(frozen=True, slots=True)
class GapPolicy:
    """What a lane does, once, for a viewer that lost some of its events for good: close
    it with 4008 and `reason` (it rejoins), or — when `notice` names an event type — send
    it that event (`{t: notice, <field>: resume, ts, d: {after}}`: the lane goes on after
    `resume`; what it had after `after` is not coming) and keep it."""

    reason: str = ""
    notice: EventType | None = None


REJOIN = GapPolicy(reason="missed events: rejoin")
SKIP = GapPolicy(notice=EventType.CHAT_GAP)


@dataclass(frozen=True, slots=True)
class LaneKind:
    """What a lane is, shared by every room: `field` is the number's name in an event."""

    field: str
    fetch: HistoryFetch
    policy: GapPolicy


@dataclass(slots=True)
class _Joiner:
    epoch: int  # the lane's epoch when the viewer came
    at: int | None  # the lane's last number then: its snapshot cannot be older
    hold: list[HeldEvent] = field(default_factory=list)  # events passed on meanwhile


class Lane:
    """One room's lane. `ready()` is called after an event became pending (the owner
    schedules a flush and takes it with `take()`); `flush()` makes the owner send what is
    pending now (before viewers are told of a loss, so the order holds)."""

    __slots__ = ("_task", "backlog", "epoch", "flush", "joining", "kind", "last", "lost",
                 "members", "pending", "ready", "repairing", "sid", "since", "top_ts")

    def __init__(self, kind: LaneKind, sid: str, ready: Callable[[], None],
                 flush: Callable[[], None]) -> None:
        self.kind, self.sid, self.ready, self.flush = kind, sid, ready, flush
        self.last: int | None = None  # the last number passed on
        self.top_ts = 0  # the newest `ts` passed on in this epoch (0: none yet)
        self.epoch = 0
        self.since = 0  # this epoch's viewers get every event after `since`
        self.pending: list[HeldEvent] = []
        self.repairing = False
        self.backlog: list[HeldEvent] = []
        self.lost = False  # events after `last` are gone; the next event shows where it goes on
        self.joining: dict[int, _Joiner] = {}
        # live viewers: client id -> (client, the number it has everything up to by itself)
        self.members: dict[int, tuple[Client, int]] = {}
        self._task: asyncio.Task[None] | None = None

    # membership --------------------------------------------------------------------

    def add(self, client: Client) -> None:
        """A viewer is joining: hold what the lane passes on until `activate`."""
        self.joining[client.id] = _Joiner(self.epoch, self.last)

    def remove(self, client_id: int) -> None:
        self.joining.pop(client_id, None)
        self.members.pop(client_id, None)

    def activate(self, client: Client, number: int,
                 replay: Iterable[tuple[int, bytes]]) -> list[HeldEvent] | None:
        """A joiner's snapshot is at `number` and `replay` is its missed history up to it:
        what it is sent now (the replay, then the held events after the snapshot) as it
        becomes a member; None when it was left behind and closed. A viewer that did not
        join this lane (pins-only, for chat) gets nothing, but may give the lane its start."""
        if self.last is None:
            self.last = number
        joiner = self.joining.pop(client.id, None)
        if joiner is None:
            return []
        hold = joiner.hold
        if joiner.epoch == self.epoch and joiner.at is not None and number < joiner.at:
            self._restart(number, everyone=True)  # the store went back (module docstring)
            hold = []  # all from the lost run
        out: list[HeldEvent] = [(n, data, None) for n, data in replay]
        base = number
        if joiner.epoch != self.epoch and number < self.since:  # left behind while joining
            if self.kind.policy.notice is None:
                client.evict(CloseCode.SLOW_CONSUMER, self.kind.policy.reason)
                return None
            out.append(self._notice(number, self.since))
            base = self.since
        last = base
        for n, data, obj in hold:
            if n > last:
                out.append((n, data, obj))
                last = n
        self.members[client.id] = (client, base)
        return out

    def reached(self, number: int) -> bool:
        """Has the lane passed on everything up to `number` (or lost what it lacks)?"""
        return self.last is None or self.last >= number or self.lost

    # inbound -----------------------------------------------------------------------

    def receive(self, data: bytes, obj: Any) -> None:
        """One published event of this lane (decoded once), in channel order."""
        entry: HeldEvent = (int(obj[self.kind.field]), data, obj)
        if self.repairing:
            self.backlog.append(entry)
        else:
            self._take(entry)

    def resync(self) -> None:
        """The channel was subscribed again after a loss: read what may have been missed."""
        if not self.repairing and self.last is not None:
            self._repair()

    def take(self) -> list[HeldEvent]:
        """The pending events, for one fan-out; joiners hold them too."""
        out, self.pending = self.pending, []
        if out and self.joining:
            for joiner in self.joining.values():
                joiner.hold.extend(out)
        return out

    def _take(self, entry: HeldEvent) -> None:
        n, last = entry[0], self.last
        if last is not None:
            if n <= last:
                if not self.top_ts or entry[2].get("ts", 0) <= self.top_ts:
                    return  # a repeat (an overlap after a resubscribe)
                self._restart(n - 1, everyone=True)  # numbered again: the store went back
            elif n > last + 1:
                if not self.lost:
                    self.backlog.append(entry)
                    self._repair()
                    return
                self._restart(n - 1, everyone=False)
        self._enqueue(entry)

    def _enqueue(self, entry: HeldEvent) -> None:
        self.last = entry[0]
        self.lost = False
        ts = entry[2].get("ts", 0)
        if ts > self.top_ts:
            self.top_ts = ts
        self.pending.append(entry)
        self.ready()

    # repair --------------------------------------------------------------------------

    def _repair(self) -> None:
        self.repairing = True
        self._task = asyncio.ensure_future(self._run_repair())

    async def _run_repair(self) -> None:
        since, epoch = self.last, self.epoch
        assert since is not None
        missed = await self._fetch(since)
        if epoch == self.epoch:  # else the lane started again meanwhile: this is of the lost run
            for n, data in missed or ():
                if n > since:
                    self._enqueue((n, data, orjson.loads(data)))
                    since = n
            later = [entry[0] for entry in self.backlog if entry[0] > since]
            if later and later[0] > since + 1:  # what lies between is gone: the lane goes
                self._restart(later[0] - 1, everyone=False)  # on before the first it has
            elif missed is None and not later:
                self._lose(since)
        backlog, self.backlog = self.backlog, []
        self.repairing = False
        self._task = None
        for entry in backlog:
            if self.repairing:
                self.backlog.append(entry)
            else:
                self._take(entry)

    async def _fetch(self, since: int) -> list[tuple[int, bytes]] | None:
        for attempt in range(REPAIR_TRIES):
            try:
                return await self.kind.fetch(self.sid, since)
            except Exception as exc:  # the store is failing: not proof that events are gone
                log.warning("room %s: reading the %s lane after %d failed: %s", self.sid,
                            self.kind.field, since, exc)
                if attempt + 1 < REPAIR_TRIES:
                    await asyncio.sleep(REPAIR_RETRY_S * 2 ** attempt)
        return None

    # a new epoch -----------------------------------------------------------------------

    def _lose(self, since: int) -> None:
        """Events after `since` are gone and none has come yet: the next one shows where the
        lane goes on (`_take`). Viewers that have nothing after `since` certainly lack some:
        when the policy closes them, it closes them now rather than at the next event."""
        self.lost = True
        log.warning("room %s: the %s lane lost events after %d", self.sid, self.kind.field,
                    since)
        if self.kind.policy.notice is None:
            self._tell([c for c, base in self.members.values() if base <= since], since, since)

    def _restart(self, resume: int, *, everyone: bool) -> None:
        """Start a new epoch that goes on after `resume`. `everyone`: the store went back
        and every viewer saw events that no longer exist; otherwise the events between the
        last one passed on and `resume` are gone, and the viewers whose snapshot is older
        than `resume` lack them. Those viewers are told (the lane's policy), once."""
        self.flush()  # what is pending goes first, to the viewers waiting for it
        after = self.last if self.last is not None else resume
        self.epoch += 1
        self.since = self.last = resume
        self.lost = False
        if everyone:
            self.top_ts = 0
        for joiner in self.joining.values():
            joiner.hold.clear()  # before `resume`, or of the lost run: judged at activation
        stale = [c for c, base in self.members.values() if everyone or base < resume]
        log.warning("room %s: the %s lane goes on after %d (had %d): %s; %d viewers behind",
                    self.sid, self.kind.field, resume, after,
                    "the store went back" if everyone else "events are gone", len(stale))
        self._tell(stale, after, resume)

    def _tell(self, stale: list[Client], after: int, resume: int) -> None:
        """The lane's policy, once, for viewers that lack events after `after`: closed
        (they leave the lane), or told that it goes on after `resume` (they stay)."""
        if not stale:
            return
        policy = self.kind.policy
        if policy.notice is None:
            for client in stale:
                self.members.pop(client.id, None)
                client.evict(CloseCode.SLOW_CONSUMER, policy.reason)
            return
        deliver(stale, self._notice(after, resume)[1])
        for client in stale:
            self.members[client.id] = (client, resume)

    def _notice(self, after: int, resume: int) -> HeldEvent:
        notice = self.kind.policy.notice
        assert notice is not None
        doc = {"t": str(notice), self.kind.field: resume, "ts": now_ms(),
               "d": {"after": after}}
        return resume, orjson.dumps(doc), doc
