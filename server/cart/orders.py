"""Orders: buy-now from the stream, cart checkout, and external (webhook) orders.

Python decides each line's attribution (pure rules in counters/attribution.py, from the
buyer's touches and the sessions' state) and writes the plan; `saga.py` places it in
single-slot Lua steps (reserve per product, commit in the order's bucket, then the
effects), each idempotent by the order id. The order id is derived from the buyer and
the idempotency key, so a retry — even after a node or shard crash — finds the same order.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from server import validate as v
from server.cart.lanes import Lanes
from server.cart.peeks import Peeks
from server.cart.saga import Placed, Saga
from server.cart.vouchers import Vouchers, terms_of
from server.clock import now_ms
from server.counters.attribution import Attribution, Touch, attribute
from server.errors import ApiError, ErrorCode, bad_request, forbidden, not_found
from server.facts import SessionFacts
from server.settings import Settings
from server.valkey.keys import ORDER_ID_RE, Keys
from server.valkey.ops import VoidOp
from server.valkey.scripts import Peeked
from server.valkey.store import Store, as_dict, text

__all__ = ["Orders", "Placed", "check_external_lines", "fingerprint", "order_id",
           "prize_order_id"]


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def order_id(owner: str, key: str) -> str:
    """The order a (buyer, idempotency key) — or (seller, `ext:` external id) — names."""
    return "ord_" + hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:20]


def prize_order_id(kind: str, key: str) -> str:
    """The one order an auction (`auction`, its id) or a giveaway winner (`giveaway`,
    `<giveaway id>:<user>`) can ever have: a re-run of its close finds the same order.
    The owner part has a `/`, which no user id has, so no buyer's key can name it."""
    return order_id(f"{kind}/", key)


def _line(product: str, qty: int, seen: int | None, a: Attribution) -> dict[str, Any]:
    return {"product": product, "qty": qty, "seen": seen, "session": a.session,
            "attribution": a.kind, "creator": a.creator}


class Orders:
    def __init__(self, store: Store, keys: Keys, saga: Saga, settings: Settings) -> None:
        self.store, self.keys, self.saga, self.settings = store, keys, saga, settings
        self.vouchers = Vouchers(store, keys, saga.scripts)
        self.sold_out_answers = 0  # buy_now answered from the node's sold-out facts
        self.lanes = Lanes(settings.buy_now_lane)
        self.peeks = Peeks(store, keys, saga.scripts)
        # orders this node is placing now (by id): a late buyer with the same key waits
        # for that outcome rather than answer from an older read
        self._placing: dict[str, asyncio.Event] = {}

    # attribution inputs ---------------------------------------------------------

    async def _facts(self, sids: Iterable[str]) -> dict[str, SessionFacts]:
        ids = sorted(set(sids))
        if not ids:
            return {}
        rows = await self.store.batch(
            [("HMGET", self.keys.session(s), "id", "creator", "kind", "status") for s in ids])
        facts = {}
        for row in rows:
            if row and row[0] is not None:
                sid, creator, kind, status = (text(x) for x in row)
                facts[sid] = SessionFacts(sid, creator, kind, status)
        return facts

    async def _attribute(self, buyer: str, raw_touches: dict[str, Any], *,
                         joined: str | None) -> dict[str, Attribution]:
        now = now_ms()
        touches = {pid: Touch.parse(text(value)) if value is not None else None
                   for pid, value in raw_touches.items()}
        facts = await self._facts(t.session for t in touches.values() if t is not None)
        window = self.settings.attribution_window_s * 1000
        return {
            pid: attribute(buyer, t, facts.get(t.session) if t else None, now_ms=now,
                           window_ms=window, joined=joined)
            for pid, t in touches.items()
        }

    async def attribution_for(self, buyer: str, products: list[str], *,
                              joined: str | None) -> dict[str, Attribution]:
        """Each product's attribution from the buyer's stored touches."""
        raw = (await self.store.call("HMGET", self.keys.touches(buyer), *products)
               if products else [])
        return await self._attribute(buyer, dict(zip(products, raw, strict=True)),
                                     joined=joined)

    # placing orders ---------------------------------------------------------------

    @staticmethod
    def _replayed(peeked: Peeked) -> Placed | None:
        """The idempotency rule's answer (order_peek.lua) as this request's outcome when it
        is final: `replay` -> the committed order; `conflict` -> its error. None for the
        answers that place (or join) an attempt: `new`, `release`, `join`."""
        if peeked.error is not None:
            raise peeked.error
        if peeked.answer == "replay":
            return Placed(orjson.loads(peeked.order), False)
        return None

    def _plan(self, op: str, buyer: str, lines: list[dict[str, Any]],
              **extra: Any) -> dict[str, Any]:
        return {"op": op, "buyer": buyer, "currency": self.settings.currency,
                "lines": lines, **extra}

    async def _voucher(self, code: str | None, room: str | None, oid: str,
                       fp: str) -> dict[str, Any]:
        """The plan's voucher part: its terms (read once; they never change) and the
        session the order is placed in (a voucher for one session checks it). A voucher
        whose uses are all used or held answers `voucher_used_up` from that read — as
        voucher_reserve.lua would — unless this key already bought (a retry: its order)
        or is being placed (a concurrent duplicate: it joins that attempt)."""
        if code is None:
            return {}
        found = await self.vouchers.find(code)
        if found is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"voucher {code!r} does not exist",
                           voucher=code, field="voucher")
        if int(found["used"]) + int(found["held"]) >= int(found["total_uses"]):
            peeked = await self.peeks.order(oid, fp)
            replayed = self._replayed(peeked)
            if replayed is not None:
                raise _Replayed(replayed)
            if peeked.answer != "join":  # not a duplicate in flight
                raise ApiError(ErrorCode.VOUCHER_USED_UP, "the voucher has no uses left",
                               voucher=code)
        return {"voucher": terms_of(found).to_plan(), "voucher_room": room or ""}

    async def buy_now(self, buyer: str, room: SessionFacts, product: str, qty: int, key: str,
                      price: int | None, *,
                      known_sold_out: Callable[[], bool] = lambda: False,
                      voucher: str | None = None, lane_width: int | None = None) -> Placed:
        """Buy from the stream: the buy itself is the last touch, so the attribution needs
        no store read. Attempts wait their turn in the (room, product) lane; when the node
        has heard the product sell out in this room (`known_sold_out()`, asked on arrival
        and when the turn comes), the answer is `sold_out` with no script run unless the key
        already bought or the buyer holds a unit a restock kept for them (two reads, shared
        with the tick's other reads) — so a flash-sale storm costs the store about two reads
        per late buyer. `lane_width`: the units left in the room's open deal, as the node
        last heard — the lane lets that many in at once (at least its own width), so a
        deal of a few hundred units sells in one wave of attempts, not several."""
        if room.status == "scheduled":
            raise ApiError(ErrorCode.NOT_LIVE, "session has not started")
        fp = fingerprint({"op": "buy_now", "product": product, "qty": qty, "price": price,
                          **({"voucher": voucher} if voucher else {})})
        oid = order_id(buyer, key)
        lane = _lane(room.id, product)
        # a caller that will queue asks its two questions now: when the product sells out
        # the whole queue is answered at once, without a round trip then
        asked = (self.peeks.holding(product, buyer), self.peeks.order(oid, fp)) \
            if known_sold_out() or self.lanes.full(lane, lane_width) else None
        if await self.lanes.enter(lane, known_sold_out, lane_width):
            for question in asked or ():
                question.cancel()
            try:
                return await self._place_buy_now(buyer, room, product, qty, price, voucher,
                                                 oid, fp)
            finally:
                self.lanes.leave(lane, known_sold_out)
        held, asked_order = asked or (self.peeks.holding(product, buyer),
                                      self.peeks.order(oid, fp))
        holding, peeked = await held, await asked_order
        placing = self._placing.get(oid)
        if placing is not None:  # the same key is being bought here: its outcome decides
            await placing.wait()
            peeked = await self.peeks.order(oid, fp)
        # a restock kept a unit for this buyer, or this request's attempt is in flight
        # (the rule's `join`, e.g. from another node): the scripts decide
        if holding or peeked.answer == "join":
            return await self._place_buy_now(buyer, room, product, qty, price, voucher, oid, fp)
        self.sold_out_answers += 1
        replayed = self._replayed(peeked)
        if replayed is None:  # `new` or `release`: an attempt now would find it sold out
            raise ApiError(ErrorCode.SOLD_OUT, "sold out", product=product)
        return replayed

    def sold_out_heard(self, room: str, product: str) -> None:
        """The node heard `product` sell out in `room`: its buy_now queue is answered now."""
        self.lanes.let_go(_lane(room, product))

    async def _place_buy_now(self, buyer: str, room: SessionFacts, product: str, qty: int,
                             price: int | None, voucher: str | None, oid: str,
                             fp: str) -> Placed:
        now = now_ms()
        a = attribute(buyer, Touch(room.id, now), room, now_ms=now,
                      window_ms=self.settings.attribution_window_s * 1000, joined=room.id)
        placing = self._placing.setdefault(oid, asyncio.Event())
        try:
            try:
                part = await self._voucher(voucher, room.id, oid, fp)
            except _Replayed as replayed:
                return replayed.placed
            return await self.saga.place(oid, fp, self._plan(
                "buy_now", buyer, [_line(product, qty, price, a)], room=room.id, total=None,
                touch=[product, room.id], sold_out_rooms={product: room.id},
                **part))
        finally:
            if self._placing.get(oid) is placing:
                del self._placing[oid]
            placing.set()

    async def checkout(self, buyer: str, room: str | None, key: str, total: int | None,
                       voucher: str | None = None) -> Placed:
        """The cart as it is now, its lines and version read at one instant: the order
        consumes that version (cart_claim.lua, the saga's step 0b), so two checkouts of one
        cart make one order, whatever their keys — the other answers `conflict`."""
        cart_row, version, touches_row = await self.saga.scripts.read_cart(buyer, touches=True)
        cart = as_dict(cart_row)
        fp = fingerprint({"op": "checkout", "total": total,
                          **({"voucher": voucher} if voucher else {})})
        oid = order_id(buyer, key)
        if not cart:  # a retry after the order emptied the cart finds the order
            peeked = await self.peeks.order(oid, fp)
            replayed = self._replayed(peeked)
            if replayed is not None:
                return replayed
            if peeked.answer == "join":  # its attempt is in flight: no request to drive it
                raise ApiError(ErrorCode.CONFLICT,
                               "this key's checkout is in flight; retry with the same key")
            raise bad_request("the cart is empty")
        touches = as_dict(touches_row)
        attribution = await self._attribute(
            buyer, {pid: touches.get(pid) for pid in sorted(cart)}, joined=room)
        lines, rooms = [], {}
        for pid in sorted(cart):
            line = orjson.loads(cart[pid])
            lines.append(_line(pid, int(line["qty"]), None, attribution[pid]))
            rooms[pid] = line.get("session") or ""
        try:
            part = await self._voucher(voucher, room, oid, fp)
        except _Replayed as replayed:
            return replayed.placed
        return await self.saga.place(oid, fp, self._plan(
            "checkout", buyer, lines, room="", total=total, cart=cart, cart_v=version,
            sold_out_rooms=rooms, **part))

    async def external(self, seller: str, external_id: str, buyer: str,
                       lines: list[dict[str, int | str]]) -> Placed:
        fp = fingerprint({"op": "external", "buyer": buyer, "lines": lines})
        products = sorted({str(line["product"]) for line in lines})
        attribution = await self.attribution_for(buyer, products, joined=None)
        return await self.saga.place(order_id(seller, f"ext:{external_id}"), fp, self._plan(
            "external", buyer,
            [_line(str(line["product"]), int(line["qty"]), int(line["unit_price"]),
                   attribution[str(line["product"])]) for line in lines],
            room="", total=None, external_id=external_id))

    async def prize(self, kind: str, key: str, buyer: str, room: SessionFacts, product: str,
                    price: int) -> Placed | None:
        """The order of a prize — an auction's winner (`kind` auction) or a giveaway's
        (`giveaway`, price 0): one unit at `price` from the product's stock (deals
        ignored), attributed `direct` to the session, commission on `price`. None when
        it can never be placed (the stock is gone: the order id is voided first, so no
        later re-run can place it either). `conflict` when another node's attempt is in
        flight: ask again later."""
        oid = prize_order_id(kind, key)
        a = Attribution("direct", room.id, room.creator)
        try:
            return await self.saga.place(
                oid, fingerprint({"op": kind, "product": product, "price": price}),
                self._plan(kind, buyer, [_line(product, 1, price, a)], room=room.id,
                           total=None, sold_out_rooms={product: room.id}))
        except ApiError as exc:
            stock_gone = exc.code in (ErrorCode.SOLD_OUT, ErrorCode.OUT_OF_STOCK,
                                      ErrorCode.NOT_FOUND)
            if not stock_gone and exc.code is not ErrorCode.CONFLICT:
                raise
            op = VoidOp.VOID if stock_gone else VoidOp.PEEK
            state = await self.saga.scripts.void_order(oid, op)
            if state == "void":
                return None
            if state == "committed":
                return await self._committed_any(oid)
            raise ApiError(ErrorCode.CONFLICT, "the prize order is in flight; retry") from exc

    async def _committed_any(self, oid: str) -> Placed:
        order = await self.store.call("HGET", self.keys.order(oid), "json")
        return Placed(orjson.loads(order), False)

    # reading ------------------------------------------------------------------------

    async def find(self, oid: str) -> tuple[dict[str, Any], list[str]] | None:
        if not ORDER_ID_RE.match(oid):
            return None
        row = as_dict(await self.store.call("HGETALL", self.keys.order(oid)))
        if row.get("status") != "committed":
            return None
        return orjson.loads(row["json"]), list(orjson.loads(row.get("sellers", "[]")))

    async def get_for(self, oid: str, caller: str, role: str) -> dict[str, Any]:
        found = await self.find(oid)
        if found is None:
            raise not_found("order", oid)
        order, sellers = found
        if role != "admin" and caller != order["buyer"] and caller not in sellers:
            raise forbidden("only the buyer, a seller in the order or an admin can read it")
        return order


def _lane(room: str, product: str) -> tuple[str, str]:
    return (room, product)


class _Replayed(Exception):
    """The request's key already bought: its order is the answer."""

    def __init__(self, placed: Placed) -> None:
        super().__init__("replayed")
        self.placed = placed


def check_external_lines(body_lines: Any) -> list[dict[str, int | str]]:
    if not isinstance(body_lines, list) or not body_lines or len(body_lines) > 100:
        raise bad_request("`lines` must be a non-empty list (at most 100)", field="lines")
    out: list[dict[str, int | str]] = []
    seen: set[str] = set()
    for raw in body_lines:
        line = v.obj(raw, "a line")
        v.only(line, {"product", "qty", "unit_price"}, "a line")
        pid = v.req_ident(line, "product")
        if pid in seen:
            raise ApiError(ErrorCode.BAD_REQUEST, f"product {pid!r} appears twice", field="lines")
        seen.add(pid)
        out.append({"product": pid, "qty": v.req_int(line, "qty", lo=1, hi=10_000),
                    "unit_price": v.req_int(line, "unit_price", lo=0, hi=v.MAX_PRICE)})
    return out
