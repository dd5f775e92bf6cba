"""Products: the catalogue entries that sessions showcase and viewers buy."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from server import validate as v
from server.clock import now_ms
from server.errors import ApiError, ErrorCode, bad_request, forbidden, not_found
from server.facts import ClosedDeal
from server.signals import Signal
from server.valkey.keys import Keys
from server.valkey.scripts import Patched, Scripts
from server.valkey.store import Store, as_dict

MAX_PRICE = 100_000_000  # minor units
MAX_STOCK = 10_000_000


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    seller: str
    title: str
    price: int
    currency: str
    stock: int
    commission_bps: int
    image_url: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "seller": self.seller, "title": self.title, "price": self.price,
            "currency": self.currency, "stock": self.stock,
            "commission_bps": self.commission_bps, "image_url": self.image_url,
        }

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Product:
        return cls(
            id=h["id"], seller=h["seller"], title=h["title"], price=int(h["price"]),
            currency=h["currency"], stock=int(h["stock"]),
            commission_bps=int(h["commission_bps"]), image_url=h.get("image_url", ""),
        )


@dataclass(frozen=True, slots=True)
class NewProduct:
    id: str
    title: str
    price: int
    stock: int
    commission_bps: int
    image_url: str


def parse_new(body: Any) -> NewProduct:
    args = v.obj(body)
    v.only(args, {"id", "title", "price", "stock", "commission_bps", "image_url"})
    pid = v.ident(args, "id", required=False) or f"prod_{secrets.token_hex(6)}"
    return NewProduct(
        id=pid,
        title=v.req_str(args, "title"),
        price=v.req_int(args, "price", lo=1, hi=MAX_PRICE),
        stock=v.req_int(args, "stock", lo=0, hi=MAX_STOCK),
        commission_bps=v.req_int(args, "commission_bps", lo=0, hi=10_000),
        image_url=v.string(args, "image_url", max_len=500, required=False) or "",
    )


@dataclass(frozen=True, slots=True)
class ProductPatch:
    price: int | None
    stock: int | None
    commission_bps: int | None


def parse_patch(body: Any) -> ProductPatch:
    args = v.obj(body)
    v.only(args, {"price", "stock", "commission_bps"})
    patch = ProductPatch(
        price=v.integer(args, "price", lo=1, hi=MAX_PRICE, required=False),
        stock=v.integer(args, "stock", lo=0, hi=MAX_STOCK, required=False),
        commission_bps=v.integer(args, "commission_bps", lo=0, hi=10_000, required=False),
    )
    if patch == ProductPatch(None, None, None):
        raise bad_request("give at least one of price, stock, commission_bps")
    return patch


class Products:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts, currency: str,
                 deal_closed: Signal[ClosedDeal]) -> None:
        self.store, self.keys, self.scripts, self.currency = store, keys, scripts, currency
        self.deal_closed = deal_closed  # each deal a price cut closed

    async def _create(self, seller: str, new: NewProduct) -> bool:
        return await self.scripts.create_product(
            [new.id, seller, new.title, new.price, self.currency, new.stock,
             new.commission_bps, new.image_url, now_ms()], new.id)

    async def create(self, seller: str, new: NewProduct) -> Product:
        if not await self._create(seller, new):
            raise ApiError(ErrorCode.CONFLICT, f"product {new.id!r} already exists", product=new.id)
        return Product(new.id, seller, new.title, new.price, self.currency, new.stock,
                       new.commission_bps, new.image_url)

    async def ensure(self, seller: str, new: NewProduct) -> Product:
        """Create unless it exists (idempotent seeding); returns the stored product."""
        await self._create(seller, new)
        return await self.get(new.id)

    async def find(self, pid: str) -> Product | None:
        h = as_dict(await self.store.call("HGETALL", self.keys.product(pid)))
        return Product.from_hash(h) if h else None

    async def get(self, pid: str) -> Product:
        found = await self.find(pid)
        if found is None:
            raise not_found("product", pid)
        return found

    def read_commands(self, ids: list[str]) -> list[tuple[str, str]]:
        """The commands that read these products (to share a pipeline); see `parse_rows`."""
        return [("HGETALL", self.keys.product(pid)) for pid in ids]

    @staticmethod
    def parse_rows(rows: list[Any]) -> dict[str, Product]:
        found = {}
        for row in rows:
            h = as_dict(row)
            if h:
                found[h["id"]] = Product.from_hash(h)
        return found

    async def get_many(self, ids: list[str]) -> dict[str, Product]:
        if not ids:
            return {}
        return self.parse_rows(await self.store.batch(self.read_commands(ids)))

    async def check_owner(self, caller: str, role: str, pid: str) -> Product:
        current = await self.get(pid)
        if role != "admin" and current.seller != caller:
            raise forbidden("only the product's seller can change it")
        return current

    async def patch(self, caller: str, role: str, pid: str, patch: ProductPatch, *,
                    batch: str = "", hold_ms: int = 0) -> tuple[Product, Patched]:
        """Apply a patch (its seller or an admin). A restock gives waitlist holds of
        `batch` for `hold_ms` (the caller has indexed the batch: cart/waitlists.py)."""
        await self.check_owner(caller, role, pid)
        patched = await self.scripts.patch_product(
            pid, patch.price, patch.stock, patch.commission_bps, batch, hold_ms)
        for deal in patched.closed_deals:  # a deal is never dearer than the list price
            await self.deal_closed.send(ClosedDeal(
                orjson.loads(deal)["session"], deal, "the list price dropped to its price"))
        return await self.get(pid), patched

