"""Vouchers: a seller's discount codes. Terms are fixed at creation; uses are counted in
the voucher's own slot `{v:<code>}` as a saga step of each order (saga.py, voucher_*.lua),
and the arithmetic is server/cart/discounts.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from server import validate as v
from server.cart.discounts import Terms
from server.clock import now_ms
from server.errors import ApiError, ErrorCode, bad_request, not_found
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store, as_dict, text

MAX_AMOUNT = 100_000_000  # minor units (the highest product price)
MAX_USES = 1_000_000
MAX_PRODUCTS = 100
MAX_LENGTH_MS = 366 * 24 * 3600 * 1000  # a voucher runs at most a year
LOG_SHOWN = 50  # uses listed by GET /api/vouchers/{code}


@dataclass(frozen=True, slots=True)
class NewVoucher:
    code: str
    percent_off: int
    amount_off: int
    min_spend: int
    total_uses: int
    per_buyer: int
    starts_at: int
    ends_at: int
    session: str
    products: tuple[str, ...]


def parse_new(body: Any, now_ms: int) -> NewVoucher:
    """`POST /api/vouchers` body; every bad field is `bad_request` with `field`."""
    args = v.obj(body)
    v.only(args, {"code", "percent_off", "amount_off", "min_spend", "total_uses", "per_buyer",
                  "starts_at", "ends_at", "session", "products"})
    code = v.req_ident(args, "code")
    percent = v.integer(args, "percent_off", lo=1, hi=100, required=False)
    amount = v.integer(args, "amount_off", lo=1, hi=MAX_AMOUNT, required=False)
    if (percent is None) == (amount is None):
        raise bad_request("give exactly one of `percent_off` (1-100) and `amount_off`",
                          field="percent_off" if percent is None else "amount_off")
    total_uses = v.req_int(args, "total_uses", lo=1, hi=MAX_USES)
    per_buyer = v.integer(args, "per_buyer", lo=1, hi=total_uses, default=1,
                          required=False) or 1
    starts_at = v.integer(args, "starts_at", lo=0, default=now_ms, required=False) or now_ms
    ends_at = v.req_int(args, "ends_at", lo=0)
    if ends_at <= max(starts_at, now_ms):
        raise bad_request("`ends_at` must be after `starts_at` and in the future",
                          field="ends_at")
    if ends_at - starts_at > MAX_LENGTH_MS:
        raise bad_request("a voucher runs at most 366 days", field="ends_at")
    raw_products = args.get("products")
    products: list[str] = []
    if raw_products is not None:
        if not isinstance(raw_products, list) or len(raw_products) > MAX_PRODUCTS:
            raise bad_request(f"`products` must be a list of at most {MAX_PRODUCTS} product "
                              "ids", field="products")
        for item in raw_products:
            if not v.is_id(item) or item in products:
                raise bad_request("`products` must hold distinct product ids", field="products")
            products.append(item)
    return NewVoucher(
        code=code, percent_off=percent or 0, amount_off=amount or 0,
        min_spend=v.integer(args, "min_spend", lo=0, hi=MAX_USES * MAX_AMOUNT, default=0,
                            required=False) or 0,
        total_uses=total_uses, per_buyer=per_buyer, starts_at=starts_at, ends_at=ends_at,
        session=v.ident(args, "session", required=False) or "", products=tuple(products))


def _int(h: dict[str, str], name: str) -> int:
    return int(h.get(name, 0) or 0)


def to_wire(h: dict[str, str]) -> dict[str, Any]:
    """A voucher's terms and counters (its card: what the room event carries, too)."""
    total, used, held = _int(h, "total_uses"), _int(h, "used"), _int(h, "held")
    return {
        "code": h["code"], "seller": h["seller"],
        "percent_off": _int(h, "percent_off") or None,
        "amount_off": _int(h, "amount_off") or None, "min_spend": _int(h, "min_spend"),
        "total_uses": total, "per_buyer": _int(h, "per_buyer"),
        "starts_at": _int(h, "starts_at"), "ends_at": _int(h, "ends_at"),
        "session": h.get("session") or None, "products": orjson.loads(h.get("products", "[]")),
        "used": used, "held": held, "remaining": max(0, total - used - held),
        "discount_given": _int(h, "discount_given"),
    }


def terms_of(h: dict[str, str]) -> Terms:
    return Terms(h["code"], h["seller"], _int(h, "percent_off"), _int(h, "amount_off"),
                 _int(h, "min_spend"), tuple(orjson.loads(h.get("products", "[]"))))


class Vouchers:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts

    async def create(self, seller: str, new: NewVoucher) -> dict[str, Any]:
        fields = [seller, new.percent_off, new.amount_off, new.min_spend, new.total_uses,
                  new.per_buyer, new.starts_at, new.ends_at, new.session,
                  orjson.dumps(list(new.products)), now_ms()]
        if not await self.scripts.create_voucher(new.code, fields):
            raise ApiError(ErrorCode.CONFLICT, f"voucher {new.code!r} already exists",
                           voucher=new.code)
        return await self.get(new.code)

    async def find(self, code: str) -> dict[str, str] | None:
        h = as_dict(await self.store.call("HGETALL", self.keys.voucher(code)))
        return h or None

    async def get(self, code: str) -> dict[str, Any]:
        h = await self.find(code)
        if h is None:
            raise not_found("voucher", code)
        return to_wire(h)

    async def uses(self, code: str) -> list[Any]:
        rows = await self.store.call("LRANGE", self.keys.voucher_log(code), 0, LOG_SHOWN - 1)
        return [orjson.loads(text(r)) for r in rows]

    async def terms(self, code: str) -> Terms:
        """The terms an order applies (`not_found` with `voucher` when there is none)."""
        h = await self.find(code)
        if h is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"voucher {code!r} does not exist",
                           voucher=code, field="voucher")
        return terms_of(h)
