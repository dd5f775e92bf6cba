"""Waitlists: join at zero stock, a restock's offers to the first k users, holds only their
holders can buy, an expired (or given-up) hold passing to the next user, and stock
conservation with held units counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.valkey.store import Store, as_dict
from tests.helpers import ServerThread, WsClient, joined_viewer

pytestmark = pytest.mark.anyio


def _restock(server: ServerThread, pid: str, stock: int) -> dict[str, Any]:
    r = server.http("PATCH", f"/api/products/{pid}", token=server.token("seller1", "seller"),
                    json={"stock": stock})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _conserved(server: ServerThread, url: str, pid: str) -> dict[str, int]:
    """The product's counters; asserts stock + held + reserved + wl_held = initial +
    restocked - sold + refunded (docs/architecture.md)."""
    store = Store(url, timeout_s=2.0, cluster=server.settings.redis_cluster)
    await store.open()
    try:
        raw = as_dict(await store.call("HGETALL", server.node.keys.product(pid)))
    finally:
        await store.close()
    p = {k: int(v) for k, v in raw.items()
         if k in ("stock", "held", "reserved", "wl_held", "initial_stock", "restocked", "sold",
                  "refunded", "wl_offers", "wl_converted")}
    assert p["stock"] + p.get("held", 0) + p.get("reserved", 0) + p.get("wl_held", 0) == \
        p["initial_stock"] + p["restocked"] - p["sold"] + p["refunded"], p
    return p


def _offers(clients: list[WsClient]) -> list[int]:
    return [i for i, c in enumerate(clients) if any(e["t"] == "restocked" for e in c.events)]


async def test_restock_of_3_with_10_waiting_gives_3_offers(server: ServerThread,
                                                           valkey_url: str) -> None:
    url = valkey_url
    server.product("w1", price=1200, stock=1)
    sid = server.session(["w1"])
    first = await joined_viewer(server, "first", sid)
    assert (await first.err("waitlist", product="w1"))["code"] == "conflict"  # in stock
    await first.ok("buy_now", product="w1", qty=1, idempotency_key="a")
    waiting = [await joined_viewer(server, f"wait{i}", sid) for i in range(10)]
    for i, c in enumerate(waiting):
        got = await c.ok("waitlist", product="w1")
        assert got == {"product": "w1", "holding": False, "place": i + 1, "waiting": i + 1}
    assert (await waiting[4].ok("waitlist", product="w1"))["place"] == 5  # idempotent
    anon = await WsClient.connect(server.ws_url)
    assert (await anon.err("waitlist", product="w1"))["code"] == "unauthorized"
    assert (await first.err("waitlist", product="nope"))["code"] == "not_found"

    product = _restock(server, "w1", 3)
    assert product["stock"] == 0  # all three units are held for the first three
    for c in waiting[:3]:
        ev = await c.wait_event("restocked")
        assert ev["d"]["product"] == "w1" and ev["d"]["hold_until"] > ev["ts"]
    await asyncio.gather(*(c.drain(0.3) for c in waiting[3:]))
    assert _offers(waiting) == [0, 1, 2]
    p = await _conserved(server, url, "w1")
    assert (p["wl_held"], p["wl_offers"]) == (3, 3)
    # a held unit is its holder's only: the others find it sold out
    assert (await waiting[5].err("buy_now", product="w1", qty=1,
                                 idempotency_key="x"))["code"] == "sold_out"
    assert (await waiting[0].err("buy_now", product="w1", qty=2, idempotency_key="y"))[
        "available"] == 1
    assert (await waiting[0].ok("waitlist", product="w1"))["holding"] is True
    order = await waiting[0].ok("buy_now", product="w1", qty=1, idempotency_key="h")
    assert order["lines"][0]["unit_price"] == 1200
    await waiting[1].ok("cart_set", product="w1", qty=1)
    assert (await waiting[1].ok("checkout", idempotency_key="c"))["total"] == 1200
    p = await _conserved(server, url, "w1")
    assert (p["wl_held"], p["wl_converted"], p["sold"]) == (1, 2, 3)
    # giving a hold up passes it to the next in line (wait3) at once
    assert await waiting[2].ok("waitlist_leave", product="w1") == {"product": "w1", "left": True}
    await waiting[3].wait_event("restocked")
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    assert report["waitlist"] == {"offers": 4, "conversions": 2}
    await _conserved(server, url, "w1")
    for c in (first, anon, *waiting):
        await c.close()


async def test_an_expired_hold_moves_to_the_next_user(make_server: Any, valkey_url: str) -> None:
    url = valkey_url
    server = make_server(waitlist_hold_ms=500, counters_interval_s=0.1)
    # a second node of the same deployment sweeps too: each hold still passes on once
    make_server(key_prefix=server.settings.key_prefix, waitlist_hold_ms=500,
                counters_interval_s=0.1)
    server.product("w2", price=700, stock=0)
    sid = server.session(["w2"])
    users = [await joined_viewer(server, f"u{i}", sid) for i in range(3)]
    for c in users:
        await c.ok("waitlist", product="w2")
    _restock(server, "w2", 1)
    first = await users[0].wait_event("restocked")
    # u0 does not buy in time: the hold passes to u1 (once, whichever node sweeps)
    second = await users[1].wait_event("restocked", timeout=5)
    assert second["d"]["hold_until"] > first["d"]["hold_until"]
    assert (await users[0].err("buy_now", product="w2", qty=1,
                               idempotency_key="late"))["code"] == "sold_out"
    await users[1].ok("buy_now", product="w2", qty=1, idempotency_key="mine")
    p = await _conserved(server, url, "w2")
    assert (p["wl_offers"], p["wl_converted"], p["wl_held"], p["stock"]) == (2, 1, 0, 0)
    # u2 waits on; a restock of 2 holds one for u2 and leaves one in the stock; u2's
    # unclaimed hold, with nobody left waiting, returns to the stock
    assert _restock(server, "w2", 2)["stock"] == 1
    await users[2].wait_event("restocked")
    ev = await users[2].wait_event(lambda e: e["t"] == "product" and e["d"]["stock"] == 2,
                                   timeout=5)
    assert ev["d"]["id"] == "w2"
    p = await _conserved(server, url, "w2")
    assert (p["wl_held"], p["stock"], p["wl_offers"]) == (0, 2, 3)
    assert [sum(1 for e in u.events if e["t"] == "restocked") for u in users] == [1, 1, 1]
    for c in users:
        await c.close()
