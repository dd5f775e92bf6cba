"""The counters tick of the rooms served here: presence and likes reported for every room
in one round trip, `counters` pushed to viewers on change, `stats` to each room's creator,
and the rooms nobody watches any more dropped (`room_dropped`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from server.clock import now_ms
from server.counters.reports import live_stats
from server.counters.room_counters import RoomCounters, TickReport
from server.edge.client import Client
from server.edge.codecs import JSON
from server.errors import ApiError
from server.events import EventType
from server.facts import RoomFacts
from server.fanout.hub import Hub, deliver
from server.fanout.users import UserChannels
from server.signals import Signal
from server.valkey.keys import Keys
from server.valkey.store import Store, as_dict

ANSWERING = 256  # commands in flight above which a room's stats wait
STATS_DEFER_TICKS = 3  # ... for at most this many of their ticks in a row


class StatsGate:
    """Room stats (social proof, counters) wait while the node answers a burst — each is
    one more frame to every viewer, and the burst's replies go first — at most
    STATS_DEFER_TICKS of their ticks in a row: `holds()` once per tick says whether this
    tick's stats wait."""

    def __init__(self, answering: Callable[[], bool]) -> None:
        self.answering = answering
        self.held = 0

    def holds(self) -> bool:
        hold = self.answering() and self.held < STATS_DEFER_TICKS
        self.held = self.held + 1 if hold else 0
        return hold


class RoomTick:
    def __init__(self, store: Store, keys: Keys, hub: Hub, counters: RoomCounters,
                 users: UserChannels, facts: Callable[[str], RoomFacts | None],
                 answering: Callable[[], bool], room_dropped: Signal[str]) -> None:
        self.store, self.keys, self.hub, self.counters = store, keys, hub, counters
        self.users, self.facts, self.room_dropped = users, facts, room_dropped
        self.gate = StatsGate(answering)
        self.last_stats: dict[str, dict[str, int]] = {}
        self._held: dict[str, int] = {}  # room -> ticks in a row its push waited for joiners

    def _creator_here(self, sid: str) -> list[Client]:
        """The session creator's connections here watching this room (joined, not joining).
        A connection is live only once its room's facts are known, so the creator is
        always recognised."""
        known = self.facts(sid)
        mine = self.users.of(known.session.creator) if known else []
        return [c for c in mine if c.session == sid and not c.joining]

    async def tick(self) -> None:
        rooms = list(self.hub.rooms.values())
        if not rooms:
            return
        likes = {room.sid: room.likes for room in rooms}
        counted = {room.sid: len(room.clients) for room in rooms}
        for room in rooms:
            room.likes = 0
        try:  # a creator watching the console is not an audience
            reports = await self.counters.tick([
                (r.sid, max(0, len(r.clients) - len(self._creator_here(r.sid))), likes[r.sid])
                for r in rooms])
        except ApiError:
            for room in rooms:  # keep the likes for the next tick
                room.likes += likes[room.sid]
            raise
        await self._push_stats(reports)
        now = now_ms()
        defer = self.gate.holds()
        for room, report in zip(rooms, reports, strict=True):
            if room.size == 0:
                self.last_stats.pop(room.sid, None)
                self._held.pop(room.sid, None)
                await self.room_dropped.send(room.sid)
                continue
            if self._newer_viewers(room.sid, len(room.clients) > counted[room.sid]):
                continue  # the next tick counts them, and pushes
            values = (report.viewers, report.likes, report.orders, report.units)
            pushed = values != room.last_counters and not defer
            joiners, room.catch_up = room.catch_up, []
            if not pushed and not joiners:
                continue
            event = {"t": EventType.COUNTERS, "ts": now, "d": report.counters()}
            if pushed:
                room.last_counters = values
                self.hub.push(room, event)
            for client, seen in joiners:  # joined around the last push (rooms/ops.join)
                if not pushed and seen != values and client.id in room.clients:
                    client.send_obj(event)

    def _newer_viewers(self, sid: str, went_live: bool) -> bool:
        """Did viewers go live in the room while this tick's report was out? Their join
        snapshots are newer than values that do not count them, so those values are not
        pushed (the next tick's are) — at most STATS_DEFER_TICKS ticks in a row, so a
        room that keeps growing still gets its counters."""
        held = self._held.pop(sid, 0)
        if went_live and held < STATS_DEFER_TICKS:
            self._held[sid] = held + 1
            return True
        return False

    async def final(self) -> None:
        """At shutdown: the likes not reported yet, with no viewers left here."""
        with contextlib.suppress(ApiError):
            await self.counters.tick([(sid, 0, room.likes) for sid, room in self.hub.rooms.items()])

    async def _push_stats(self, reports: list[TickReport]) -> None:
        """`stats` to each room's creator connected here, at most once a tick, on change."""
        watching = [(r, mine) for r in reports if (mine := self._creator_here(r.sid))]
        if not watching:
            return
        rows = await self.store.batch(
            [("HGETALL", self.keys.counters(r.sid)) for r, _ in watching])
        now = now_ms()
        for (report, mine), row in zip(watching, rows, strict=True):
            stats = live_stats(as_dict(row), report.viewers)
            if stats == self.last_stats.get(report.sid):
                continue
            self.last_stats[report.sid] = stats
            deliver(mine, JSON.encode({"t": EventType.STATS, "ts": now, "d": stats}))
