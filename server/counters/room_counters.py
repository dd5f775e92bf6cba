"""Room counters and presence.

Each node reports its local viewer count per session on every tick (`room_tick.lua`):
the session's `viewers` is the sum over nodes whose report has not expired, so a dead
node's viewers vanish within the presence TTL. Likes are merged locally and added on the
tick. Rooms receive `counters` at most once per tick, and only when a number changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.clock import now_ms
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store


@dataclass(frozen=True, slots=True)
class TickReport:
    sid: str
    viewers: int
    likes: int
    orders: int
    units: int
    peak: int

    def counters(self) -> dict[str, int]:
        return {"viewers": self.viewers, "likes": self.likes, "orders": self.orders,
                "units": self.units}


def live_viewers(counters: dict[str, str], now_ms: int) -> int:
    """The audience summed by the last counters tick (room_tick.lua, the one reader of
    the presence reports), or 0 once the first report it summed has expired with no
    tick since (every node serving the room is gone)."""
    fresh = int(counters.get("viewers_until", 0)) > now_ms
    return int(counters.get("viewers", 0)) if fresh else 0


def counters_view(counters: dict[str, str], now_ms: int) -> dict[str, int]:
    """The `counters` shape from a session's counters hash."""
    return {
        "viewers": live_viewers(counters, now_ms), "likes": int(counters.get("likes", 0)),
        "orders": int(counters.get("orders", 0)), "units": int(counters.get("units", 0)),
    }


class RoomCounters:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts, node_id: str,
                 presence_ttl_s: float) -> None:
        self.store, self.keys, self.scripts, self.node_id = store, keys, scripts, node_id
        self.ttl_ms = int(presence_ttl_s * 1000)

    async def tick(self, rooms: list[tuple[str, int, int]]) -> list[TickReport]:
        """Report (session, local viewers, new likes) for each room in one round trip."""
        rows = await self.scripts.room_tick(
            [(sid, self.node_id, viewers, self.ttl_ms, likes) for sid, viewers, likes in rooms])
        return [TickReport(sid, *(int(x) for x in row))
                for (sid, _, _), row in zip(rooms, rows, strict=True)]

    async def click(self, sid: str, product: str, buyer: str) -> None:
        """A click is a touch: it can win the attribution of a later purchase. The touch
        (buyer's slot) and the counts (session's slot) need not change together."""
        now = now_ms()
        await self.store.batch([
            ("HSET", self.keys.touches(buyer), product, f"{sid}|{now}"),
            ("HINCRBY", self.keys.counters(sid), "clicks", 1),
            ("HINCRBY", self.keys.counters(sid), f"clicks:{product}", 1)])


