"""Lanes: at most N purchase attempts of one (room, product) in flight on a node.

A flash sale sends thousands of `buy_now` for a hundred units within a few milliseconds,
before this node can hear that the product sold out. Unlimited, every one of them would
run the purchase saga and fail at the reservation (four scripts each). In a lane the first
N run and the rest queue in arrival order. Each caller names a `skip` condition (for
`buy_now`: "this node knows the product is sold out in this room"): a caller whose
condition holds on arrival never queues, and once a caller leaving the lane finds it
true, the whole queue is let go at once — every waiter is answered in the same loop
tick instead of one after another.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable

MAX_WIDTH = 1024


class Lanes:
    def __init__(self, width: int) -> None:
        self.width = max(1, width)
        self._lanes: dict[Hashable, _Lane] = {}

    async def enter(self, key: Hashable, skip: Callable[[], bool],
                    width: int | None = None) -> bool:
        """Wait for a place in `key`'s lane: True with a place (call `leave` after), False
        without one as soon as `skip()` is true (asked on arrival and whenever woken).
        `width`: let up to this many in at once when it is above the lanes' own width
        (a deal's units left), never more than MAX_WIDTH."""
        wide = self._wide(width)
        while True:
            if skip():
                return False
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane()
            if lane.running < wide:
                lane.running += 1
                return True
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            lane.waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter in lane.waiters:
                    lane.waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled() and waiter.result():
                    self.leave(key, skip)  # the place handed to us goes to the next one
                raise
            if handed:  # a leaving caller passed its place on to us
                if not skip():
                    return True
                self.leave(key, skip)
                return False

    def _wide(self, width: int | None) -> int:
        return min(MAX_WIDTH, max(self.width, width or 0))

    def full(self, key: Hashable, width: int | None = None) -> bool:
        """Would `enter` (with this `width`) queue now?"""
        lane = self._lanes.get(key)
        return lane is not None and lane.running >= self._wide(width)

    def leave(self, key: Hashable, skip: Callable[[], bool]) -> None:
        """Give the place back: to the next waiter, or — when `skip()` is now true — let
        every waiter go (each finds `skip()` true and returns False)."""
        lane = self._lanes[key]
        while lane.waiters and lane.waiters[0].done():  # cancelled, not yet removed
            lane.waiters.popleft()
        if lane.waiters and not skip():
            lane.waiters.popleft().set_result(True)
            return
        lane.running -= 1
        waiters, lane.waiters = lane.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(False)
        if lane.running == 0:
            del self._lanes[key]

    def let_go(self, key: Hashable) -> None:
        """Wake every waiter of `key`'s lane to ask its `skip()` again (the node just heard
        the product sell out): each finds it true and returns False without a place."""
        lane = self._lanes.get(key)
        if lane is None:
            return
        waiters, lane.waiters = lane.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(False)

    def waiting(self) -> int:
        """Attempts queued behind full lanes (for /metrics and tests)."""
        return sum(len(lane.waiters) for lane in self._lanes.values())


class _Lane:
    __slots__ = ("running", "waiters")

    def __init__(self) -> None:
        self.running = 0
        self.waiters: deque[asyncio.Future[bool]] = deque()
