"""One typed function per Lua script: the only place that knows a script's KEYS and ARGV.

Every call passes keys of one hash tag only (see keys.py), so each runs in one slot and,
on a cluster, on one shard. Domain modules call these; none of them builds a KEYS list.
What a purchase or a refund does across slots (several of these calls, each idempotent)
is `saga.py`'s.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from server.keys import Keys, order_bucket
from server.store import Store, text


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _opt(value: int | None) -> str | int:
    return "" if value is None else value


def new_epoch() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class Begun:
    """What order_begin.lua found: 'new' | 'pending' | 'failed' | 'committed'."""

    status: str
    attempt: int
    body: bytes  # the plan (JSON), or the order JSON when committed


@dataclass(frozen=True, slots=True)
class Reserved:
    line: dict[str, Any]  # {product, qty, unit_price, amount, commission, seller, deal, sold_out}
    closed_deal: bytes  # a deal reserve.lua closed at its ends_at (JSON), or b""


class Scripts:
    def __init__(self, store: Store, keys: Keys, history_max_events: int,
                 history_max_age_ms: int) -> None:
        self.store, self.keys = store, keys
        self.history = (history_max_events, history_max_age_ms)

    def _context(self) -> list[Any]:
        return [*self.history, new_epoch()]

    # sessions (slot {s:<session>}) ------------------------------------------------

    async def create_session(self, sid: str, creator: str, kind: str, title: str,
                             showcase: list[str], created_at: int, stream_url: str | None = None,
                             stream_clock_offset_ms: int = 0) -> bool:
        return bool(await self.store.run(
            "session_create.lua", [self.keys.session(sid)],
            [sid, creator, kind, title, _json(showcase), created_at, new_epoch(),
             stream_url or "", stream_clock_offset_ms]))

    async def set_stream(self, sid: str, caller: str, stream_url: str | bool | None,
                         stream_clock_offset_ms: int | None) -> None:
        """`stream_url`: a URL, None to remove it, False to keep it; offset None keeps it."""
        url = "-" if stream_url is False else (stream_url or "")
        await self.store.run("session_stream.lua", [self.keys.session(sid)],
                             [caller, url, "-" if stream_clock_offset_ms is None
                              else stream_clock_offset_ms])

    async def set_status(self, sid: str, action: str, caller: str,
                         closed_deal: bytes) -> tuple[str, int]:
        status, seq = await self.store.run(
            "session_status.lua", [*self.keys.room(sid), self.keys.pin_log(sid)],
            [*self._context(), action, caller, closed_deal])
        return text(status), int(seq)

    async def pin(self, sid: str, caller: str, stream_ts_ms: int | None, product_json: bytes,
                  product: str, opened_deal: bytes, closed_deal: bytes) -> tuple[Any, int]:
        k = self.keys
        pin, seq = await self.store.run(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.presence(sid)],
            [*self._context(), "pin", caller, _opt(stream_ts_ms), product_json, product,
             opened_deal, closed_deal])
        return orjson.loads(pin), int(seq)

    async def unpin(self, sid: str, caller: str, stream_ts_ms: int | None,
                    closed_deal: bytes) -> int:
        k = self.keys
        _, seq = await self.store.run(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.presence(sid)],
            [*self._context(), "unpin", caller, _opt(stream_ts_ms), "", "", "", closed_deal])
        return int(seq)

    async def emit(self, sid: str, event_type: str, data: Any) -> int:
        return int(await self.store.run(
            "room_event.lua", self.keys.room(sid),
            [*self._context(), event_type, _json(data)]))

    async def announce_closed_deal(self, sid: str, deal: bytes) -> int:
        return int(await self.store.run(
            "deal_announce.lua", self.keys.room(sid), [*self._context(), deal]))

    async def room_tick(self, calls: list[tuple[str, str, int, int, int]]) -> list[Any]:
        """(session, node id, local viewers, presence ttl ms, likes) per room, pipelined."""
        return await self.store.run_many("room_tick.lua", [
            ([self.keys.presence(sid), self.keys.counters(sid)], [node, count, ttl, likes])
            for sid, node, count, ttl, likes in calls])

    async def session_effects(self, sid: str, effect: str, kind: str,
                              lines: list[dict[str, Any]], sold_out: list[str]) -> bool:
        k = self.keys
        return bool(await self.store.run_pipelined(
            "session_effects.lua",
            [*k.room(sid), k.counters(sid), k.session_applied(sid)],
            [*self._context(), effect, kind, _json(lines), _json(sold_out)]))

    # products (slot {p:<product>}) --------------------------------------------------

    async def create_product(self, fields: list[Any], pid: str) -> bool:
        return bool(await self.store.run("product_create.lua", [self.keys.product(pid)], fields))

    async def patch_product(self, pid: str, price: int | None, stock: int | None,
                            commission_bps: int | None) -> tuple[bool, int, int, list[bytes]]:
        changed, now_price, now_stock, closed = await self.store.run(
            "product_patch.lua", [self.keys.product(pid), self.keys.deals(pid)],
            [_opt(price), _opt(stock), _opt(commission_bps)])
        return (bool(changed), int(now_price), int(now_stock),
                [orjson.dumps(d) for d in orjson.loads(closed)])

    async def open_deal(self, pid: str, sid: str, deal_id: str,
                        deal: dict[str, int]) -> tuple[bytes, bytes]:
        opened, closed = await self.store.run(
            "deal_open.lua", [self.keys.product(pid), self.keys.deals(pid)],
            [sid, deal_id, deal["price"], deal["stock"], deal["per_buyer_limit"],
             deal["ends_at"]])
        return bytes(opened), bytes(closed)

    async def close_deal(self, pid: str, sid: str, deal_id: str = "",
                         only_due: bool = False) -> tuple[str, bytes]:
        """('closed', deal JSON) closed now | ('was_closed', deal JSON) | ('open', b'') not
        due yet | ('unknown', b'')."""
        state, deal = await self.store.run(
            "deal_close.lua", [self.keys.product(pid), self.keys.deals(pid)],
            [sid, deal_id, "1" if only_due else "0"])
        return text(state), bytes(deal)

    async def reserve(self, pid: str, reservation: str, buyer: str, qty: int,
                      seen: int | None, mode: str, room: str, attributed: str) -> Reserved:
        k = self.keys
        line, closed = await self.store.run_pipelined(
            "reserve.lua", [k.product(pid), k.deals(pid), k.rates(pid), k.reservations(pid)],
            [reservation, buyer, qty, _opt(seen), mode, room, attributed, pid])
        return Reserved(orjson.loads(line), bytes(closed))

    async def settle_reservation(self, pid: str, reservation: str, op: str) -> str:
        k = self.keys
        return text(await self.store.run_pipelined(
            "reserve_settle.lua", [k.product(pid), k.deals(pid), k.reservations(pid)],
            [reservation, op]))

    async def refund_stock(self, pid: str, effect: str, qty: int) -> bool:
        return bool(await self.store.run_pipelined(
            "refund_stock.lua", [self.keys.product(pid), self.keys.product_applied(pid)],
            [effect, qty]))

    # users (slot {u:<user>}) ------------------------------------------------------------

    async def update_cart(self, buyer: str, op: str, product: str, qty: int, session: str,
                          max_qty: int, stock: int | None) -> tuple[Any, bool, int]:
        """(the cart as a flat list, whether the line grew, the cart's new version)."""
        k = self.keys
        flat, grew, version = await self.store.run(
            "cart_update.lua", [k.cart(buyer), k.touches(buyer), k.cart_version(buyer)],
            [op, product, qty, session, max_qty, _opt(stock)])
        return flat, bool(grew), int(version)

    async def buyer_effects(self, buyer: str, oid: str, order_json: bytes,
                            cart_lines: dict[str, str] | None,
                            touch: tuple[str, str] | None) -> int:
        """The cart's version when this left a changed, non-empty cart (else 0)."""
        k = self.keys
        _, version = await self.store.run_pipelined(
            "buyer_effects.lua",
            [k.user_applied(buyer), k.user_orders(buyer), k.cart(buyer), k.touches(buyer),
             k.user_channel(buyer), k.cart_version(buyer)],
            [f"o:{oid}", oid, order_json, "" if cart_lines is None else _json(cart_lines),
             touch[0] if touch else "", touch[1] if touch else ""])
        return int(version)

    async def ledger_apply(self, creator: str, effect: str,
                           entries: list[dict[str, Any]]) -> bool:
        k = self.keys
        return bool(await self.store.run_pipelined(
            "ledger_apply.lua", [k.user_applied(creator), k.ledger(creator), k.balance(creator)],
            [effect, _json(entries)]))

    # orders (slot {o:<bucket>}) ---------------------------------------------------------

    def _order_keys(self, oid: str) -> list[str]:
        return [self.keys.order(oid), self.keys.saga(order_bucket(oid))]

    async def begin_order(self, oid: str, fingerprint: str, plan: bytes,
                          takeover_at: int) -> Begun:
        status, attempt, body = await self.store.run_pipelined(
            "order_begin.lua", self._order_keys(oid), [oid, fingerprint, plan, takeover_at])
        return Begun(text(status), int(attempt), bytes(body))

    async def commit_order(self, oid: str, attempt: int, head: dict[str, Any],
                           lines: list[dict[str, Any]], redo_at: int,
                           sold_out: list[list[str]]) -> tuple[bool, bytes]:
        status, order = await self.store.run_pipelined(
            "order_commit.lua",
            [*self._order_keys(oid), self.keys.orders_stream(order_bucket(oid))],
            [oid, attempt, _json(head), _json(lines), redo_at, _json(sold_out)])
        return text(status) == "new", bytes(order)

    async def order_step(self, oid: str, op: str, attempt: int) -> str:
        return text(await self.store.run_pipelined(
            "order_step.lua", self._order_keys(oid), [oid, op, attempt]))

    async def refund(self, oid: str, refund_id: str, lines: bytes, caller: str, admin: bool,
                     redo_at: int) -> tuple[bool, bytes, bytes]:
        bucket = order_bucket(oid)
        status, result, effects = await self.store.run(
            "refund.lua",
            [self.keys.order(oid), self.keys.refunds(oid), self.keys.saga(bucket),
             self.keys.orders_stream(bucket)],
            [refund_id, lines, caller, "1" if admin else "0", redo_at])
        return text(status) == "new", bytes(result), bytes(effects)
