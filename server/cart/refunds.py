"""Refunds: an order's lines (all, or some units of some) given back through the saga."""

from __future__ import annotations

from typing import Any

import orjson

from server.cart.saga import Saga
from server.errors import not_found
from server.valkey.keys import ORDER_ID_RE


class Refunds:
    def __init__(self, saga: Saga) -> None:
        self.saga = saga

    async def refund(self, oid: str, refund_id: str, lines: list[dict[str, Any]] | None,
                     caller: str, admin: bool) -> tuple[dict[str, Any], bool]:
        """Idempotent per `refund_id`: (the refund, whether this call made it)."""
        if not ORDER_ID_RE.match(oid):
            raise not_found("order", oid)
        return await self.saga.refund(
            oid, refund_id, orjson.dumps(lines) if lines is not None else b"", caller, admin)
