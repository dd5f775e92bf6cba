"""Time, in one place: the wall clock in milliseconds every record and event carries, and
the loop that runs a node's periodic work."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from server.errors import ApiError

log = logging.getLogger("livecart.clock")


def now_ms() -> int:
    """Milliseconds since the epoch: the unit of every `ts`, `*_at` and deadline."""
    return int(time.time() * 1000)


Job = Callable[[], Awaitable[object]]


class Ticker:
    """Runs `jobs` in order every `interval_s`, then `after` (if any), until stopped.

    A job that finds the store unreachable (ApiError) ends this tick quietly — the next
    tick tries again; any other failure is logged and the loop goes on. `skip()` says
    whether this tick stands aside (a burst is being answered)."""

    def __init__(self, name: str, interval_s: float, jobs: Sequence[Job], *,
                 skip: Callable[[], bool] | None = None,
                 after: Callable[[], object] | None = None) -> None:
        self.name, self.interval_s, self.jobs = name, interval_s, list(jobs)
        self.skip, self.after = skip, after
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def tick(self) -> None:
        """One round of the jobs, now (tests and the loop)."""
        for job in self.jobs:
            await job()

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval_s)
            if self.skip is not None and self.skip():
                continue
            try:
                await self.tick()
            except ApiError:
                pass  # the store is down: try again next tick
            except Exception:
                log.exception("%s failed", self.name)
            if self.after is not None:
                self.after()

    async def stop(self) -> None:
        # A cancel can be swallowed by a wait_for inside redis-py (Python 3.11) just as its
        # call completes, so the loop also checks `_stopping`, and the wait is bounded.
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        _, pending = await asyncio.wait({task}, timeout=2.0)
        for late in pending:
            late.cancel()
