"""Things that close at a time — auctions, giveaways — closed once, by whichever node first.

Each kind keeps a sorted set: member → when it is due (ms), written before the thing opens
and removed once it is settled. The node that opened one closes it on time (a timer);
every node's tick closes whatever is due in the index, so a thing whose node died still
closes. `close(member)` must be idempotent: several nodes may close the same member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.errors import ApiError, ErrorCode
from server.valkey.store import Store, text

log = logging.getLogger("livecart.closings")

SWEEP_BATCH = 100


class Closings:
    def __init__(self, store: Store, index: str, what: str,
                 close: Callable[[str], Awaitable[Any]]) -> None:
        self.store, self.index, self.what, self.close = store, index, what, close
        self._timers: set[asyncio.Task[None]] = set()

    def arm(self, member: str, due_ms: int) -> None:
        """Close `member` on time from this node (every node's sweep closes it too)."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            task = loop.create_task(self._close_quietly(member))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

        loop.call_later(max(0.0, due_ms / 1000 - time.time()) + 0.005, fire)

    async def _close_quietly(self, member: str) -> None:
        with contextlib.suppress(ApiError):  # the sweep tries again
            await self.close(member)

    async def sweep(self) -> int:
        """Close every member that is due. Returns how many were."""
        due = await self.store.call("ZRANGEBYSCORE", self.index, 0, int(time.time() * 1000),
                                    "LIMIT", 0, SWEEP_BATCH)
        for raw in due:
            await self.close_logged(text(raw))
        return len(due)

    async def close_logged(self, member: str) -> None:
        try:
            await self.close(member)
        except ApiError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                raise
            log.warning("closing %s %s failed: %s", self.what, member, exc.message)
