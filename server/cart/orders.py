"""Orders: buy-now from the stream, cart checkout, and external (webhook) orders.

Python decides each line's attribution (pure rules in counters/attribution.py, from the
buyer's touches and the sessions' state); one Lua script (purchase.lua) then does every
money change at once: idempotency, price/stock/deal checks, stock, the order, session
counters, ledger credits, the cart, `sold_out` events and the `orders` stream entry.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from server import validate as v
from server.counters.attribution import Attribution, SessionFacts, Touch, attribute
from server.errors import ApiError, ErrorCode, bad_request, forbidden, not_found
from server.keys import Keys
from server.rooms.sessions import Sessions
from server.settings import Settings
from server.store import Store, as_dict, text


@dataclass(frozen=True, slots=True)
class Placed:
    order: dict[str, Any]
    new: bool  # False when an idempotent retry returned the original order


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class Orders:
    def __init__(self, store: Store, keys: Keys, sessions: Sessions, settings: Settings) -> None:
        self.store, self.keys, self.sessions, self.settings = store, keys, sessions, settings

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

    async def attribution_for(self, buyer: str, products: list[str], *,
                              joined: str | None) -> dict[str, Attribution]:
        """Each product's attribution from the buyer's stored touches."""
        now = int(time.time() * 1000)
        raw = (await self.store.call("HMGET", self.keys.touches(buyer), *products)
               if products else [])
        touches: dict[str, Touch | None] = {}
        for pid, value in zip(products, raw, strict=True):
            touches[pid] = Touch.parse(text(value)) if value is not None else None
        facts = await self._facts(t.session for t in touches.values() if t is not None)
        window = self.settings.attribution_window_s * 1000
        return {
            pid: attribute(buyer, t, facts.get(t.session) if t else None, now_ms=now,
                           window_ms=window, joined=joined)
            for pid, t in touches.items()
        }

    # placing orders ---------------------------------------------------------------

    async def _place(self, idem_key: str, request: dict[str, Any]) -> Placed:
        request = {
            **request, "order_id": f"ord_{secrets.token_hex(8)}",
            "currency": self.settings.currency, "idem_ttl_s": self.settings.idempotency_ttl_s,
        }
        _, args = self.sessions.context()
        status, order_json = await self.store.run_pipelined(
            "purchase.lua", [idem_key], [*args, orjson.dumps(request)])
        return Placed(orjson.loads(order_json), text(status) == "new")

    async def buy_now(self, buyer: str, room: SessionFacts, product: str, qty: int, key: str,
                      price: int | None) -> Placed:
        """Buy from the stream: the buy itself is the last touch, so the attribution needs
        no store read (one round trip in all: purchase.lua)."""
        now = int(time.time() * 1000)
        attribution = {product: attribute(
            buyer, Touch(room.id, now), room, now_ms=now,
            window_ms=self.settings.attribution_window_s * 1000, joined=room.id)}
        fp = fingerprint({"op": "buy_now", "product": product, "qty": qty, "price": price})
        return await self._place(self.keys.idempotency(buyer, key), {
            "op": "buy_now", "buyer": buyer, "room": room.id, "req_hash": fp, "total": None,
            "lines": [{"product": product, "qty": qty, "price": price}],
            "attribution": {p: a.to_wire() for p, a in attribution.items()}, "touch": product,
        })

    async def checkout(self, buyer: str, room: str | None, key: str, total: int | None) -> Placed:
        cart = as_dict(await self.store.call("HGETALL", self.keys.cart(buyer)))
        fp = fingerprint({"op": "checkout", "total": total})
        attribution = await self.attribution_for(buyer, sorted(cart), joined=room)
        return await self._place(self.keys.idempotency(buyer, key), {
            "op": "checkout", "buyer": buyer, "room": "", "req_hash": fp, "total": total,
            "lines": None, "attribution": {p: a.to_wire() for p, a in attribution.items()},
            "touch": None,
        })

    async def external(self, seller: str, external_id: str, buyer: str,
                       lines: list[dict[str, int | str]]) -> Placed:
        fp = fingerprint({"op": "external", "buyer": buyer, "lines": lines})
        products = sorted({str(line["product"]) for line in lines})
        attribution = await self.attribution_for(buyer, products, joined=None)
        return await self._place(self.keys.idempotency(seller, f"ext:{external_id}"), {
            "op": "external", "buyer": buyer, "room": "", "req_hash": fp, "total": None,
            "external_id": external_id,
            "lines": [{"product": line["product"], "qty": line["qty"], "price": line["unit_price"]}
                      for line in lines],
            "attribution": {p: a.to_wire() for p, a in attribution.items()}, "touch": None,
        })

    # reading ------------------------------------------------------------------------

    async def find(self, oid: str) -> tuple[dict[str, Any], list[str]] | None:
        row = as_dict(await self.store.call("HGETALL", self.keys.order(oid)))
        if not row:
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
                    "unit_price": v.req_int(line, "unit_price", lo=0, hi=100_000_000)})
    return out
