"""Buying commands over the WebSocket: cart_get/add/set/remove, checkout, buy_now."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from server import validate as v
from server.auth import require_user
from server.cart.carts import MAX_QTY, Carts
from server.cart.orders import Orders, Placed
from server.edge.client import Client
from server.edge.commands import Handler
from server.errors import bad_request
from server.facts import RoomFacts
from server.valkey.ops import CartOp

IDEM_KEY = v.ID_RE


class CartOps:
    def __init__(self, carts: Carts, orders: Orders,
                 room_facts: Callable[[str], Awaitable[RoomFacts]],
                 known_sold_out: Callable[[str, str], bool],
                 deal_units: Callable[[str, str], int | None],
                 on_cart: Callable[[str, dict[str, Any]], Any],
                 on_order: Callable[[Client, Placed], Any]) -> None:
        self.carts, self.orders = carts, orders
        self.room_facts = room_facts
        self.known_sold_out = known_sold_out
        self.deal_units = deal_units
        self.on_cart = on_cart
        self.on_order = on_order

    def handlers(self) -> dict[str, Handler]:
        return {
            "cart_get": self.cart_get, "cart_add": self.cart_add, "cart_set": self.cart_set,
            "cart_remove": self.cart_remove, "checkout": self.checkout, "buy_now": self.buy_now,
        }

    async def cart_get(self, client: Client, args: Mapping[str, Any]) -> Any:
        return await self.carts.get(require_user(client.identity))

    async def _line_session(self, client: Client, product: str) -> str | None:
        """The session a cart change counts as a touch in: the joined one, if it shows it."""
        if client.session is None or client.joining:
            return None
        room = await self.room_facts(client.session)
        return client.session if product in room.showcase else None

    async def _change(self, client: Client, args: Mapping[str, Any], op: CartOp) -> Any:
        buyer = require_user(client.identity)
        product = v.req_ident(args, "product")
        qty = 0 if op is CartOp.REMOVE else v.req_int(args, "qty", lo=1, hi=MAX_QTY)
        session = None if op is CartOp.REMOVE else await self._line_session(client, product)
        cart = await self.carts.update(buyer, op, product, qty, session)
        await self.on_cart(buyer, cart)
        return cart

    async def cart_add(self, client: Client, args: Mapping[str, Any]) -> Any:
        return await self._change(client, args, CartOp.ADD)

    async def cart_set(self, client: Client, args: Mapping[str, Any]) -> Any:
        return await self._change(client, args, CartOp.SET)

    async def cart_remove(self, client: Client, args: Mapping[str, Any]) -> Any:
        return await self._change(client, args, CartOp.REMOVE)

    async def checkout(self, client: Client, args: Mapping[str, Any]) -> Any:
        buyer = require_user(client.identity)
        key = v.string(args, "idempotency_key", max_len=64, pattern=IDEM_KEY)
        total = v.integer(args, "total", lo=0, required=False)
        voucher = v.ident(args, "voucher", required=False)
        assert key is not None
        placed = await self.orders.checkout(buyer, client.session, key, total, voucher)
        await self.on_order(client, placed)
        return placed.order

    async def buy_now(self, client: Client, args: Mapping[str, Any]) -> Any:
        buyer = require_user(client.identity)
        product = v.req_ident(args, "product")
        qty = v.req_int(args, "qty", lo=1, hi=MAX_QTY)
        key = v.string(args, "idempotency_key", max_len=64, pattern=IDEM_KEY)
        price = v.integer(args, "price", lo=0, required=False)
        voucher = v.ident(args, "voucher", required=False)
        assert key is not None
        if client.session is None or client.joining:
            raise bad_request("join a session to buy from it")
        room = await self.room_facts(client.session)
        if product not in room.showcase:
            raise bad_request(f"product {product!r} is not in this session's showcase",
                              field="product")
        placed = await self.orders.buy_now(
            buyer, room.session, product, qty, key, price,
            known_sold_out=lambda: self.known_sold_out(room.session.id, product),
            lane_width=self.deal_units(room.session.id, product),
            voucher=voucher)
        await self.on_order(client, placed)
        return placed.order
