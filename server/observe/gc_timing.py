"""When Python's cyclic garbage collector may stop the event loop.

A full collection scans every object the collector tracks: with thousands of viewers a
few hundred thousand, a tenth of a second or more on this kind of machine. CPython starts
one by allocation counts, so it lands inside the very bursts that allocate most — a join
spike, a flash-sale storm (measured: a 112 ms stop in the middle of a 1,000-buyer storm,
every buyer's reply behind it). In a `livecart serve` process:

- what startup made (modules, classes, functions: never garbage) is frozen out of every
  scan (`gc.freeze`);
- the young generations stay automatic (small, a few ms);
- the full collection is the node's: `tick()` (each counters tick) runs it once
  `every_s` have passed and the loop was calm over the last tick (fewer than `CALM`
  commands), or regardless once `max_s` have passed — so cyclic garbage waits at most
  that long, and a burst is never interrupted by a scan unless it lasts that long.

Only `serve` installs it (`install`): an in-process test server leaves the host
process's collector alone.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("livecart.collector")

CALM = 200  # commands per counters tick below which the loop counts as calm
NEVER = 1 << 30  # a young-collection count the oldest generation never reaches


class GcScheduler:
    def __init__(self, every_s: float, max_s: float, activity: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.max_s = every_s, max_s
        self.activity, self.clock = activity, clock
        self.last = clock()
        self.seen = activity()
        self.full_collections = 0

    def tick(self) -> bool:
        """Run the full collection if it is due (see the module doc). True if it ran."""
        now, count = self.clock(), self.activity()
        calm = count - self.seen < CALM
        self.seen = count
        waited = now - self.last
        if waited < self.every_s or (not calm and waited < self.max_s):
            return False
        started = time.perf_counter()
        found = gc.collect(2)
        self.last = now
        self.full_collections += 1
        log.debug("full collection: %d unreachable, %.1f ms", found,
                  1000 * (time.perf_counter() - started))
        return True


def install() -> None:
    """Freeze what startup made and stop the oldest generation's automatic runs (the
    node's GcScheduler runs it). Call once, in a server process, after imports."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)
