"""Purchase lanes (server/cart/lanes.py): at most the lane's width of attempts per key at
once, in arrival order; the whole queue let go at once when the product sells out; a
cancelled waiter's turn passed on; a lane as wide as the units a deal has left."""

from __future__ import annotations

import asyncio

import pytest

from server.cart.lanes import Lanes


@pytest.mark.anyio
async def test_lanes_run_at_most_their_width_in_arrival_order() -> None:
    lanes = Lanes(3)
    running, peak, order = 0, 0, []

    async def attempt(i: int) -> None:
        nonlocal running, peak
        assert await lanes.enter(("room", "p1"), lambda: False)
        running += 1
        peak = max(peak, running)
        order.append(i)
        await asyncio.sleep(0.01)
        running -= 1
        lanes.leave(("room", "p1"), lambda: False)

    tasks = [asyncio.ensure_future(attempt(i)) for i in range(12)]
    await asyncio.sleep(0.005)
    assert lanes.waiting() == 9
    await asyncio.gather(*tasks)
    assert peak == 3 and order == list(range(12)) and lanes.waiting() == 0


@pytest.mark.anyio
async def test_a_lane_lets_its_whole_queue_go_once_skipping_holds() -> None:
    lanes = Lanes(1)
    sold_out = False
    assert await lanes.enter("k", lambda: sold_out)
    waiters = [asyncio.ensure_future(lanes.enter("k", lambda: sold_out)) for _ in range(50)]
    await asyncio.sleep(0)
    assert lanes.waiting() == 50
    sold_out = True
    lanes.leave("k", lambda: sold_out)  # one leave answers all fifty in the same tick
    assert await asyncio.gather(*waiters) == [False] * 50
    assert lanes.waiting() == 0 and not await lanes.enter("k", lambda: sold_out)
    # a cancelled waiter gives its turn to the next one
    sold_out = False
    assert await lanes.enter("k", lambda: sold_out)
    first = asyncio.ensure_future(lanes.enter("k", lambda: sold_out))
    second = asyncio.ensure_future(lanes.enter("k", lambda: sold_out))
    await asyncio.sleep(0)
    lanes.leave("k", lambda: sold_out)
    first.cancel()
    assert await second is True
    lanes.leave("k", lambda: sold_out)
    assert lanes.waiting() == 0


@pytest.mark.anyio
async def test_a_lane_widens_to_the_units_a_deal_has_left() -> None:
    lanes = Lanes(2)
    assert all([await lanes.enter("k", lambda: False, 5) for _ in range(5)])
    sixth = asyncio.ensure_future(lanes.enter("k", lambda: False, 5))
    await asyncio.sleep(0)
    assert lanes.waiting() == 1 and not sixth.done()
    lanes.leave("k", lambda: False)
    assert await sixth is True
    assert not await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(
        lanes.enter("other", lambda: True, 5))), 1)
