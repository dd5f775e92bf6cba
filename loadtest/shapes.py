"""Locust LoadTestShapes for livecart. The locustfile exposes the one named by LC_SHAPE.

- `spike`: ramp to LC_USERS viewers in LC_RAMP_S seconds, hold LC_HOLD_S, drop to zero.
- `storm`: ramp to LC_USERS buyers, hold while the creator pins flash deals (every buyer
  hits `buy_now` the moment a deal is pinned), then stop.
- `shopping`: a steady mix of viewers and shoppers (clicks, carts, checkouts) at LC_USERS.
- `chatstorm`: LC_USERS split over viewers, pins-only viewers and chatters while the
  creator pins: chat fan-out next to pinned fan-out, pins-only viewers must get no chat.
Numbers come from the environment so the same file serves the UI and headless runs.
Each shape's `classes` are the scenarios it runs; the locustfile fails a run in which one
of them never did its job.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

# filled by the locustfile (it is imported by Locust under its own module name)
USERS: dict[str, type] = {}


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class ViewerSpike(LoadTestShape):
    """Ramp to N viewers in S seconds, hold, drop."""

    use_common_options = True
    classes = ("CreatorUser", "ViewerUser")

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type]] | None:
        users, ramp = int(_env("LC_USERS", 1000)), _env("LC_RAMP_S", 10)
        hold, down = _env("LC_HOLD_S", 30), _env("LC_DOWN_S", 5)
        t = self.get_run_time()
        rate = max(users / max(ramp, 0.1), 1.0)
        classes = [USERS[n] for n in self.classes]
        if t < ramp + hold:
            return users + 1, rate, classes  # +1: the creator (fixed_count)
        if t < ramp + hold + down:
            return 1, rate, classes
        return None


class FlashSaleStorm(LoadTestShape):
    """Everyone is in the room, the creator pins a deal, everyone buys at once."""

    use_common_options = True
    classes = ("DealCreatorUser", "StormBuyerUser")

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type]] | None:
        users, ramp = int(_env("LC_USERS", 500)), _env("LC_RAMP_S", 10)
        hold = _env("LC_HOLD_S", 30)
        t = self.get_run_time()
        if t < ramp + hold:
            return users + 1, max(users / max(ramp, 0.1), 1.0), [USERS[n] for n in self.classes]
        return None


class SteadyShopping(LoadTestShape):
    """A constant crowd: 80% watching, 20% shopping."""

    use_common_options = True
    classes = ("CreatorUser", "ViewerUser", "ShopperUser")

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type]] | None:
        users, ramp = int(_env("LC_USERS", 200)), _env("LC_RAMP_S", 10)
        hold = _env("LC_HOLD_S", 60)
        t = self.get_run_time()
        if t < ramp + hold:
            return users + 1, max(users / max(ramp, 0.1), 1.0), [USERS[n] for n in self.classes]
        return None


class ChatStorm(LoadTestShape):
    """Viewers, pins-only viewers and chatters (by weight) while the creator pins."""

    use_common_options = True
    classes = ("CreatorUser", "ViewerUser", "PinsOnlyViewerUser", "ChatterUser")

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type]] | None:
        users, ramp = int(_env("LC_USERS", 300)), _env("LC_RAMP_S", 10)
        hold = _env("LC_HOLD_S", 30)
        t = self.get_run_time()
        if t < ramp + hold:
            return users + 1, max(users / max(ramp, 0.1), 1.0), [USERS[n] for n in self.classes]
        return None


SHAPES: dict[str, type[LoadTestShape]] = {
    "spike": ViewerSpike, "storm": FlashSaleStorm, "shopping": SteadyShopping,
    "chatstorm": ChatStorm,
}
