"""Waitlists: users waiting for a sold-out product, and the holds a restock gives them.

Everything that moves a unit runs in the product's slot (waitlist.lua, product_patch.lua,
reserve.lua / reserve_settle.lua; lib/waitlist.lua). A restock of k units gives the first
k waiting users one held unit each, for `hold_ms`; only its holder can buy a held unit;
an unclaimed hold passes to the next user in line when it expires.

Expiry is driven by an index outside the product's slot (keys.hold_index): one entry per
batch of holds `<product>/<batch>`, written **before** the script that creates the batch
(intent first, like the open-deals index), set to the batch's real end once the script
answered, and removed once no hold of the batch is left. Any node's tick sweeps due
entries; waitlist.lua 'expire' decides in the product's slot, so each hold expires and
passes on exactly once however many nodes sweep it, and a node that dies after a script
leaves an entry that a later sweep finishes (docs/architecture.md "Waitlists").
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from server.cart.products import Product, ProductPatch, Products
from server.clock import now_ms
from server.errors import ApiError, ErrorCode
from server.valkey.due import DueIndex
from server.valkey.keys import Keys
from server.valkey.ops import WaitlistOp
from server.valkey.scripts import Patched, Scripts
from server.valkey.store import Store, text

log = logging.getLogger("livecart.waitlists")

MAX_WAITING = 100_000  # users on one product's waitlist
INTENT_SLACK_MS = 1000  # an intent entry is due this long after the holds it announces
class Waitlists:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts, products: Products,
                 hold_ms: int, *, on_offer: Callable[[str, str, int], Awaitable[None]],
                 on_stock: Callable[[str], None]) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self.products, self.hold_ms = products, hold_ms
        # told each user a hold was given to: (user, product, hold_until ms)
        self.on_offer = on_offer
        # told each product whose stock got units back from an unclaimed hold
        self.on_stock = on_stock
        self.due = DueIndex(store, [keys.hold_index()], "expiring holds", self._expire)

    # joining and leaving ---------------------------------------------------------------

    async def join(self, user: str, pid: str) -> dict[str, Any]:
        """Wait for a restock of a product at zero stock (idempotent: a user waiting or
        holding gets their place or hold back)."""
        reply = await self.scripts.waitlist(pid, WaitlistOp.JOIN, user, "", self.hold_ms,
                                           MAX_WAITING)
        if text(reply[0]) == "holding":
            return {"product": pid, "holding": True, "hold_until": int(reply[1])}
        return {"product": pid, "holding": False, "place": int(reply[1]),
                "waiting": int(reply[2])}

    async def leave(self, user: str, pid: str) -> dict[str, Any]:
        """Leave the waitlist; a hold given up passes to the next user at once."""
        batch = await self._intent(pid)
        reply = await self._run(pid, batch, WaitlistOp.LEAVE, user)
        _, offered, until, returned = reply
        await self._settle(pid, batch, orjson.loads(offered), int(until))
        if int(returned):
            self.on_stock(pid)
        return {"product": pid, "left": True}

    # restocks -------------------------------------------------------------------------

    async def patch(self, caller: str, role: str, pid: str,
                    patch: ProductPatch) -> tuple[Product, Patched]:
        """A product patch; a stock change may be a restock, whose holds are indexed."""
        if patch.stock is None:
            return await self.products.patch(caller, role, pid, patch)
        await self.products.check_owner(caller, role, pid)
        batch = await self._intent(pid)
        try:
            product, patched = await self.products.patch(caller, role, pid, patch,
                                                         batch=batch, hold_ms=self.hold_ms)
        except ApiError:
            await self._forget(pid, batch)
            raise
        await self._settle(pid, batch, patched.offered, patched.hold_until)
        return product, patched

    # expiry ---------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Expire every due batch of holds (any node, every tick). Returns how many."""
        return await self.due.sweep()

    async def _expire(self, member: str) -> None:
        pid, due_batch = member.split("/", 1)  # "/" is in no id
        batch = await self._intent(pid)
        try:
            reply = await self._run(pid, batch, WaitlistOp.EXPIRE, "", due_batch)
        except ApiError as exc:
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
            await self.store.call("ZREM", self.keys.hold_index(), member)  # product gone
            await self._forget(pid, batch)
            return
        _, offered, until, returned, left, next_at = reply
        await self._settle(pid, batch, orjson.loads(offered), int(until))
        if int(left):
            await self.store.call("ZADD", self.keys.hold_index(), int(next_at), member)
        else:
            await self.store.call("ZREM", self.keys.hold_index(), member)
        if int(returned):
            self.on_stock(pid)
            log.info("%d unclaimed hold(s) of %s returned to the stock", int(returned), pid,
                     extra={"product": pid})

    # the index ------------------------------------------------------------------------

    async def _intent(self, pid: str) -> str:
        """A fresh batch id, indexed before any hold of it can exist."""
        batch = secrets.token_hex(6)
        await self.store.call("ZADD", self.keys.hold_index(),
                              now_ms() + self.hold_ms + INTENT_SLACK_MS, f"{pid}/{batch}")
        return batch

    async def _forget(self, pid: str, batch: str) -> None:
        await self.store.call("ZREM", self.keys.hold_index(), f"{pid}/{batch}")

    async def _run(self, pid: str, batch: str, op: WaitlistOp, user: str,
                   due_batch: str = "") -> list[Any]:
        try:
            return await self.scripts.waitlist(pid, op, user, batch, self.hold_ms,
                                               MAX_WAITING, due_batch)
        except ApiError as exc:
            if exc.code is not ErrorCode.UNAVAILABLE:
                await self._forget(pid, batch)  # refused: the script made no hold
            raise

    async def _settle(self, pid: str, batch: str, offered: list[str], until: int) -> None:
        """After the script: index the batch at its real end (or drop it: no hold) and
        tell each new holder."""
        if not offered:
            await self._forget(pid, batch)
            return
        await self.store.call("ZADD", self.keys.hold_index(), until, f"{pid}/{batch}")
        log.info("%d waitlist hold(s) of %s given until %d", len(offered), pid, until,
                 extra={"product": pid})
        for user in offered:
            await self.on_offer(user, pid, until)
