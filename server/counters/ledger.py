"""Creator ledgers and live-exclusive rates (store side)."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from server import validate as v
from server.errors import ApiError, ErrorCode, forbidden
from server.settings import Settings
from server.valkey.keys import Keys
from server.valkey.store import Store, text

LEDGER_FIELDS = ("order", "product", "session", "qty", "amount", "kind", "status", "at")


class Ledger:
    def __init__(self, store: Store, keys: Keys, settings: Settings) -> None:
        self.store, self.keys, self.settings = store, keys, settings

    async def read(self, creator: str) -> dict[str, Any]:
        entries, balance = await self.store.batch([
            ("LRANGE", self.keys.ledger(creator), 0, -1),
            ("HGET", self.keys.balance(creator), "balance"),
        ])
        return {
            "creator": creator, "currency": self.settings.currency,
            "balance": int(text(balance)) if balance is not None else 0,
            "entries": [orjson.loads(e) for e in entries],
        }

    @staticmethod
    def to_csv(ledger: dict[str, Any]) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*LEDGER_FIELDS, "currency"])
        for e in ledger["entries"]:
            writer.writerow([*(e.get(f, "") for f in LEDGER_FIELDS), ledger["currency"]])
        return out.getvalue()

    async def set_rates(self, sid: str, caller: str, admin: bool, rates: dict[str, Any],
                        product_rates: dict[str, tuple[str, int]]) -> dict[str, int]:
        """Live-exclusive rates: only the product's seller (or an admin), only above its rate."""
        # every rate's shape first (basis points; `field`: its product), then the rules
        asked = {pid: v.req_int(rates, pid, lo=1, hi=10_000) for pid in rates}
        clean: dict[str, int] = {}
        for pid, bps in asked.items():
            if pid not in product_rates:  # conflicts with the session's showcase
                raise ApiError(ErrorCode.CONFLICT, f"product {pid!r} is not in this session",
                               product=pid)
            seller, own = product_rates[pid]
            if not admin and seller != caller:
                raise forbidden(f"only the seller of {pid!r} can set its rate")
            if bps <= own:  # conflicts with the product's current rate
                raise ApiError(ErrorCode.CONFLICT,
                               f"a session rate must be above the product's own rate ({own})",
                               product=pid, commission_bps=own)
            clean[pid] = bps
        if clean:  # each rate lives with its product (reserve.lua reads it there)
            await self.store.batch([("HSET", self.keys.rates(pid), sid, bps)
                                    for pid, bps in clean.items()])
        pids = sorted(product_rates)
        rows = await self.store.batch([("HGET", self.keys.rates(pid), sid) for pid in pids])
        return {pid: int(row) for pid, row in zip(pids, rows, strict=True) if row is not None}
