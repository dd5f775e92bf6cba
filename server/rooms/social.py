"""Social proof and stock notices: a few room events per second, not one per order.

Each node buffers the purchases it placed per room and, every `interval`, emits per
product one `purchase {product, qty, count, names}` (names are display names, never raw
ids) and, during a deal, its progress (`deal`). Products whose stock changed here (sales,
deals opening or closing) get one `product {id, price, stock}` event in every session
that shows them; when an undone purchase attempt gave units back (`units_returned`), each
session with an open deal on that product also gets the deal's `stock_left` again, so
nodes that had heard it sell out learn it has units (server/rooms/sold_out.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from server.cart.products import Products
from server.cart.stock_watch import StockWatch
from server.rooms.sessions import Sessions

MAX_NAMES = 3


@dataclass(slots=True)
class Burst:
    qty: int = 0
    count: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, qty: int, name: str) -> None:
        self.qty += qty
        self.count += 1
        if name not in self.names and len(self.names) < MAX_NAMES:
            self.names.append(name)


class SocialProof:
    def __init__(self, sessions: Sessions, products: Products, stock: StockWatch) -> None:
        self.sessions, self.products, self.stock = sessions, products, stock
        self.pending: dict[str, dict[str, Burst]] = defaultdict(dict)

    def note(self, room: str, product: str, qty: int, name: str) -> None:
        self.pending[room].setdefault(product, Burst()).add(qty, name)

    async def flush(self) -> None:
        pending, self.pending = self.pending, defaultdict(dict)
        dirty, returned = self.stock.take()
        for room, bursts in pending.items():
            deal = await self.sessions.deal(room)
            for pid, burst in bursts.items():
                await self.sessions.emit(room, "purchase", {
                    "product": pid, "qty": burst.qty, "count": burst.count, "names": burst.names})
                await self._deal_progress(room, pid, deal)
        for pid in sorted(returned):
            for room in await self.sessions.sessions_showing(pid):
                if room not in pending or pid not in pending[room]:
                    await self._deal_progress(room, pid, await self.sessions.deal(room))
        for pid in sorted(dirty):
            product = await self.products.find(pid)
            if product is not None:
                await self.sessions.announce_product(pid, product.price, product.stock)

    async def _deal_progress(self, room: str, pid: str, deal: dict[str, Any]) -> None:
        if deal.get("product") == pid and deal.get("status") == "open":
            await self.sessions.emit(room, "deal", {
                "product": pid, "status": "open", "stock_left": int(deal["stock_left"]),
                "ends_at": int(deal["ends_at"]), "price": int(deal["price"])})
