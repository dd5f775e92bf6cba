"""On one Valkey a one-line order is one script (order_place.lua); on a cluster it is the
saga's steps. Both must leave exactly the same state: the same script functions, the same
results. Two servers on the standalone Valkey (two key prefixes) run the same shopping
scenario, one with the one-script path and one forced through the saga, and every key
they wrote is compared (ids, timestamps and the saga's own bookkeeping aside)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.valkey.embedded import EmbeddedValkey
from tests.conftest import make_settings
from tests.helpers import ServerThread, WsClient

pytestmark = pytest.mark.anyio

# what only the saga writes: its reservations, its applied-effect sets, its index, the plan
# it keeps in the order record for a sweeper, and the record of an attempt that failed
# (`released`: it binds nothing; one script that fails writes nothing)
SAGA_ONLY_KEYS = re.compile(r":(res|applied|saga)$")
SAGA_ONLY_FIELDS = {"plan"}
# who is watching, per node and tick: timing, not orders
PRESENCE_KEYS = re.compile(r":(presence|joined)$")


@pytest.fixture
def pair(valkey: EmbeddedValkey) -> Iterator[tuple[ServerThread, ServerThread]]:
    # no social-proof flush mid-scenario: its events would interleave by timing
    quiet = {"waitlist_hold_ms": 60_000, "social_interval_s": 3600.0}
    one = ServerThread(make_settings(**quiet), valkey.url).start()
    saga = ServerThread(make_settings(**quiet), valkey.url).start()
    saga.node.saga.one_script = lambda plan: False  # type: ignore[method-assign]
    yield one, saga
    one.stop()
    saga.stop()


async def _scenario(server: ServerThread) -> tuple[str, list[Any]]:
    """The shopping: a deal that sells out, a retry, a reused key, list-price buys up to
    out of stock, and a waitlist hold bought by its holder. Returns (session id, every
    reply and event the viewers saw, in order)."""
    server.product("p1", price=1000, stock=10, commission_bps=1000)
    server.product("p2", price=500, stock=3, commission_bps=500)
    server.product("p3", price=700, stock=0)
    sid = server.session(["p1", "p2", "p3"])
    seen: list[Any] = []
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    viewers = {}
    for name in ("ann", "bob", "cy", "dan"):
        viewers[name] = await WsClient.connect(server.ws_url,
                                               token=server.token(name, "viewer", name=name))
        await viewers[name].ok("join", session=sid)
    ann, bob, cy, dan = viewers.values()
    ends = int(time.time() * 1000) + 600_000
    await creator.ok("pin", product="p1", deal={"price": 800, "stock": 2,
                                                "per_buyer_limit": 1, "ends_at": ends})
    seen.append(await ann.ok("buy_now", product="p1", qty=1, idempotency_key="a1", price=800))
    seen.append(await ann.ok("buy_now", product="p1", qty=1, idempotency_key="a1", price=800))
    seen.append(await ann.err("buy_now", product="p1", qty=2, idempotency_key="a1", price=800))
    seen.append(await ann.err("buy_now", product="p1", qty=1, idempotency_key="a2", price=800))
    seen.append(await bob.ok("buy_now", product="p1", qty=1, idempotency_key="b1", price=800))
    sold = await cy.wait_event(lambda e: e["t"] == "sold_out")
    seen.append(sold["d"])
    seen.append(await cy.err("buy_now", product="p1", qty=1, idempotency_key="c1", price=800))
    await creator.ok("unpin")
    seen.append(await cy.ok("buy_now", product="p2", qty=2, idempotency_key="c2"))
    seen.append(await bob.err("buy_now", product="p2", qty=2, idempotency_key="b2"))
    seen.append(await bob.ok("buy_now", product="p2", qty=1, idempotency_key="b3"))
    await cy.wait_event(lambda e: e["t"] == "sold_out" and e["d"]["product"] == "p2")
    seen.append(await dan.ok("waitlist", product="p3"))
    r = server.http("PATCH", "/api/products/p3", token=server.token("seller1", "seller"),
                    json={"stock": 1})
    assert r.status_code == 200, r.text
    seen.append((await dan.wait_event(lambda e: e["t"] == "restocked"))["d"]["product"])
    seen.append(await dan.ok("buy_now", product="p3", qty=1, idempotency_key="d1"))
    await asyncio.sleep(0.3)  # private events behind the last reply
    for c in (ann, bob, cy, dan):
        await c.ok("ping")  # reads what arrived meanwhile
        seen.append([e["t"] for e in c.events if e["t"] in ("order", "sold_out", "cart")])
    for c in (creator, ann, bob, cy, dan):
        await c.close()
    return sid, seen


def _normal(value: Any, sid: str) -> Any:
    """Ids and times that differ between two runs of the same scenario, made equal."""
    if isinstance(value, dict):
        return {_normal(k, sid): _normal(v, sid) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v, sid) for v in value]
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text.replace(sid, "SID")
    text = re.sub(r"deal_[0-9a-f]+", "DEAL", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "BATCH", text)  # a waitlist restock's batch
    text = re.sub(r"\b1\d{12}\b", "T", text)  # epoch ms
    text = re.sub(r'"(stream_ts_ms|at)":\d+', r'"\1":T', text)  # ms into the show
    return re.sub(r"\bT-\d+\b", "ID", text)  # stream ids made of epoch ms


async def _dump(r: aioredis.Redis, prefix: str, sid: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for raw in r.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        name = _normal(key[len(prefix):], sid)
        if SAGA_ONLY_KEYS.search(name) or PRESENCE_KEYS.search(name):
            continue
        kind = (await r.type(key)).decode()
        if kind == "hash":
            # a counter at 0 and a counter never moved read the same (HINCRBY of a missing
            # field starts at 0)
            value: Any = {k: v for k, v in (await r.hgetall(key)).items()
                          if k.decode() not in SAGA_ONLY_FIELDS and v != b"0"}
            if value.get(b"status") == b"released":
                continue
            if name.endswith(":counters"):  # who was watching at the pin: the ticks' timing
                value = {k: v for k, v in value.items()
                         if not k.startswith((b"impressions:", b"peak_viewers", b"viewers"))}
            if name.endswith(":session"):
                value.pop(b"epoch", None)  # a random id per session
        elif kind == "list":
            value = await r.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(await r.smembers(key))
        elif kind == "zset":
            value = await r.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = [fields for _, fields in await r.xrange(key)]
        else:
            value = await r.get(key)
        out[name] = _normal(value, sid)
    return out


async def test_one_script_orders_leave_the_same_state_as_the_saga(
        pair: tuple[ServerThread, ServerThread], valkey: EmbeddedValkey) -> None:
    one, saga = pair
    (sid_one, seen_one), (sid_saga, seen_saga) = await asyncio.gather(
        _scenario(one), _scenario(saga))
    assert _normal(seen_one, sid_one) == _normal(seen_saga, sid_saga)
    assert seen_one[2]["code"] == "conflict" and seen_one[3]["code"] == "limit_exceeded"
    assert seen_one[6]["code"] == "sold_out" and seen_one[8]["code"] == "out_of_stock"
    await asyncio.sleep(0.5)  # the saga server's effects and settle are all done
    r = aioredis.from_url(valkey.url)
    try:
        state_one = await _dump(r, one.settings.key_prefix, sid_one)
        state_saga = await _dump(r, saga.settings.key_prefix, sid_saga)
        # each server took its own path: only the saga keeps reservations
        assert [k async for k in r.scan_iter(match=f"{one.settings.key_prefix}:*:res")] == []
        assert [k async for k in r.scan_iter(match=f"{saga.settings.key_prefix}:*:res")]
    finally:
        await r.aclose()
    assert state_one.keys() == state_saga.keys()
    for key in state_one:
        assert state_one[key] == state_saga[key], key
    product = state_one[":{p:p1}:product"]
    assert product["sold"] == "2" and "held" not in product and "reserved" not in product
    assert state_one[":{p:p3}:product"]["wl_converted"] == "1"
    counters = state_one[":{s:SID}:counters"]
    assert counters["orders"] == "5" and counters["gmv"] == str(800 * 2 + 500 * 3 + 700)


async def test_an_order_on_one_valkey_is_one_script(valkey: EmbeddedValkey) -> None:
    server = ServerThread(make_settings(), valkey.url).start()
    r = aioredis.from_url(valkey.url)
    try:
        server.product("p1", price=1000, stock=50)
        sid = server.session(["p1"])
        ann = await WsClient.connect(server.ws_url, token=server.token("ann"))
        await ann.ok("join", session=sid)
        await asyncio.sleep(0.5)  # the join's reads and the first ticks are done
        before = (await r.info("commandstats"))["cmdstat_evalsha"]["calls"]
        orders = [await ann.ok("buy_now", product="p1", qty=1, idempotency_key=f"k{i}")
                  for i in range(20)]
        after = (await r.info("commandstats"))["cmdstat_evalsha"]["calls"]
        assert len({o["id"] for o in orders}) == 20
        # one order_place.lua per order; the counters ticks (0.2 s) run a few room_tick.lua
        assert 20 <= after - before <= 20 + 10
        await ann.close()
    finally:
        server.stop()
        await r.aclose()
