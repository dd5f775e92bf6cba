"""What a node knows is sold out in the rooms it serves, kept from their events.

A `sold_out {product}` event (a purchase took the last unit a room's `buy_now` can have:
the open deal's, or the product's stock when no deal is open) makes the product sold out in
that room; only an event that shows units a `buy_now` there could get clears it:
- `pinned` (a new pin, maybe with a new deal), or `deal` closed or open with `stock_left`
  above 0 (a deal closing makes list stock buyable again; a deal gaining units back from an
  undone purchase attempt is announced with its `stock_left`);
- `product` with `stock` above 0, unless the room has an open deal on the product (then
  list stock is not what `buy_now` sells: a sale elsewhere lowering it changes nothing).
The purchase scripts still decide every sale; this only spares the store the attempts it
would refuse. Unknown means "ask the store", so every doubt falls on the safe side.
"""

from __future__ import annotations

from typing import Any

from server.events import EventType


class SoldOut:
    def __init__(self) -> None:
        self._sold: dict[str, set[str]] = {}  # room -> products sold out there
        self._deals: dict[str, str] = {}  # room -> product of its open deal, when heard
        self._left: dict[str, int] = {}  # room -> its open deal's stock_left, last heard

    def on_event(self, sid: str, kind: str, data: Any) -> None:
        if kind == EventType.SOLD_OUT:
            self._sold.setdefault(sid, set()).add(str(data["product"]))
        elif kind == EventType.PINNED:
            deal = data.get("deal")
            self._deal_is(sid, str(data["product"]["id"]) if deal else None)
            if deal:
                self._left[sid] = int(deal.get("stock_left") or 0)
            self._clear(sid, str(data["product"]["id"]))
        elif kind == EventType.DEAL:
            product = str(data["product"])
            if data.get("status") == "open":
                self._deal_is(sid, product)
                self._left[sid] = int(data.get("stock_left") or 0)
                if int(data.get("stock_left") or 0) > 0:
                    self._clear(sid, product)
            else:
                if self._deals.get(sid) == product:
                    self._deal_is(sid, None)
                self._clear(sid, product)
        elif kind == EventType.PRODUCT:
            product = str(data["id"])
            if int(data.get("stock") or 0) > 0 and self._deals.get(sid) != product:
                self._clear(sid, product)

    def known(self, sid: str, product: str) -> bool:
        return product in self._sold.get(sid, ())

    def deal_units(self, sid: str, product: str) -> int | None:
        """The units left in the room's open deal on `product`, as last heard; None when
        this node knows of no open deal on it."""
        return self._left.get(sid) if self._deals.get(sid) == product else None

    def forget(self, sid: str) -> None:
        self._sold.pop(sid, None)
        self._deals.pop(sid, None)
        self._left.pop(sid, None)

    def _deal_is(self, sid: str, product: str | None) -> None:
        if product is None:
            self._deals.pop(sid, None)
            self._left.pop(sid, None)
        else:
            self._deals[sid] = product

    def _clear(self, sid: str, product: str) -> None:
        sold = self._sold.get(sid)
        if sold is not None:
            sold.discard(product)
