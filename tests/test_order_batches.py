"""On one Valkey the one-script orders of a loop tick share one order_place.lua call
(server/cart/order_batches.py): each order all or nothing with its own result, the counters and
balances they move added once per field at the end — the same totals as one call each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.errors import ApiError, ErrorCode
from server.valkey.embedded import EmbeddedValkey
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store
from tests.conftest import make_settings
from tests.helpers import ServerThread, WsClient, unique_prefix

pytestmark = pytest.mark.anyio


def _plan(buyer: str, qty: Any = 1) -> dict[str, Any]:
    return {"buyer": buyer, "currency": "USD", "op": "buy_now", "room": "s1",
            "lines": [{"product": "p1", "qty": qty, "seen": None, "session": "s1",
                       "attribution": "direct", "creator": "cr1"}],
            "touch": ["p1", "s1"], "sold_out_rooms": {"p1": "s1"}}


# a good order, the same key for a different request, a plan the script cannot read (its
# Lua error is that order's alone), a second good order, an order over the stock left
ORDERS = [("ord_a", "fp-a", _plan("ann")), ("ord_a", "fp-other", _plan("ann", 2)),
          ("ord_b", "fp-b", _plan("bob", "two")), ("ord_c", "fp-c", _plan("cy")),
          ("ord_d", "fp-d", _plan("dan", 5))]


async def _state(store: Store, keys: Keys) -> dict[str, Any]:
    return {"counters": await store.call("HGETALL", keys.counters("s1")),
            "balance": await store.call("HGET", keys.balance("cr1"), "balance"),
            "product": await store.call("HMGET", keys.product("p1"), "stock", "sold"),
            "ledger": len(await store.call("LRANGE", keys.ledger("cr1"), 0, -1)),
            "ann": await store.call("LRANGE", keys.user_orders("ann"), 0, -1),
            "bob": await store.call("LRANGE", keys.user_orders("bob"), 0, -1)}


async def _place(valkey: EmbeddedValkey, together: bool) -> tuple[list[Any], dict[str, Any]]:
    store = Store(valkey.url, timeout_s=2.0, cluster=False)
    await store.open()
    await store.load_all()
    keys = Keys(unique_prefix())
    scripts = Scripts(store, keys, 1000, 600_000)
    try:
        await store.call("HSET", keys.product("p1"), "id", "p1", "price", 1000, "stock", 6,
                         "commission_bps", 1000, "seller", "seller1")
        orders = [(oid, fp, plan, "deal") for oid, fp, plan in ORDERS]
        if together:
            results: list[Any] = await scripts.place_orders(orders)
        else:
            results = []
            for o in orders:  # alone, a Lua error fails the call
                try:
                    results.append((await scripts.place_orders([o]))[0])
                except ApiError as exc:
                    results.append(exc)
        return results, await _state(store, keys)
    finally:
        await store.close()


async def test_orders_placed_together_each_get_their_own_result(
        valkey: EmbeddedValkey) -> None:
    results, state = await _place(valkey, together=True)
    assert [r[0] if isinstance(r, tuple) else r.code for r in results] == [
        "new", ErrorCode.CONFLICT, ErrorCode.INTERNAL, "new", ErrorCode.OUT_OF_STOCK]
    assert isinstance(results[4], ApiError) and results[4].details["available"] == 4
    counters = {k.decode(): int(v) for k, v in state["counters"].items()}
    assert counters["orders"] == 2 and counters["units"] == 2 and counters["gmv"] == 2000
    assert counters["commission"] == 200 and counters["orders:p1"] == 2
    assert int(state["balance"]) == 200 and state["ledger"] == 2
    assert state["product"] == [b"4", b"2"]
    assert state["ann"] == [b"ord_a"] and state["bob"] == []


async def test_orders_placed_together_leave_what_one_call_each_leaves(
        valkey: EmbeddedValkey) -> None:
    together, state_together = await _place(valkey, together=True)
    alone, state_alone = await _place(valkey, together=False)

    def outcome(r: Any) -> Any:
        return (r[0], r[1].count(b'"amount":1000')) if isinstance(r, tuple) else r.code

    assert [outcome(r) for r in together] == [outcome(r) for r in alone]
    assert state_together == state_alone


async def test_a_burst_of_orders_shares_calls_and_counts_exactly(
        valkey: EmbeddedValkey) -> None:
    server = ServerThread(make_settings(), valkey.url).start()
    r = aioredis.from_url(valkey.url)
    buyers = [f"b{i}" for i in range(40)]
    try:
        server.product("p1", price=1000, stock=100, commission_bps=1000)
        sid = server.session(["p1"])
        clients = [await WsClient.connect(server.ws_url, token=server.token(b)) for b in buyers]
        for c in clients:
            await c.ok("join", session=sid)
        await asyncio.sleep(0.5)  # the joins' reads and the first ticks are done
        before = (await r.info("commandstats"))["cmdstat_evalsha"]["calls"]
        orders = await asyncio.gather(*(c.ok("buy_now", product="p1", qty=1,
                                              idempotency_key=f"k-{i}")
                                        for i, c in enumerate(clients)))
        after = (await r.info("commandstats"))["cmdstat_evalsha"]["calls"]
        assert len({o["id"] for o in orders}) == len(buyers)
        # fewer calls than orders: the orders of a tick went out together (the counters
        # ticks add a few room_tick.lua)
        assert after - before < len(buyers)
        prefix = server.settings.key_prefix
        counters = await r.hgetall(f"{prefix}:{{s:{sid}}}:counters")
        assert int(counters[b"orders"]) == len(buyers)
        assert int(counters[b"gmv"]) == 1000 * len(buyers)
        assert int(counters[b"commission"]) == 100 * len(buyers)
        product = await r.hmget(f"{prefix}:{{p:p1}}:product", "stock", "sold")
        assert product == [str(100 - len(buyers)).encode(), str(len(buyers)).encode()]
        again = await clients[0].ok("buy_now", product="p1", qty=1, idempotency_key="k-0")
        assert again["id"] == orders[0]["id"]
        for c in clients:
            await c.close()
    finally:
        server.stop()
        await r.aclose()
