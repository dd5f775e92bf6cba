"""Timed pins for shoppable videos and replays: pure rules, no I/O.

An entry `{at_ms, product, until_ms?}` is active on `[at_ms, until_ms)`, or until the next
entry's `at_ms` when `until_ms` is absent (the last one, to the end). A live session's pin
log (pins and unpins with their stream positions) becomes its replay timeline when it ends:
each pin is active from its position until the next pin or unpin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server import validate as v
from server.errors import ApiError, ErrorCode, bad_request

MAX_ENTRIES = 500
MAX_MS = 10 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Entry:
    at_ms: int
    product: str
    until_ms: int | None = None
    pinned_at: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at_ms": self.at_ms, "product": self.product}
        if self.until_ms is not None:
            out["until_ms"] = self.until_ms
        return out


def parse_timeline(body: Any, showcase: list[str]) -> list[Entry]:
    """Validate a timeline: sorted, non-overlapping (`bad_request`), products in the
    showcase (`conflict`)."""
    if not isinstance(body, list) or len(body) > MAX_ENTRIES:
        raise bad_request(f"a timeline is a list of at most {MAX_ENTRIES} entries")
    entries: list[Entry] = []
    for i, raw in enumerate(body):
        item = v.obj(raw, f"entry {i}")
        v.only(item, {"at_ms", "product", "until_ms"}, f"entry {i}")
        at = v.req_int(item, "at_ms", lo=0, hi=MAX_MS)
        product = v.req_ident(item, "product")
        until = v.integer(item, "until_ms", lo=0, hi=MAX_MS, required=False)
        if product not in showcase:  # the session's state, not the entry's shape
            raise ApiError(ErrorCode.CONFLICT,
                           f"entry {i}: product {product!r} is not in the showcase",
                           entry=i, product=product)
        if until is not None and until <= at:
            raise bad_request(f"entry {i}: until_ms must be after at_ms", entry=i)
        if entries:
            prev = entries[-1]
            if at <= prev.at_ms:
                raise bad_request(f"entry {i}: entries must be sorted by at_ms (strictly)",
                                  entry=i)
            if prev.until_ms is not None and prev.until_ms > at:
                raise bad_request(f"entry {i}: overlaps the previous entry", entry=i)
        entries.append(Entry(at, product, until))
    return entries


def active_at(entries: list[Entry], ms: int) -> Entry | None:
    """The entry active at position `ms`, if any."""
    found: Entry | None = None
    for i, e in enumerate(entries):
        if e.at_ms > ms:
            break
        end = e.until_ms
        if end is None and i + 1 < len(entries):
            end = entries[i + 1].at_ms
        found = e if end is None or ms < end else None
    return found


def replay_timeline(log: list[dict[str, Any]]) -> list[Entry]:
    """A live session's pin log `[{op: pin|unpin, at, product?, pinned_at?}]` as a timeline."""
    ordered = sorted(enumerate(log), key=lambda p: (int(p[1].get("at", 0)), p[0]))
    entries: list[Entry] = []
    open_pin: dict[str, Any] | None = None
    for _, item in ordered:
        at = max(0, int(item.get("at", 0)))
        if open_pin is not None:
            start = max(0, int(open_pin.get("at", 0)))
            if at > start:
                entries.append(Entry(start, str(open_pin["product"]), at,
                                     open_pin.get("pinned_at")))
            open_pin = None
        if item.get("op") == "pin":
            open_pin = item
    if open_pin is not None:
        entries.append(Entry(max(0, int(open_pin.get("at", 0))), str(open_pin["product"]),
                             None, open_pin.get("pinned_at")))
    return entries
