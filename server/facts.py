"""Facts the domain packages share: a session as stored, what a node knows of a room.

The bottom of the domain: `counters/`, `cart/` and `rooms/` import these (and import
each other only downward: counters <- cart <- rooms), so none of them imports another in
a circle. Plain data and their parsing; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ClosedDeal:
    """A deal closed in its product's slot, to be announced in its session's room."""

    session: str
    deal: bytes  # the deal's JSON as the product's slot keeps it
    why: str  # for the log line


@dataclass(frozen=True, slots=True)
class SessionFacts:
    id: str
    creator: str
    kind: str  # live | video
    status: str  # scheduled | live | ended


@dataclass(frozen=True, slots=True)
class RoomFacts:
    session: SessionFacts
    showcase: frozenset[str]


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
    pin_deal: str  # id of the deal opened with the current pin (open or closed), or ""
    pin_deal_product: str  # the product of that deal (its slot holds the deal)
    seq: int
    epoch: str
    timeline: list[dict[str, Any]]  # video sessions: [{at_ms, product, until_ms?}]
    scheduled_at: int | None = None  # epoch ms the show is announced for
    stream_url: str | None = None  # its HLS media playlist (server/video/streams.py)
    stream_clock_offset_ms: int = 0  # stream program date-time minus server clock

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Session:
        return cls(
            id=h["id"], creator=h["creator"], kind=h["kind"], title=h["title"],
            status=h["status"], showcase=list(orjson.loads(h.get("showcase") or "[]")),
            created_at=int(h.get("created_at") or 0),
            started_at=int(h["started_at"]) if h.get("started_at") else None,
            ended_at=int(h["ended_at"]) if h.get("ended_at") else None,
            pin=h["pin"].encode() if h.get("pin") else None, pin_deal=h.get("pin_deal", ""),
            pin_deal_product=h.get("pin_deal_product", ""),
            seq=int(h.get("seq") or 0), epoch=h.get("epoch", ""),
            timeline=list(orjson.loads(h.get("timeline") or "[]")),
            scheduled_at=int(h["scheduled_at"]) if h.get("scheduled_at") else None,
            stream_url=h.get("stream_url") or None,
            stream_clock_offset_ms=int(h.get("stream_clock_offset_ms") or 0),
        )

    def pinned(self, deal: dict[str, Any] | None = None) -> Any:
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
            "ended_at": self.ended_at, "scheduled_at": self.scheduled_at,
            "stream_url": self.stream_url,
            "stream_clock_offset_ms": self.stream_clock_offset_ms,
        }


def deal_view(d: dict[str, Any]) -> dict[str, Any]:
    return {"price": int(d["price"]), "stock_left": int(d["stock_left"]),
            "per_buyer_limit": int(d["per_buyer_limit"]), "ends_at": int(d["ends_at"]),
            "status": d["status"]}
