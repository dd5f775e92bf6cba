"""Purchases and refunds across hash slots: a saga of idempotent single-slot steps.

A purchase touches its order's bucket, each product's slot, the buyer's, each attributed
session's and each credited creator's. No script can span them on a cluster, so an order
is placed in steps, each one Lua script in one slot and each idempotent by an id fixed
before the first step (docs/architecture.md has the whole design and its failure cases):

  0. begin     (order bucket)  the order record, `pending` attempt n, with its plan;
                               the saga index gets the order, due at the takeover time
  1. reserve   (each product)  price/deal/stock checks, units held by `<oid>#<n>`;
                               then, with a voucher, one use held by `<oid>#<n>` in
                               the voucher's slot (its discount spread over the lines)
  2. commit    (order bucket)  all lines reserved: `committed`, the order JSON, the
                               bucket's orders stream entry — or `abort` -> `failed`
  3. effects   (everywhere)    reservations taken, buyer (orders list, cart, private
                               events), session counters and sold_out, creator ledger —
                               or, for a failed attempt, reservations released
  4. settle    (order bucket)  the saga index forgets the order

Commit and abort are both transitions of the one order record, so exactly one of them
decides an attempt; everything after is idempotent and can be redone by any node.
`Saga.sweep()` (every node, every tick) drives orders whose driver died: a pending
attempt past its takeover time is aborted and released, a failed one released, a
committed one's effects applied. Refunds are the same shape: `refund.lua` decides in the
order's bucket, then stock, session and ledger effects are applied once each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from server.cart.discounts import Terms, line_discounts, paid_commission
from server.cart.order_batches import OrderBatches
from server.clock import now_ms
from server.errors import ApiError, ErrorCode
from server.facts import ClosedDeal
from server.signals import Signal
from server.valkey.due import DueIndex
from server.valkey.keys import ORDER_BUCKETS, Keys, order_bucket
from server.valkey.scripts import Scripts
from server.valkey.store import Store, as_dict

log = logging.getLogger("livecart.saga")

@dataclass(frozen=True, slots=True)
class Placed:
    order: dict[str, Any]
    new: bool  # False when an idempotent retry returned the original order


@dataclass(frozen=True, slots=True)
class Timing:
    takeover_ms: int  # a pending attempt older than this is presumed abandoned
    redo_ms: int  # a committed order not settled after this has its effects redone


def reserve_mode(op: str) -> str:
    return {"buy_now": "deal", "checkout": "list", "external": "external",
            "auction": "fixed", "giveaway": "fixed"}[op]


class Saga:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts, timing: Timing, *,
                 deal_closed: Signal[ClosedDeal], cart_left: Signal[str],
                 released: Callable[[str], None]) -> None:
        self.store, self.keys, self.scripts, self.timing = store, keys, scripts, timing
        self.placing = OrderBatches(scripts)  # one-script orders, a tick's in one call
        # each deal a reservation closed at its ends_at (announced without waiting)
        self.deal_closed = deal_closed
        # a buyer whose checkout removed lines but left others (publish that cart)
        self.cart_left = cart_left
        # told each product whose units an undone attempt gave back (announce its stock)
        self.released = released
        self.due = DueIndex(store, [keys.saga(b) for b in range(ORDER_BUCKETS)], "saga step",
                            self._drive)

    def _deal_closed(self, plan: dict[str, Any], deal: bytes) -> None:
        self.deal_closed.post(ClosedDeal(plan.get("room") or "", deal, "its time is up"))

    # placing ------------------------------------------------------------------------

    async def place(self, oid: str, fingerprint: str, plan: dict[str, Any]) -> Placed:
        """Run steps 0-4 for one request (or join a concurrent duplicate of it). On one
        Valkey a one-line order is all of them in one script (`one_script`), shared with
        the other such orders of the loop tick (server/cart/order_batches.py)."""
        if self.one_script(plan):
            status, order, closed = await self.placing.place(
                oid, fingerprint, plan, reserve_mode(plan["op"]))
            if closed:
                self._deal_closed(plan, closed)
            if status != "saga":
                return Placed(orjson.loads(order), status == "new")
        for _ in range(3):
            begun = await self.scripts.begin_order(
                oid, fingerprint, orjson.dumps(plan), now_ms() + self.timing.takeover_ms)
            if begun.status == "committed":
                return Placed(orjson.loads(begun.body), False)
            if begun.status == "failed":  # a previous attempt is being undone: finish it
                await self._release(oid, begun.attempt, orjson.loads(begun.body))
                continue
            stored = orjson.loads(begun.body)
            try:
                return await self._attempt(oid, begun.attempt, stored)
            except _Abandoned:
                continue
        raise ApiError(ErrorCode.CONFLICT, "the order is being changed by another request; retry")

    def one_script(self, plan: dict[str, Any]) -> bool:
        """Can order_place.lua place this plan? Only on one Valkey (a cluster cannot run a
        script across slots), one line, no voucher, no total or cart to check, and one
        session at most (the room's) for the counters and the sold_out event."""
        if self.store.cluster or len(plan.get("lines") or ()) != 1 or plan.get("voucher") \
                or plan.get("total") is not None or plan.get("cart"):
            return False
        line = plan["lines"][0]
        room = plan.get("room") or line["session"] or ""
        sold_room = (plan.get("sold_out_rooms") or {}).get(line["product"]) or ""
        return (line["session"] or "") in ("", room) and sold_room in ("", room)

    async def _attempt(self, oid: str, attempt: int, plan: dict[str, Any]) -> Placed:
        rid = f"{oid}#{attempt}"
        mode = reserve_mode(plan["op"])
        results = await asyncio.gather(*(
            self.scripts.reserve(
                line["product"], rid, plan["buyer"], line["qty"], line.get("seen"), mode,
                plan.get("room") or "",
                line["session"] if line["attribution"] != "none" else "")
            for line in plan["lines"]), return_exceptions=True)
        for res in results:
            if not isinstance(res, BaseException) and res.closed_deal:
                self._deal_closed(plan, res.closed_deal)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._abort(oid, attempt, plan)
            if isinstance(failure, ApiError) and failure.details.get("aborted"):
                raise _Abandoned()
            raise failure
        lines = []
        sold_out: list[list[str]] = []
        for line, res in zip(plan["lines"], results, strict=True):
            assert not isinstance(res, BaseException)
            got = res.line
            lines.append({
                "product": got["product"], "qty": got["qty"], "unit_price": got["unit_price"],
                "amount": got["amount"], "discount": 0, "commission": got["commission"],
                "seller": got["seller"], "session": line["session"],
                "attribution": line["attribution"], "creator": line.get("creator") or "",
            })
            room = plan.get("sold_out_rooms", {}).get(got["product"])
            if got["sold_out"] and room:
                sold_out.append([room, got["product"]])
        head = {"buyer": plan["buyer"], "currency": plan["currency"], "source": plan["op"],
                "total": plan.get("total")}
        if plan.get("voucher"):
            await self._use_voucher(oid, attempt, plan, lines,
                                    [r.line.get("rate", 0) for r in results
                                     if not isinstance(r, BaseException)])
            head["voucher"] = plan["voucher"]["code"]
        if plan.get("external_id") is not None:
            head["external_id"] = plan["external_id"]
        try:
            new, order_json = await self.scripts.commit_order(
                oid, attempt, head, lines, now_ms() + self.timing.redo_ms, sold_out)
        except ApiError:
            await self._abort(oid, attempt, plan)
            raise
        if new:
            await self.apply_order(oid, attempt, plan, order_json, sold_out)
        return Placed(orjson.loads(order_json), new)

    async def _use_voucher(self, oid: str, attempt: int, plan: dict[str, Any],
                           lines: list[dict[str, Any]], rates: list[int]) -> None:
        """Step 1b: the voucher's discount over the reserved lines (server/cart/discounts.py),
        one use held in the voucher's slot, and each discounted line's commission on what
        is paid. Any failure aborts the attempt (its reservations and use are released)."""
        terms = Terms.from_plan(plan["voucher"])
        try:
            shares = line_discounts(terms, lines)
            await self.scripts.reserve_voucher(terms.code, f"{oid}#{attempt}", plan["buyer"],
                                               sum(shares), plan.get("voucher_room") or "")
        except ApiError as exc:
            await self._abort(oid, attempt, plan)
            if exc.details.get("aborted"):
                raise _Abandoned() from exc
            raise
        for line, share, rate in zip(lines, shares, rates, strict=True):
            if share:
                line["discount"] = share
                line["commission"] = paid_commission(line["amount"] - share, int(rate))

    async def _abort(self, oid: str, attempt: int, plan: dict[str, Any]) -> None:
        status = await self.scripts.order_step(oid, "abort", attempt)
        if status == "failed":
            await self._release(oid, attempt, plan)

    async def _release(self, oid: str, attempt: int, plan: dict[str, Any]) -> None:
        rid = f"{oid}#{attempt}"
        releases = [self.scripts.settle_reservation(line["product"], rid, "release")
                    for line in plan["lines"]]
        if plan.get("voucher"):  # the use (or a tombstone) goes with the units
            releases.append(self.scripts.settle_voucher(plan["voucher"]["code"], rid, "release"))
        states = await asyncio.gather(*releases)
        await self.scripts.order_step(oid, "released", attempt)
        for line, state in zip(plan["lines"], states[:len(plan["lines"])], strict=True):
            if state == "returned":
                self.released(line["product"])

    # effects of a committed order ---------------------------------------------------

    async def apply_order(self, oid: str, attempt: int, plan: dict[str, Any],
                          order_json: bytes, sold_out: list[list[str]]) -> None:
        """Step 3 and 4: every effect once (each step is idempotent), then settle."""
        order = orjson.loads(order_json)
        rid = f"{oid}#{attempt}"
        steps: list[Any] = [self.scripts.settle_reservation(line["product"], rid, "take")
                            for line in plan["lines"]]
        if plan.get("voucher"):
            steps.append(self.scripts.settle_voucher(plan["voucher"]["code"], rid, "take"))
        touch = plan.get("touch")
        buyer_step = self.scripts.buyer_effects(
            plan["buyer"], oid, order_json, plan.get("cart"),
            (touch[0], touch[1]) if touch else None)
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        by_creator: dict[str, list[dict[str, Any]]] = defaultdict(list)
        creators = [line.get("creator") or "" for line in plan["lines"]]
        for i, line in enumerate(order["lines"]):
            if line["attribution"] == "none" or line["session"] is None:
                continue
            discount = int(line.get("discount", 0))
            by_session[line["session"]].append({
                "product": line["product"], "qty": line["qty"],
                "amount": line["amount"] - discount, "discount": discount,
                "commission": line["commission"], "attribution": line["attribution"]})
            if line["commission"] > 0 and creators[i]:
                by_creator[creators[i]].append({
                    "order": oid, "line": i, "product": line["product"],
                    "session": line["session"], "qty": line["qty"],
                    "amount": line["commission"], "kind": "credit"})
        sold_by_room: dict[str, list[str]] = defaultdict(list)
        for room, product in sold_out:
            sold_by_room[room].append(product)
        for sid in sorted(set(by_session) | set(sold_by_room)):
            steps.append(self.scripts.session_effects(
                sid, f"o:{oid}", "order", by_session.get(sid, []), sold_by_room.get(sid, [])))
        for creator, entries in sorted(by_creator.items()):
            steps.append(self.scripts.ledger_apply(creator, f"o:{oid}", entries))
        left_version, *_ = await asyncio.gather(buyer_step, *steps)
        if left_version:
            self.cart_left.post(plan["buyer"])
        await self.scripts.order_step(oid, "settled", attempt)

    # refunds -------------------------------------------------------------------------

    async def refund(self, oid: str, refund_id: str, lines: bytes, caller: str,
                     admin: bool) -> tuple[dict[str, Any], bool]:
        new, result, effects = await self.scripts.refund(
            oid, refund_id, lines, caller, admin, now_ms() + self.timing.redo_ms)
        if new:
            await self.apply_refund(oid, refund_id, orjson.loads(effects))
        return orjson.loads(result), new

    async def apply_refund(self, oid: str, refund_id: str, effects: dict[str, Any]) -> None:
        effect = f"r:{oid}:{refund_id}"
        steps: list[Any] = []
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        by_creator: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in effects["lines"]:
            if effects["in_stream"]:
                steps.append(self.scripts.refund_stock(line["product"], effect, line["qty"]))
            if line["session"] is None:
                continue
            by_session[line["session"]].append(
                {k: line[k] for k in ("product", "amount", "clawback")})
            if line["clawback"] > 0 and line["creator"]:
                by_creator[line["creator"]].append({
                    "order": oid, "line": line["line"], "product": line["product"],
                    "session": line["session"], "qty": line["qty"],
                    "amount": -line["clawback"], "kind": "clawback"})
        for sid, session_lines in sorted(by_session.items()):
            steps.append(self.scripts.session_effects(sid, effect, "refund", session_lines, []))
        for creator, entries in sorted(by_creator.items()):
            steps.append(self.scripts.ledger_apply(creator, effect, entries))
        await asyncio.gather(*steps)
        await self.store.call("ZREM", self.keys.saga(order_bucket(oid)), f"r:{oid}:{refund_id}")

    # the sweeper ---------------------------------------------------------------------

    async def sweep(self) -> int:
        """Drive every saga entry that is due, in every bucket. Returns how many."""
        return await self.due.sweep()

    async def _drive(self, member: str) -> None:
        if member.startswith("r:"):
            _, oid, refund_id = member.split(":", 2)
            raw = await self.store.call("HGET", self.keys.refunds(oid), f"e:{refund_id}")
            if raw is None:
                await self.store.call("ZREM", self.keys.saga(order_bucket(oid)), member)
                return
            await self.apply_refund(oid, refund_id, orjson.loads(raw))
            return
        oid = member[2:]
        row = as_dict(await self.store.call("HGETALL", self.keys.order(oid)))
        status = row.get("status", "")
        attempt = int(row.get("attempt", "0") or 0)
        plan = orjson.loads(row["plan"]) if row.get("plan") else None
        if status == "pending":
            status = await self.scripts.order_step(oid, "abort", attempt)
            if status == "committed":  # its driver committed it just now
                row = as_dict(await self.store.call("HGETALL", self.keys.order(oid)))
        if status == "failed" and plan is not None:
            await self._release(oid, attempt, plan)
        elif status == "committed" and plan is not None:
            sold_out = orjson.loads(row.get("sold_out") or "[]")
            await self.apply_order(oid, attempt, plan, row["json"].encode(), sold_out)
        elif status in ("", "released"):
            await self.scripts.order_step(oid, "settled", attempt)


class _Abandoned(Exception):
    """This attempt's reservations were released by a sweeper: start a new attempt."""

