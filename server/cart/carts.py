"""Carts: one per buyer, kept in Valkey, shared by all the buyer's connections.

A line remembers the session (and time) it was added from: it is a touch on that product
in that session. Every change is published on the buyer's private channel so every
connection of that buyer, on any node, gets the new cart.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.cart.products import Products
from server.valkey.keys import Keys
from server.valkey.ops import CartOp
from server.valkey.scripts import Scripts
from server.valkey.store import Store, as_dict

MAX_QTY = 99


class Carts:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts, products: Products) -> None:
        self.store, self.keys, self.scripts, self.products = store, keys, scripts, products

    async def view(self, flat: Any, version: int) -> dict[str, Any]:
        """`{lines: [{product, qty, unit_price, session, title, image_url}], total, v}`:
        `v` is the cart's version (a client keeps the cart with the highest)."""
        raw = as_dict(flat)
        products = await self.products.get_many(sorted(raw))
        lines = []
        total = 0
        for pid in sorted(raw):
            line = orjson.loads(raw[pid])
            product = products.get(pid)
            if product is None:
                continue
            qty = int(line["qty"])
            lines.append({
                "product": pid, "qty": qty, "unit_price": product.price,
                "session": line.get("session") or None, "title": product.title,
                "image_url": product.image_url,
            })
            total += qty * product.price
        return {"lines": lines, "total": total, "v": version}

    async def get(self, buyer: str) -> dict[str, Any]:
        flat, version, _ = await self.scripts.read_cart(buyer)  # lines and `v` of one instant
        return await self.view(flat, version)

    async def update(self, buyer: str, op: CartOp, product: str, qty: int,
                     session: str | None) -> dict[str, Any]:
        stock = None
        if op is not CartOp.REMOVE:  # a unit a restock holds for this buyer is theirs to add
            raw, holding = await self.store.batch([
                ("HGET", self.keys.product(product), "stock"),
                ("HEXISTS", self.keys.holds(product), buyer)])
            stock = int(raw) + (1 if holding else 0) if raw is not None else None
        flat, grew, version = await self.scripts.update_cart(
            buyer, op, product, qty, session or "", MAX_QTY, stock)
        if grew and session:  # an add to the session's funnel: the quantity grew
            await self.store.batch([
                ("HINCRBY", self.keys.counters(session), "adds", 1),
                ("HINCRBY", self.keys.counters(session), f"adds:{product}", 1)])
        return await self.view(flat, version)
