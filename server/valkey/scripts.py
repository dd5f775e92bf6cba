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
from redis.exceptions import ResponseError

from server.errors import ApiError
from server.valkey.keys import Keys, order_bucket
from server.valkey.ops import (
    AuctionOutcome,
    AuctionPhase,
    GiveawayPhase,
    Moderation,
    PinAction,
    SessionAction,
    VoidOp,
    WaitlistOp,
)
from server.valkey.store import Store, text, translate


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _opt(value: int | None) -> str | int:
    return "" if value is None else value


def new_epoch() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class StreamPatch:
    """A change of a session's stream: its URL when `changes_url` (None removes it), its
    clock offset unless `offset_ms` is None."""

    changes_url: bool
    url: str | None
    offset_ms: int | None


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


@dataclass(frozen=True, slots=True)
class Patched:
    """What product_patch.lua did."""

    changed: bool  # price or stock changed
    price: int
    stock: int
    closed_deals: list[bytes]  # deals a price cut closed (JSON each)
    offered: list[str]  # users a restock gave a waitlist hold, first in line first
    hold_until: int  # when those holds end (ms)


class Scripts:
    def __init__(self, store: Store, keys: Keys, history_max_events: int,
                 history_max_age_ms: int, chat_history_max: int = 500) -> None:
        self.store, self.keys = store, keys
        self.history = (history_max_events, history_max_age_ms)
        self.chat_max = chat_history_max

    def _context(self) -> list[Any]:
        return [*self.history, new_epoch()]

    # sessions (slot {s:<session>}) ------------------------------------------------

    async def create_session(self, sid: str, creator: str, kind: str, title: str,
                             showcase: list[str], created_at: int,
                             scheduled_at: int | None = None, stream_url: str | None = None,
                             stream_clock_offset_ms: int = 0) -> bool:
        return bool(await self.store.run(
            "session_create.lua", [self.keys.session(sid)],
            [sid, creator, kind, title, _json(showcase), created_at, new_epoch(),
             _opt(scheduled_at), stream_url or "", stream_clock_offset_ms]))

    async def set_stream(self, sid: str, caller: str, patch: StreamPatch) -> None:
        keep = "-"  # session_stream.lua: leave this field as it is
        await self.store.run("session_stream.lua", [self.keys.session(sid)], [
            caller, (patch.url or "") if patch.changes_url else keep,
            keep if patch.offset_ms is None else patch.offset_ms])

    async def set_status(self, sid: str, action: SessionAction, caller: str,
                         closed_deal: bytes) -> tuple[str, int]:
        status, seq = await self.store.run(
            "session_status.lua", [*self.keys.room(sid), self.keys.pin_log(sid)],
            [*self._context(), action, caller, closed_deal])
        return text(status), int(seq)

    async def may_pin(self, sid: str, caller: str, action: PinAction, product: str) -> None:
        """pin.lua's checks alone (MAY_PIN, MAY_DEAL, MAY_UNPIN): raises what the pin
        would; writes nothing."""
        k = self.keys
        await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid)],
            [*self._context(), action, caller, "", "", product, "", ""])

    async def pin(self, sid: str, caller: str, stream_ts_ms: int | None, product_json: bytes,
                  product: str, opened_deal: bytes, closed_deal: bytes) -> tuple[Any, int]:
        k = self.keys
        pin, seq = await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid)],
            [*self._context(), PinAction.PIN, caller, _opt(stream_ts_ms), product_json, product,
             opened_deal, closed_deal])
        return orjson.loads(pin), int(seq)

    async def pin_reading_product(self, sid: str, caller: str, stream_ts_ms: int | None,
                                  product: str) -> tuple[Any, int] | None:
        """A pin (no deal) whose script reads the product itself — one Valkey only (the
        product's hash tag is not the session's). None when a deal is pinned in the
        session: nothing was written; close it and pin with `pin`."""
        k = self.keys
        pin, seq = await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid),
                        k.product(product)],
            [*self._context(), PinAction.PIN, caller, _opt(stream_ts_ms), "", product, "", ""])
        if int(seq) < 0:
            return None
        return orjson.loads(pin), int(seq)

    async def unpin(self, sid: str, caller: str, stream_ts_ms: int | None,
                    closed_deal: bytes) -> int:
        k = self.keys
        _, seq = await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid)],
            [*self._context(), PinAction.UNPIN, caller, _opt(stream_ts_ms), "", "", "",
             closed_deal])
        return int(seq)

    async def emit(self, sid: str, event_type: str, data: Any) -> int:
        return int(await self.store.run_pipelined(
            "room_event.lua", self.keys.room(sid),
            [*self._context(), event_type, _json(data)]))

    async def announce_closed_deal(self, sid: str, deal: bytes) -> int:
        return int(await self.store.run_pipelined(
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

    # chat and moderation (slot {s:<session>}) ----------------------------------------

    async def chat(self, sid: str, user: str, data_head: bytes, words: str, has_link: bool,
                   rate_per_s: float, burst: int) -> tuple[int, bytes]:
        """Check every chat rule and publish the message; (cseq, the event JSON)."""
        k = self.keys
        cseq, event = await self.store.run_pipelined(
            "chat.lua", [*k.chat_lane(sid), k.moderation(sid), k.moderators(sid),
                         k.chat_rate(sid)],
            [self.chat_max, user, data_head, words, "1" if has_link else "0", rate_per_s,
             burst])
        return int(cseq), bytes(event)

    async def moderate(self, sid: str, caller: str, action: Moderation, target: str, value: str,
                       audit_max: int) -> int:
        """One moderation action (moderate.lua); the cseq of the event it published or 0."""
        k = self.keys
        return int(await self.store.run(
            "moderate.lua", [*k.chat_lane(sid), k.moderation(sid), k.moderators(sid),
                             k.audit(sid)],
            [self.chat_max, caller, action, target, value, audit_max]))

    async def set_moderators(self, sid: str, caller: str, users: list[str],
                             audit_max: int) -> int:
        k = self.keys
        return int(await self.store.run(
            "moderators_set.lua", [k.session(sid), k.moderators(sid), k.audit(sid)],
            [caller, audit_max, *users]))

    async def remind(self, sid: str, user: str, on: bool) -> bool:
        k = self.keys
        return bool(await self.store.run(
            "remind.lua", [k.session(sid), k.reminders(sid)], [user, "1" if on else "0"]))

    # products (slot {p:<product>}) --------------------------------------------------

    async def create_product(self, fields: list[Any], pid: str) -> bool:
        return bool(await self.store.run("product_create.lua", [self.keys.product(pid)], fields))

    async def patch_product(self, pid: str, price: int | None, stock: int | None,
                            commission_bps: int | None, batch: str = "",
                            hold_ms: int = 0) -> Patched:
        k = self.keys
        changed, now_price, now_stock, closed, offered, hold_until = await self.store.run(
            "product_patch.lua", [k.product(pid), k.deals(pid), k.waitlist(pid), k.holds(pid)],
            [_opt(price), _opt(stock), _opt(commission_bps), batch, hold_ms])
        return Patched(bool(changed), int(now_price), int(now_stock),
                       [orjson.dumps(d) for d in orjson.loads(closed)],
                       [str(u) for u in orjson.loads(offered)], int(hold_until))

    async def waitlist(self, pid: str, op: WaitlistOp, user: str, batch: str, hold_ms: int,
                       max_waiting: int, due_batch: str = "") -> list[Any]:
        """waitlist.lua's reply as it is (its header documents each op's shape)."""
        k = self.keys
        reply: list[Any] = await self.store.run(
            "waitlist.lua", [k.product(pid), k.waitlist(pid), k.holds(pid)],
            [op, user, batch, hold_ms, max_waiting, due_batch])
        return reply

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
            "reserve.lua",
            [k.product(pid), k.deals(pid), k.rates(pid), k.reservations(pid), k.holds(pid)],
            [reservation, buyer, qty, _opt(seen), mode, room, attributed, pid])
        return Reserved(orjson.loads(line), bytes(closed))

    async def settle_reservation(self, pid: str, reservation: str, op: str) -> str:
        k = self.keys
        return text(await self.store.run_pipelined(
            "reserve_settle.lua",
            [k.product(pid), k.deals(pid), k.reservations(pid), k.holds(pid)],
            [reservation, op]))

    async def refund_stock(self, pid: str, effect: str, qty: int) -> bool:
        return bool(await self.store.run_pipelined(
            "refund_stock.lua", [self.keys.product(pid), self.keys.product_applied(pid)],
            [effect, qty]))

    # vouchers (slot {v:<code>}) --------------------------------------------------------

    async def create_voucher(self, code: str, fields: list[Any]) -> bool:
        return bool(await self.store.run("voucher_create.lua", [self.keys.voucher(code)],
                                         [code, *fields]))

    async def reserve_voucher(self, code: str, reservation: str, buyer: str, discount: int,
                              room: str) -> str:
        k = self.keys
        return text(await self.store.run_pipelined(
            "voucher_reserve.lua", [k.voucher(code), k.voucher_uses(code)],
            [reservation, buyer, discount, room, code]))

    async def settle_voucher(self, code: str, reservation: str, op: str) -> str:
        k = self.keys
        return text(await self.store.run_pipelined(
            "voucher_settle.lua", [k.voucher(code), k.voucher_uses(code), k.voucher_log(code)],
            [reservation, op]))

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

    async def place_orders(self, orders: list[tuple[str, str, dict[str, Any], str]],
                           ) -> list[tuple[str, bytes, bytes] | ApiError]:
        """Whole one-line orders (order id, request fingerprint, plan, reserve mode) in one
        script (one Valkey, no cluster: the keys span hash tags), one after the other. Each
        order's (status 'new' | 'committed' | 'saga', order JSON, a deal the reserve closed
        at its ends_at or b""), or the ApiError it failed with (a call of one order fails
        as a whole on a Lua error)."""
        k = self.keys
        keys: list[str] = []
        args: list[Any] = self._context()
        for oid, fingerprint, plan, mode in orders:
            line = plan["lines"][0]
            room = plan.get("room") or line["session"] or ""
            pid, buyer = line["product"], plan["buyer"]
            creator = line.get("creator") or ""  # no creator: its ledger keys go unused
            keys += [*k.room(room), k.counters(room), k.order(oid),
                     k.orders_stream(order_bucket(oid)), k.product(pid), k.deals(pid),
                     k.rates(pid), k.reservations(pid), k.holds(pid), k.user_orders(buyer),
                     k.cart(buyer), k.touches(buyer), k.user_channel(buyer),
                     k.cart_version(buyer), k.ledger(creator), k.balance(creator)]
            args += [oid, fingerprint, _json(plan), mode]
        reply = await self.store.run_pipelined("order_place.lua", keys, args)
        out: list[tuple[str, bytes, bytes] | ApiError] = []
        for i in range(0, len(reply), 3):
            status = text(reply[i])
            if status == "error":
                out.append(translate(ResponseError(text(reply[i + 1]))))
            else:
                out.append((status, bytes(reply[i + 1]), bytes(reply[i + 2])))
        return out

    async def peek_orders(self, oids: list[str]) -> list[Any]:
        """Each order's (status, req_hash, json), in one call (on a cluster: one bucket)."""
        return list(await self.store.run_pipelined(
            "order_peek.lua", [self.keys.order(oid) for oid in oids], []))

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

    # auctions and giveaways (slot {s:<session>}; order_void in the order's bucket) -----

    async def open_auction(self, sid: str, aid: str, caller: str, product: str,
                           terms: dict[str, int], extend_ms: int) -> tuple[bytes, int]:
        k = self.keys
        data, seq = await self.store.run(
            "auction_open.lua", [*k.room(sid), k.auction(sid, aid), k.counters(sid)],
            [*self._context(), aid, caller, product, terms["start_price"], terms["increment"],
             terms["duration_ms"], terms["reserve_price"], terms["sudden_death"], extend_ms])
        return bytes(data), int(seq)

    async def bid(self, sid: str, aid: str, bidder: str, name: str, amount: int,
                  key: str) -> tuple[dict[str, Any], str, bool]:
        """(the answer, the previous top bidder or '', whether the bid is new)."""
        k = self.keys
        answer, previous, new = await self.store.run_pipelined(
            "auction_bid.lua", [*k.room(sid), k.auction(sid, aid), k.auction_bids(sid, aid)],
            [*self._context(), bidder, name, amount, key])
        return orjson.loads(answer), text(previous), bool(new)

    async def close_auction(self, sid: str, aid: str, phase: AuctionPhase,
                            outcome: AuctionOutcome | None = None,
                            order: str = "") -> tuple[str, dict[str, Any]]:
        k = self.keys
        state, auction = await self.store.run(
            "auction_close.lua", [*k.room(sid), k.auction(sid, aid), k.counters(sid)],
            [*self._context(), phase, outcome or "", order])
        return text(state), dict(orjson.loads(auction))

    async def void_order(self, oid: str, op: VoidOp = VoidOp.VOID) -> str:
        return text(await self.store.run("order_void.lua", [self.keys.order(oid)], [op]))

    async def open_giveaway(self, sid: str, gid: str, caller: str, product: str,
                            winners: int, ends_at: int, keyword: str) -> tuple[bytes, int]:
        k = self.keys
        data, seq = await self.store.run(
            "giveaway_open.lua", [*k.room(sid), k.giveaway(sid, gid), k.counters(sid)],
            [*self._context(), gid, caller, product, winners, ends_at, keyword])
        return bytes(data), int(seq)

    async def enter_giveaway(self, sid: str, gid: str, user: str, name: str,
                             joined_until: int) -> tuple[bool, int]:
        k = self.keys
        new, entries = await self.store.run_pipelined(
            "giveaway_enter.lua",
            [k.giveaway(sid, gid), k.giveaway_entrants(sid, gid), k.joined(sid)],
            [user, name, joined_until])
        return bool(new), int(entries)

    async def close_giveaway(self, sid: str, gid: str, phase: GiveawayPhase, arg: bytes | str,
                             names: bytes | str) -> tuple[str, dict[str, Any]]:
        k = self.keys
        state, giveaway = await self.store.run(
            "giveaway_close.lua",
            [*k.room(sid), k.giveaway(sid, gid), k.giveaway_entrants(sid, gid), k.joined(sid),
             k.counters(sid), k.moderators(sid)],
            [*self._context(), phase, arg, names])
        return text(state), dict(orjson.loads(giveaway))
