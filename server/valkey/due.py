"""What is due at a time, done once by whichever node gets there first.

One kind of due thing — open deals, waitlist holds, order sagas, auctions, giveaways —
keeps one or more sorted sets (member -> when it is due, ms), written before the thing
starts and cleared by `handle` once it is done. Every node's tick sweeps them (`sweep`), so
a thing whose node died is still done; the node that started one may also `arm` a timer
to do it on time. `handle(member)` must be idempotent: several nodes may run it for the
same member, and a member stays due until `handle` removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from server.clock import now_ms
from server.errors import ApiError, ErrorCode
from server.valkey.store import Store, text

log = logging.getLogger("livecart.due")

SWEEP_BATCH = 100  # members per index per sweep: the rest wait for the next tick


class DueIndex:
    def __init__(self, store: Store, indexes: Sequence[str], what: str,
                 handle: Callable[[str], Awaitable[object]]) -> None:
        self.store, self.indexes, self.what, self.handle = store, list(indexes), what, handle
        self._timers: set[asyncio.Task[None]] = set()

    def arm(self, member: str, due_ms: int) -> None:
        """Handle `member` on time from this node (every node's sweep handles it too)."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            task = loop.create_task(self._handle_quietly(member))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

        loop.call_later(max(0.0, due_ms / 1000 - time.time()) + 0.005, fire)

    async def _handle_quietly(self, member: str) -> None:
        with contextlib.suppress(ApiError):  # the sweep tries again
            await self.handle(member)

    async def sweep(self) -> int:
        """Handle every member that is due (one round trip to read them). Returns how
        many were due. The store being unreachable ends the sweep; any other failure of
        one member is logged and the member stays due."""
        now = now_ms()
        rows = await self.store.batch([
            ("ZRANGEBYSCORE", index, "-inf", now, "LIMIT", 0, SWEEP_BATCH)
            for index in self.indexes])
        members = [text(m) for row in rows for m in row]
        for member in members:
            await self.handle_logged(member)
        return len(members)

    async def handle_logged(self, member: str) -> None:
        try:
            await self.handle(member)
        except ApiError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                raise
            log.warning("%s %s failed: %s", self.what, member, exc.message)
