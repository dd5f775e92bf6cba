"""The flash-sale storm's node side: the queue let go when the node hears sold_out, the
late buyers' store questions asked once per tick, room stats waiting while a burst is
answered, and the full garbage collection kept out of bursts."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.cart.lanes import Lanes
from server.cart.peeks import Peeks
from server.errors import ApiError, ErrorCode
from server.observe.gc_timing import CALM, GcScheduler
from server.rooms.room_tick import ANSWERING, STATS_DEFER_TICKS
from server.valkey.embedded import EmbeddedValkey
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store
from tests.conftest import make_settings
from tests.helpers import ServerThread, WsClient, unique_prefix

pytestmark = pytest.mark.anyio


async def test_hearing_sold_out_lets_the_whole_queue_go_without_a_place() -> None:
    lanes = Lanes(2)
    sold_out = False
    assert await lanes.enter("k", lambda: sold_out)
    assert await lanes.enter("k", lambda: sold_out)
    waiters = [asyncio.ensure_future(lanes.enter("k", lambda: sold_out)) for _ in range(40)]
    await asyncio.sleep(0)
    assert lanes.waiting() == 40
    lanes.let_go("other")  # another lane: nothing happens
    sold_out = True
    lanes.let_go("k")  # the two runners are still running
    assert await asyncio.gather(*waiters) == [False] * 40
    assert lanes.waiting() == 0
    lanes.leave("k", lambda: sold_out)
    lanes.leave("k", lambda: sold_out)
    # woken while the product is still buyable (a stale wake): each queues again
    sold_out = False
    assert await lanes.enter("k", lambda: sold_out)
    assert await lanes.enter("k", lambda: sold_out)
    again = asyncio.ensure_future(lanes.enter("k", lambda: sold_out))
    await asyncio.sleep(0)
    lanes.let_go("k")
    await asyncio.sleep(0)
    assert lanes.waiting() == 1 and not again.done()
    lanes.leave("k", lambda: sold_out)
    assert await again is True


async def _peeks(url: str, cluster: bool | None) -> tuple[Store, Keys, Peeks]:
    store = Store(url, timeout_s=2.0, cluster=cluster)
    await store.open()
    await store.load_all()
    keys = Keys(unique_prefix())
    return store, keys, Peeks(store, keys, Scripts(store, keys, 1000, 600_000))


async def test_late_buyers_get_their_holds_and_orders_right(valkey_url: str) -> None:
    store, keys, peeks = await _peeks(valkey_url, None)  # a cluster: one call per bucket
    try:
        oids = [f"ord_{i:x}{'0' * 19}" for i in range(16)]
        await store.call("HSET", keys.order(oids[3]), "status", "committed",
                         "req_hash", "h3", "json", '{"id":"x"}')
        await store.call("HSET", keys.holds("p1"), "b7", '{"res":""}')
        held = [peeks.holding("p1", f"b{i}") for i in range(10)]
        rows = [peeks.order(oid) for oid in oids]
        assert await asyncio.gather(*held) == [i == 7 for i in range(10)]
        got = await asyncio.gather(*rows)
        assert got[3] == (b"committed", b"h3", b'{"id":"x"}')
        assert all(row == (None, None, None) for i, row in enumerate(got) if i != 3)
    finally:
        await store.close()


async def test_a_ticks_late_buyers_cost_two_store_calls(valkey: EmbeddedValkey) -> None:
    store, _, peeks = await _peeks(valkey.url, False)
    r = aioredis.from_url(valkey.url)
    try:
        await store.call("PING")

        async def calls() -> dict[str, int]:
            stats = await r.info("commandstats")
            return {k: int(stats.get(f"cmdstat_{k}", {}).get("calls", 0))
                    for k in ("hmget", "evalsha", "hexists")}

        before = await calls()
        answers = await asyncio.gather(*(
            asyncio.gather(peeks.holding("p1", f"b{i}"), peeks.order(f"ord_{i % 16:x}{i:019d}"))
            for i in range(500)))
        after = await calls()
        assert len(answers) == 500 and all(a == [False, (None, None, None)] for a in answers)
        # one HMGET of the holds for all 500 and one order_peek.lua (whose 500 HMGETs count
        # as commands too), no command per buyer
        assert after["evalsha"] - before["evalsha"] == 1
        assert after["hmget"] - before["hmget"] == 1 + 500
        assert after["hexists"] == before["hexists"]
    finally:
        await store.close()
        await r.aclose()


async def test_peeks_share_a_store_failure() -> None:
    store = Store("redis://127.0.0.1:1", timeout_s=0.2)
    keys = Keys("lc")
    peeks = Peeks(store, keys, Scripts(store, keys, 1000, 600_000))
    asks: list[Any] = [peeks.holding("p1", "b1"), peeks.order("ord_0" + "0" * 19)]
    for ask in asks:
        with pytest.raises(ApiError) as caught:
            await ask
        assert caught.value.code is ErrorCode.UNAVAILABLE


def test_the_full_collection_waits_for_a_calm_tick_or_its_deadline() -> None:
    now = [0.0]
    commands = [0]
    c = GcScheduler(every_s=30, max_s=120, activity=lambda: commands[0], clock=lambda: now[0])
    now[0] = 10
    assert not c.tick()  # too soon
    now[0] = 31
    commands[0] += CALM * 5
    assert not c.tick()  # due, but a burst is on
    now[0] = 32
    commands[0] += CALM - 1
    assert c.tick() and c.full_collections == 1  # calm: it runs
    for t in range(33, 32 + 120):
        now[0] = t
        commands[0] += CALM * 10  # a burst that never ends
        assert not c.tick()
    now[0] = 32 + 120
    commands[0] += CALM * 10
    assert c.tick() and c.full_collections == 2  # the deadline: it runs anyway
    assert gc.isenabled()


async def test_room_stats_wait_while_a_burst_is_answered(valkey: EmbeddedValkey) -> None:
    server = ServerThread(make_settings(counters_interval_s=3600.0), valkey.url).start()
    try:
        sid = server.session([])
        viewer = await WsClient.connect(server.ws_url, token=server.token("ann"))
        await viewer.ok("join", session=sid)
        async def tick() -> None:
            await server.on_loop(server.node.ticker.tick())

        await tick()
        await viewer.ok("like", count=3)
        server.node.dispatcher.in_flight += ANSWERING + 1  # a storm is being answered
        try:
            for _ in range(STATS_DEFER_TICKS):
                await tick()
                await viewer.ok("ping")
                assert not [e for e in viewer.events if e["t"] == "counters"
                            and e["d"]["likes"] == 3]
            await tick()  # the stats waited long enough: they go now
        finally:
            server.node.dispatcher.in_flight -= ANSWERING + 1
        pushed = await viewer.wait_event(lambda e: e["t"] == "counters" and e["d"]["likes"] == 3)
        assert pushed["d"]["viewers"] == 1
        await viewer.close()
    finally:
        server.stop()


async def test_a_key_retried_while_its_purchase_is_in_the_lane_gets_that_order(
        valkey: EmbeddedValkey) -> None:
    """The retry waits behind the lane (its questions asked while it waits); the product
    sells out — to this very key — and the retry's answer is the order, not `sold_out`."""
    server = ServerThread(make_settings(buy_now_lane=1), valkey.url).start()
    try:
        server.product("p1", price=1000, stock=10)
        sid = server.session(["p1"])
        creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
        await creator.ok("join", session=sid)
        ends = int(time.time() * 1000) + 600_000
        await creator.ok("pin", product="p1", deal={"price": 500, "stock": 1,
                                                    "per_buyer_limit": 1, "ends_at": ends})
        phone = await WsClient.connect(server.ws_url, token=server.token("ann"))
        laptop = await WsClient.connect(server.ws_url, token=server.token("ann"))
        others = [await WsClient.connect(server.ws_url, token=server.token(f"v{i}"))
                  for i in range(5)]
        for c in (phone, laptop, *others):
            await c.ok("join", session=sid)
        replies = await asyncio.gather(
            phone.request("buy_now", product="p1", qty=1, idempotency_key="k1", price=500),
            laptop.request("buy_now", product="p1", qty=1, idempotency_key="k1", price=500),
            *(c.request("buy_now", product="p1", qty=1, idempotency_key=f"o{i}", price=500)
              for i, c in enumerate(others)))
        mine = replies[:2]
        won = [r for r in replies if r["ok"]]
        assert len({r["result"]["id"] for r in won}) == 1  # one order, however many asked
        # ann's two requests are one purchase: both have its order, or both sold_out
        assert mine[0]["ok"] == mine[1]["ok"], mine
        assert all(r["ok"] or r["error"]["code"] == "sold_out" for r in replies)
        assert len(won) == (2 if mine[0]["ok"] else 1)
        for c in (creator, phone, laptop, *others):
            await c.close()
    finally:
        server.stop()
