"""The scripts of the money path — products, deals, reservations, vouchers, carts, orders,
refunds, ledgers — one typed function each (the rest: server/valkey/scripts.py, which
builds on this class). Every call passes keys of one hash tag only."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import ResponseError

from server.errors import ApiError
from server.valkey.keys import Keys, order_bucket
from server.valkey.ops import (
    CartOp,
    OrderStep,
    ReserveMode,
    Settle,
    WaitlistOp,
)
from server.valkey.store import Store, text, translate


def as_json(value: Any) -> bytes:
    """A JSON argument."""
    return orjson.dumps(value)


def or_empty(value: int | None) -> str | int:
    """An optional argument: '' stands for None in every script."""
    return "" if value is None else value


# order_place.lua's strides: each order's keys and arguments (the script's header and its
# KEYS_PER_ORDER, ARGS_PER_ORDER say the same; tests/test_script_ops.py checks)
ORDER_PLACE_KEYS = 18
ORDER_PLACE_ARGS = 4


def new_epoch() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class Begun:
    """What order_begin.lua found: 'new' | 'pending' | 'failed' | 'committed'."""

    status: str
    attempt: int
    body: bytes  # the plan (JSON), or the order JSON when committed


@dataclass(frozen=True, slots=True)
class Peeked:
    """The idempotency rule's answer to a request for an order (order_peek.lua)."""

    answer: str  # 'new' | 'join' | 'release' | 'replay' | 'conflict' (lib/idempotency.lua)
    order: bytes  # the order JSON for 'replay', else b""
    error: ApiError | None  # the rule's error for 'conflict'


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

class MoneyScripts:
    def __init__(self, store: Store, keys: Keys, history_max_events: int,
                 history_max_age_ms: int, chat_history_max: int = 500) -> None:
        self.store, self.keys = store, keys
        self.history = (history_max_events, history_max_age_ms)
        self.chat_max = chat_history_max

    def _context(self) -> list[Any]:
        return [*self.history, new_epoch()]

    # products (slot {p:<product>}) --------------------------------------------------

    async def create_product(self, fields: list[Any], pid: str) -> bool:
        return bool(await self.store.run("product_create.lua", [self.keys.product(pid)], fields))

    async def patch_product(self, pid: str, price: int | None, stock: int | None,
                            commission_bps: int | None, batch: str = "",
                            hold_ms: int = 0) -> Patched:
        k = self.keys
        changed, now_price, now_stock, closed, offered, hold_until = await self.store.run(
            "product_patch.lua", [k.product(pid), k.deals(pid), k.waitlist(pid), k.holds(pid)],
            [or_empty(price), or_empty(stock), or_empty(commission_bps), batch, hold_ms])
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
                      seen: int | None, mode: ReserveMode, room: str,
                      attributed: str) -> Reserved:
        k = self.keys
        line, closed = await self.store.run_pipelined(
            "reserve.lua",
            [k.product(pid), k.deals(pid), k.rates(pid), k.reservations(pid), k.holds(pid)],
            [reservation, buyer, qty, or_empty(seen), mode, room, attributed, pid])
        return Reserved(orjson.loads(line), bytes(closed))

    async def settle_reservation(self, pid: str, reservation: str, op: Settle) -> str:
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

    async def settle_voucher(self, code: str, reservation: str, op: Settle) -> str:
        k = self.keys
        return text(await self.store.run_pipelined(
            "voucher_settle.lua", [k.voucher(code), k.voucher_uses(code), k.voucher_log(code)],
            [reservation, op]))

    # users (slot {u:<user>}) ------------------------------------------------------------

    async def update_cart(self, buyer: str, op: CartOp, product: str, qty: int, session: str,
                          max_qty: int, stock: int | None) -> tuple[Any, bool, int]:
        """(the cart as a flat list, whether the line grew, the cart's new version)."""
        k = self.keys
        flat, grew, version = await self.store.run(
            "cart_update.lua", [k.cart(buyer), k.touches(buyer), k.cart_version(buyer)],
            [op, product, qty, session, max_qty, or_empty(stock)])
        return flat, bool(grew), int(version)

    async def touch(self, buyer: str, product: str, session: str) -> None:
        await self.store.run_pipelined("touch.lua", [self.keys.touches(buyer)],
                                       [product, session])

    async def read_cart(self, buyer: str, *, touches: bool = False) -> tuple[Any, int, Any]:
        """(the cart as a flat list, its version, the touches as a flat list — empty unless
        asked for), read at one instant."""
        k = self.keys
        flat, version, touched = await self.store.run_pipelined(
            "cart_read.lua",
            [k.cart(buyer), k.cart_version(buyer), *([k.touches(buyer)] if touches else [])],
            [])
        return flat, int(version), touched

    async def claim_cart(self, buyer: str, claim: str, version: int) -> str:
        """A checkout attempt's claim on the cart at the version it read: 'held' (or
        'taken' for a duplicate of an attempt whose order committed); `conflict` when the
        cart changed since or another checkout holds it."""
        k = self.keys
        return text(await self.store.run_pipelined(
            "cart_claim.lua", [k.cart_version(buyer), k.cart_claims(buyer)], [claim, version]))

    async def release_cart(self, buyer: str, claim: str) -> str:
        """A failed attempt's claim given back: 'released' ('taken' if its order committed)."""
        return text(await self.store.run_pipelined(
            "cart_release.lua", [self.keys.cart_claims(buyer)], [claim]))

    async def buyer_effects(self, buyer: str, oid: str, order_json: bytes,
                            cart_lines: dict[str, str] | None,
                            touch: tuple[str, str] | None, claim: str = "") -> int:
        """The cart's version when this left a changed, non-empty cart (else 0). `claim`:
        the checkout's claim on the cart (cart_claim.lua), taken here; '' for none."""
        k = self.keys
        _, version = await self.store.run_pipelined(
            "buyer_effects.lua",
            [k.user_applied(buyer), k.user_orders(buyer), k.cart(buyer), k.touches(buyer),
             k.user_channel(buyer), k.cart_version(buyer), k.cart_claims(buyer)],
            [f"o:{oid}", oid, order_json, "" if cart_lines is None else as_json(cart_lines),
             touch[0] if touch else "", touch[1] if touch else "", claim])
        return int(version)

    async def ledger_apply(self, creator: str, effect: str,
                           entries: list[dict[str, Any]]) -> bool:
        k = self.keys
        return bool(await self.store.run_pipelined(
            "ledger_apply.lua", [k.user_applied(creator), k.ledger(creator), k.balance(creator)],
            [effect, as_json(entries)]))

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
            [oid, attempt, as_json(head), as_json(lines), redo_at, as_json(sold_out)])
        return text(status) == "new", bytes(order)

    async def place_orders(self, orders: list[tuple[str, str, dict[str, Any], ReserveMode]],
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
            mine = [*k.room(room), k.counters(room), k.order(oid),
                    k.orders_stream(order_bucket(oid)), k.product(pid), k.deals(pid),
                    k.rates(pid), k.reservations(pid), k.holds(pid), k.user_orders(buyer),
                    k.cart(buyer), k.touches(buyer), k.user_channel(buyer),
                    k.cart_version(buyer), k.ledger(creator), k.balance(creator)]
            assert len(mine) == ORDER_PLACE_KEYS
            keys += mine
            args += [oid, fingerprint, as_json(plan), mode]  # ORDER_PLACE_ARGS
        reply = await self.store.run_pipelined("order_place.lua", keys, args)
        out: list[tuple[str, bytes, bytes] | ApiError] = []
        for i in range(0, len(reply), 3):
            status = text(reply[i])
            if status == "error":
                out.append(translate(ResponseError(text(reply[i + 1]))))
            else:
                out.append((status, bytes(reply[i + 1]), bytes(reply[i + 2])))
        return out

    async def peek_orders(self, oids: list[str], fingerprints: list[str]) -> list[Peeked]:
        """What the idempotency rule answers each (order id, request fingerprint), in one
        call (on a cluster: one bucket)."""
        reply = await self.store.run_pipelined(
            "order_peek.lua", [self.keys.order(oid) for oid in oids], fingerprints)
        return [Peeked(text(answer), bytes(body) if text(answer) == "replay" else b"",
                       translate(ResponseError(text(body))) if text(answer) == "conflict"
                       else None) for answer, body in reply]

    async def order_step(self, oid: str, op: OrderStep, attempt: int) -> str:
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
