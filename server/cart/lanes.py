"""Lanes: at most N purchase attempts of one (room, product) in flight on a node.

A flash sale sends thousands of `buy_now` for a hundred units within a few milliseconds,
before this node can hear that the product sold out. Unlimited, every one of them would
run the purchase saga and fail at the reservation (four scripts each). In a lane the first
N run; the rest wait their turn in arrival order, and by the time they get it the node has
usually heard the `sold_out` event, so each is answered with one cheap read instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable


class Lanes:
    def __init__(self, width: int) -> None:
        self.width = max(1, width)
        self._lanes: dict[Hashable, _Lane] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(self.width)
        lane.users += 1
        try:
            async with lane.slots:
                yield
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]

    def waiting(self) -> int:
        """Attempts queued behind a full lane (for /metrics and tests)."""
        return sum(max(0, lane.users - self.width) for lane in self._lanes.values())


class _Lane:
    __slots__ = ("slots", "users")

    def __init__(self, width: int) -> None:
        self.slots = asyncio.Semaphore(width)
        self.users = 0
