"""Cart, checkout, buy-now and flash deals against the real server and embedded Valkey."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.helpers import ServerThread, WsClient, joined_viewer

pytestmark = pytest.mark.anyio


async def deal_pinned(server: ServerThread, *, price: int, stock: int, deal: dict[str, int],
                      ends_in_ms: int) -> tuple[str, WsClient]:
    """p1 (list `price`, `stock` units) in a live session whose creator has pinned it with
    `deal`, ending `ends_in_ms` from now: the session id and the creator's connection."""
    server.product("p1", price=price, stock=stock)
    sid = server.session(["p1"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    await creator.ok("pin", product="p1",
                     deal={**deal, "ends_at": int(time.time() * 1000) + ends_in_ms})
    return sid, creator


async def test_cart_ops_and_sync_between_connections(server: ServerThread) -> None:
    server.product("p1", price=1500, stock=10)
    server.product("p2", price=700, stock=3)
    sid = server.session(["p1", "p2"])
    a = await joined_viewer(server, "ann", sid)
    b = await WsClient.connect(server.ws_url, token=server.token("ann"), use_msgpack=True)
    cart = await a.ok("cart_add", product="p1", qty=2)
    assert cart == {"lines": [{"product": "p1", "qty": 2, "unit_price": 1500, "session": sid,
                               "title": "p1", "image_url": ""}], "total": 3000, "v": 1}
    ev = await b.wait_event("cart")
    assert ev["d"]["total"] == 3000 and ev["d"]["v"] == 1
    cart = await a.ok("cart_add", product="p1", qty=1)
    assert cart["lines"][0]["qty"] == 3 and cart["v"] == 2
    cart = await a.ok("cart_set", product="p2", qty=3)
    assert cart["total"] == 3 * 1500 + 3 * 700
    assert (await a.err("cart_set", product="p2", qty=4))["code"] == "out_of_stock"
    assert (await a.err("cart_add", product="p1", qty=99))["code"] == "bad_request"
    assert (await a.err("cart_set", product="p1", qty=0))["code"] == "bad_request"
    assert (await a.err("cart_set", product="p1", qty=2.5))["code"] == "bad_request"
    assert (await a.err("cart_add", product="nope", qty=1))["code"] == "not_found"
    cart = await a.ok("cart_remove", product="p2")
    assert [line["product"] for line in cart["lines"]] == ["p1"]
    assert (await b.ok("cart_get"))["total"] == 3 * 1500
    anon = await WsClient.connect(server.ws_url)
    assert (await anon.err("cart_get"))["code"] == "unauthorized"
    for c in (a, b, anon):
        await c.close()


async def test_cart_sold_out_and_adds_only_when_quantity_grows(server: ServerThread) -> None:
    server.product("p1", stock=10)
    server.product("gone", stock=0)
    sid = server.session(["p1", "gone"])
    v = await WsClient.connect(server.ws_url, token=server.token("b"))
    await v.ok("join", session=sid)
    assert (await v.err("cart_add", product="gone", qty=1))["code"] == "sold_out"
    await v.ok("cart_set", product="p1", qty=3)
    await v.ok("cart_set", product="p1", qty=2)  # lower: not an add
    await v.ok("cart_set", product="p1", qty=2)  # same: not an add
    await v.ok("cart_add", product="p1", qty=1)  # grows: an add
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    assert report["adds"] == 2
    await v.close()


async def test_checkout_is_atomic_and_idempotent(server: ServerThread) -> None:
    server.product("p1", price=1000, stock=5)
    server.product("p2", price=250, stock=1)
    sid = server.session(["p1", "p2"])
    a = await joined_viewer(server, "bob", sid)
    await a.ok("cart_set", product="p1", qty=2)
    await a.ok("cart_set", product="p2", qty=1)
    # someone else takes the last p2 first: the whole checkout fails, nothing is bought
    other = await joined_viewer(server, "cy", sid)
    await other.ok("buy_now", product="p2", qty=1, idempotency_key="k-other")
    err = await a.err("checkout", idempotency_key="k1")
    assert err["code"] == "out_of_stock" and err["product"] == "p2"
    assert server.http("GET", "/api/products/p1").json()["stock"] == 5
    await a.ok("cart_remove", product="p2")
    assert (await a.err("checkout", idempotency_key="k1", total=1))["code"] == "conflict"
    order = await a.ok("checkout", idempotency_key="k1", total=2000)
    assert order["total"] == 2000 and order["lines"][0]["qty"] == 2
    assert order["lines"][0]["attribution"] == "direct"
    assert (await a.ok("cart_get"))["lines"] == []
    again = await a.ok("checkout", idempotency_key="k1", total=2000)
    assert again["id"] == order["id"]
    assert (await a.err("checkout", idempotency_key="k1", total=5))["code"] == "conflict"
    assert server.http("GET", "/api/products/p1").json()["stock"] == 3
    ev = await a.wait_event(lambda e: e["t"] == "order")
    assert ev["d"]["id"] == order["id"]
    await a.close()
    await other.close()


async def test_buy_now_concurrent_duplicates_make_one_order(server: ServerThread) -> None:
    server.product("p1", price=900, stock=50)
    sid = server.session(["p1"])
    conns = [await joined_viewer(server, "dee", sid) for _ in range(10)]
    results = await asyncio.gather(*(
        c.ok("buy_now", product="p1", qty=2, idempotency_key="same") for c in conns))
    assert len({r["id"] for r in results}) == 1
    assert server.http("GET", "/api/products/p1").json()["stock"] == 48
    r = await conns[0].request("buy_now", product="p1", qty=3, idempotency_key="same")
    assert r["error"]["code"] == "conflict"
    for c in conns:
        await c.close()


async def test_buy_now_price_check_and_not_live(server: ServerThread) -> None:
    server.product("p1", price=900, stock=5)
    sid = server.session(["p1"], start=False)
    a = await joined_viewer(server, "eve", sid)
    assert (await a.err("buy_now", product="p1", qty=1, idempotency_key="x"))["code"] == "not_live"
    server.http("POST", f"/api/sessions/{sid}/start", token=server.token("creator1", "creator"))
    err = await a.err("buy_now", product="p1", qty=1, idempotency_key="y", price=800)
    assert err["code"] == "conflict" and err["price"] == 900
    order = await a.ok("buy_now", product="p1", qty=1, idempotency_key="z", price=900)
    assert order["lines"][0]["unit_price"] == 900
    assert (await a.err("buy_now", product="p1", qty=5, idempotency_key="w"))["code"] == \
        "out_of_stock"
    await a.ok("buy_now", product="p1", qty=4, idempotency_key="v")
    assert (await a.err("buy_now", product="p1", qty=1, idempotency_key="u"))["code"] == "sold_out"
    ev = await a.wait_event("sold_out")
    assert ev["d"] == {"product": "p1"}
    await a.close()


async def test_flash_deal_storm(server: ServerThread) -> None:
    server.product("p1", price=5000, stock=80)
    sid = server.session(["p1"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    ends = int(time.time() * 1000) + 60_000
    bad = await creator.err("pin", product="p1", deal={"price": 6000, "stock": 10,
                                                        "per_buyer_limit": 1, "ends_at": ends})
    assert bad["code"] == "bad_request"
    too_many = await creator.err("pin", product="p1", deal={"price": 3000, "stock": 81,
                                                            "per_buyer_limit": 1, "ends_at": ends})
    assert too_many["code"] == "out_of_stock"
    pinned = await creator.ok("pin", product="p1", deal={"price": 3000, "stock": 50,
                                                         "per_buyer_limit": 1, "ends_at": ends})
    assert pinned["pinned"]["deal"]["stock_left"] == 50
    assert server.http("GET", "/api/products/p1").json()["stock"] == 30
    buyers = [await joined_viewer(server, f"b{i}", sid, use_msgpack=bool(i % 2))
              for i in range(120)]
    snap = await buyers[0].ok("join", session=sid)
    assert snap["pinned"]["deal"]["status"] == "open"
    replies = await asyncio.gather(*(
        b.request("buy_now", product="p1", qty=1, idempotency_key=f"k{i}")
        for i, b in enumerate(buyers)))
    ok = [r for r in replies if r["ok"]]
    codes = {r["error"]["code"] for r in replies if not r["ok"]}
    assert len(ok) == 50 and codes == {"sold_out"}
    assert all(r["result"]["lines"][0]["unit_price"] == 3000 for r in ok)
    second = await buyers[0].request("buy_now", product="p1", qty=1, idempotency_key="again")
    assert second["error"]["code"] in ("limit_exceeded", "sold_out")
    for b in buyers:
        await b.wait_event("sold_out")
    # unpin closes the deal: nothing left to return, list price again, old price -> deal_ended
    await creator.ok("unpin")
    ev = await buyers[1].wait_event(lambda e: e["t"] == "deal" and e["d"]["status"] == "closed")
    assert ev["d"]["stock_left"] == 0
    p = server.http("GET", "/api/products/p1").json()
    assert p["stock"] == 30
    late = await buyers[2].err("buy_now", product="p1", qty=1, idempotency_key="late", price=3000)
    assert late["code"] == "deal_ended"
    order = await buyers[2].ok("buy_now", product="p1", qty=1, idempotency_key="late2")
    assert order["lines"][0]["unit_price"] == 5000
    for b in [creator, *buyers]:
        await b.close()


async def test_deal_expiry_returns_stock(server: ServerThread) -> None:
    sid, creator = await deal_pinned(server, price=5000, stock=20, ends_in_ms=600,
                                     deal={"price": 4000, "stock": 5, "per_buyer_limit": 2})
    v = await joined_viewer(server, "fay", sid)
    await v.ok("buy_now", product="p1", qty=2, idempotency_key="a")
    assert (await v.err("buy_now", product="p1", qty=1, idempotency_key="b"))["code"] == \
        "limit_exceeded"
    ev = await v.wait_event(lambda e: e["t"] == "deal" and e["d"]["status"] == "closed", 5)
    assert ev["d"]["stock_left"] == 3
    assert server.http("GET", "/api/products/p1").json()["stock"] == 18
    await v.close()
    await creator.close()


async def test_a_due_deal_is_closed_by_another_node_without_viewers(make_server: Any) -> None:
    first = make_server()
    sid, creator = await deal_pinned(first, price=1000, stock=20, ends_in_ms=800,
                                     deal={"price": 500, "stock": 8, "per_buyer_limit": 1})
    await creator.close()
    first.stop()  # the pinning node is gone before the deal ends
    second = make_server(key_prefix=first.settings.key_prefix)
    deadline = time.monotonic() + 10
    while second.http("GET", "/api/products/p1").json()["stock"] != 20:
        assert time.monotonic() < deadline, "the deal was never closed"
        time.sleep(0.1)
    pinned = second.http("GET", f"/api/sessions/{sid}").json()["pinned"]
    assert pinned["deal"]["status"] == "closed"


async def test_after_a_sell_out_the_node_answers_without_a_script(server: ServerThread) -> None:
    sid, creator = await deal_pinned(server, price=1000, stock=10, ends_in_ms=60_000,
                                     deal={"price": 500, "stock": 2, "per_buyer_limit": 2})
    winner = await joined_viewer(server, "win", sid)
    first = await winner.ok("buy_now", product="p1", qty=2, idempotency_key="w", price=500)
    await winner.wait_event("sold_out", timeout=5)
    late = [await joined_viewer(server, f"late{i}", sid) for i in range(5)]
    orders = server.node.orders
    before = orders.sold_out_answers
    for i, v in enumerate(late):
        err = await v.err("buy_now", product="p1", qty=1, idempotency_key=f"k{i}", price=500)
        assert err["code"] == "sold_out"
    again = await winner.ok("buy_now", product="p1", qty=2, idempotency_key="w", price=500)
    assert again == first  # a retry of a key that bought still gets its order
    assert orders.sold_out_answers - before == 6
    # when units come back (the deal closes on unpin) the node asks the store again
    await creator.ok("unpin")
    await winner.wait_event(lambda e: e["t"] == "deal" and e["d"]["status"] == "closed", 5)
    await late[0].drain(0.3)
    order = await late[0].ok("buy_now", product="p1", qty=1, idempotency_key="after")
    assert order["lines"][0]["unit_price"] == 1000
    for c in (creator, winner, *late):
        await c.close()


async def test_a_storm_waits_in_its_lane_and_late_buyers_need_no_script(
        make_server: Any) -> None:
    """One attempt at a time in the lane: 4 units, 30 buyers at once → 4 orders, 26
    `sold_out`, and once the node heard the sell-out the rest were answered without a saga."""
    server = make_server(buy_now_lane=1)
    sid, creator = await deal_pinned(server, price=1000, stock=50, ends_in_ms=60_000,
                                     deal={"price": 500, "stock": 4, "per_buyer_limit": 1})
    buyers = [await joined_viewer(server, f"s{i}", sid) for i in range(30)]
    before = server.node.orders.sold_out_answers
    replies = await asyncio.gather(*(
        b.request("buy_now", product="p1", qty=1, idempotency_key="k", price=500)
        for b in buyers))
    won = [r for r in replies if r["ok"]]
    codes = [r["error"]["code"] for r in replies if not r["ok"]]
    assert len(won) == 4 and codes == ["sold_out"] * 26
    assert server.node.orders.sold_out_answers > before
    assert server.node.orders.lanes.waiting() == 0
    assert server.http("GET", "/api/products/p1").json()["stock"] == 46
    for c in (creator, *buyers):
        await c.close()


async def test_a_deal_is_never_dearer_than_the_list_price(server: ServerThread) -> None:
    sid, creator = await deal_pinned(server, price=1000, stock=10, ends_in_ms=60_000,
                                     deal={"price": 900, "stock": 5, "per_buyer_limit": 5})
    v = await joined_viewer(server, "gil", sid)
    seller = server.token("seller1", "seller")
    # a price cut that stays above the deal leaves it open
    assert server.http("PATCH", "/api/products/p1", token=seller,
                       json={"price": 950}).status_code == 200
    order = await v.ok("buy_now", product="p1", qty=1, idempotency_key="a", price=900)
    assert order["lines"][0]["unit_price"] == 900
    # a cut to or below the deal's price closes the deal: its units return to the stock
    assert server.http("PATCH", "/api/products/p1", token=seller,
                       json={"price": 850}).status_code == 200
    ev = await v.wait_event(lambda e: e["t"] == "deal" and e["d"]["status"] == "closed", 5)
    assert ev["d"]["stock_left"] == 4
    assert server.http("GET", "/api/products/p1").json()["stock"] == 9
    err = await v.err("buy_now", product="p1", qty=1, idempotency_key="b", price=900)
    assert err["code"] == "deal_ended" and err["price"] == 850
    order = await v.ok("buy_now", product="p1", qty=1, idempotency_key="c", price=850)
    assert order["lines"][0]["unit_price"] == 850
    await v.close()
    await creator.close()


async def test_social_proof_is_aggregated_and_never_leaks_ids(server: ServerThread) -> None:
    server.product("p1", price=100, stock=1000)
    sid = server.session(["p1"])
    watcher = await WsClient.connect(server.ws_url)
    await watcher.ok("join", session=sid)
    buyers = [await joined_viewer(server, f"user-{i}", sid) for i in range(30)]
    await asyncio.gather(*(b.ok("buy_now", product="p1", qty=1, idempotency_key="k")
                           for b in buyers))
    await watcher.drain(1.5)
    purchases = [e for e in watcher.events if e["t"] == "purchase"]
    assert 1 <= len(purchases) <= 6
    assert sum(e["d"]["count"] for e in purchases) == 30
    assert sum(e["d"]["qty"] for e in purchases) == 30
    raw_ids = {f"user-{i}" for i in range(30)}
    names = [n for e in purchases for n in e["d"]["names"]]
    assert names and all(n.startswith("User-") and n not in raw_ids for n in names)
    stock_events = [e for e in watcher.events if e["t"] == "product"]
    assert stock_events and stock_events[-1]["d"]["stock"] == 970
    for c in [watcher, *buyers]:
        await c.close()


async def test_storm_500_buyers_50_units(server: ServerThread) -> None:
    server.product("hot", price=2000, stock=200)
    sid = server.session(["hot"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    await creator.ok("pin", product="hot", deal={
        "price": 999, "stock": 50, "per_buyer_limit": 1,
        "ends_at": int(time.time() * 1000) + 120_000})
    buyers = []
    for i in range(500):
        c = await WsClient.connect(server.ws_url, token=server.token(f"u{i}"))
        buyers.append(c)
    await asyncio.gather(*(b.ok("join", session=sid) for b in buyers))
    replies = await asyncio.gather(*(
        b.request("buy_now", product="hot", qty=1, idempotency_key="storm") for b in buyers))
    ok = [r for r in replies if r["ok"]]
    assert len(ok) == 50
    assert {r["error"]["code"] for r in replies if not r["ok"]} == {"sold_out"}
    assert len({r["result"]["buyer"] for r in ok}) == 50
    snap = await creator.ok("join", session=sid)
    assert snap["pinned"]["deal"]["stock_left"] == 0
    product = server.http("GET", "/api/products/hot").json()
    assert product["stock"] == 150  # 50 went to the deal and were all sold
    await asyncio.gather(*(b.wait_event("sold_out", timeout=10) for b in buyers))
    await asyncio.gather(*(b.close() for b in [creator, *buyers]))


async def test_cart_survives_a_server_restart(make_server: Any) -> None:
    first = make_server()
    first.product("p1", price=500, stock=9)
    a = await WsClient.connect(first.ws_url, token=first.token("gus"))
    await a.ok("cart_add", product="p1", qty=4)
    await a.close()
    first.stop()
    second = make_server(key_prefix=first.settings.key_prefix)
    b = await WsClient.connect(second.ws_url, token=second.token("gus"))
    cart = await b.ok("cart_get")
    assert cart["lines"][0]["qty"] == 4 and cart["total"] == 2000
    await b.close()
