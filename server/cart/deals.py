"""Flash deal arguments: checked here; the stock move happens atomically in pin.lua."""

from __future__ import annotations

from typing import Any

from server import clock
from server import validate as v
from server.cart.products import MAX_PRICE, MAX_STOCK
from server.errors import bad_request

MAX_DEAL_S = 24 * 3600


def parse_deal(raw: Any, now_ms: int | None = None) -> dict[str, int]:
    """`{price, stock, per_buyer_limit, ends_at}` as integers (price < list price is
    checked against the product in Lua)."""
    args = v.obj(raw, "deal")
    v.only(args, {"price", "stock", "per_buyer_limit", "ends_at"}, "deal")
    now = clock.now_ms() if now_ms is None else now_ms
    deal = {
        "price": v.req_int(args, "price", lo=1, hi=MAX_PRICE),
        "stock": v.req_int(args, "stock", lo=1, hi=MAX_STOCK),
        "per_buyer_limit": v.req_int(args, "per_buyer_limit", lo=1, hi=99),
        "ends_at": v.req_int(args, "ends_at", lo=0),
    }
    if deal["ends_at"] <= now:
        raise bad_request("deal `ends_at` must be in the future (epoch ms)", field="ends_at")
    if deal["ends_at"] > now + MAX_DEAL_S * 1000:
        raise bad_request("a deal lasts at most 24 hours", field="ends_at")
    return deal
