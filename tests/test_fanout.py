"""Fan-out: every viewer gets every room event once, in the same gap-free `seq` order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import ServerThread, WsClient, unique_prefix

pytestmark = pytest.mark.anyio


def room_events(c: WsClient) -> list[tuple[str, int, Any]]:
    return [(e["t"], e["seq"], e["d"]) for e in c.events if "seq" in e]


async def pin_storm(creator: WsClient, products: list[str], n: int,
                    **args: Any) -> list[int]:
    """n alternating pins/unpins; the seq of each."""
    seqs = []
    for i in range(n):
        if i % 2 == 0:
            res = await creator.ok("pin", product=products[(i // 2) % len(products)], **args)
        else:
            res = await creator.ok("unpin", **args)
        seqs.append(res["seq"])
    return seqs


async def test_200_viewers_mixed_codecs_get_every_event_in_order(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(rate_per_s=1000, rate_burst=1000)
    products = ["p1", "p2", "p3"]
    for pid in products:
        server.product(pid)
    sid = server.session(products)
    viewers = await asyncio.gather(*(WsClient.connect(server.ws_url, use_msgpack=bool(i % 2))
                                     for i in range(200)))
    snaps = await asyncio.gather(*(v.ok("join", session=sid) for v in viewers))
    base = max(s["seq"] for s in snaps)
    assert all(s["seq"] == base for s in snaps)
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    seqs = await pin_storm(creator, products, 20)
    assert seqs == list(range(base + 1, base + 21))
    await asyncio.gather(*(v.wait_event(lambda e: e.get("seq") == seqs[-1], timeout=15)
                           for v in viewers))
    expected = room_events(viewers[0])
    assert [s for _, s, _ in expected] == seqs
    assert [t for t, _, _ in expected] == ["pinned", "unpinned"] * 10
    for v in viewers:
        assert room_events(v) == expected  # same events, same data, in both codecs
    assert sum(v.frames for v in viewers) >= 200  # batched frames are fine, but all arrived
    await asyncio.gather(*(v.close() for v in [creator, *viewers]))


async def test_concurrent_creators_give_one_gap_free_order(
        make_server: Callable[..., ServerThread]) -> None:
    """Pins from several connections at once: every viewer sees one total order (events may
    arrive batched as an array in one frame)."""
    server = make_server(rate_per_s=1000, rate_burst=1000)
    server.product("p1")
    server.product("p2")
    sid = server.session(["p1", "p2"])
    viewers = [await WsClient.connect(server.ws_url, use_msgpack=bool(i % 2)) for i in range(10)]
    base = 0
    for v in viewers:
        base = (await v.ok("join", session=sid))["seq"]
    creators = [await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
                for _ in range(4)]
    results = await asyncio.gather(*(pin_storm(c, ["p1", "p2"], 10, session=sid) for c in creators))
    all_seqs = sorted(s for r in results for s in r if s)
    last = all_seqs[-1]
    await asyncio.gather(*(v.wait_event(lambda e: e.get("seq") == last, timeout=10)
                           for v in viewers))
    first = room_events(viewers[0])
    assert [s for _, s, _ in first] == list(range(base + 1, last + 1))
    for v in viewers:
        assert room_events(v) == first
    await asyncio.gather(*(c.close() for c in [*creators, *viewers]))


async def test_two_nodes_share_one_sequence(make_server: Callable[..., ServerThread]) -> None:
    prefix = unique_prefix()
    a = make_server(key_prefix=prefix, node_id="node-a")
    b = make_server(key_prefix=prefix, node_id="node-b")
    a.product("p1")
    sid = a.session(["p1"])
    viewers = [await WsClient.connect((a if i % 2 else b).ws_url, use_msgpack=i % 3 == 0)
               for i in range(6)]
    for v in viewers:
        await v.ok("join", session=sid)
    creator_a = await WsClient.connect(a.ws_url, token=a.token("creator1", "creator"))
    creator_b = await WsClient.connect(b.ws_url, token=b.token("creator1", "creator"))
    seqs = []
    for i in range(6):
        c = creator_a if i % 2 else creator_b
        seqs.append((await c.ok("pin", product="p1", session=sid))["seq"])
    await asyncio.gather(*(v.wait_event(lambda e: e.get("seq") == seqs[-1]) for v in viewers))
    expected = room_events(viewers[0])
    assert [s for _, s, _ in expected][-6:] == seqs
    for v in viewers:
        assert room_events(v) == expected
    # viewers are counted across both nodes
    await viewers[0].wait_event(lambda e: e["t"] == "counters" and e["d"]["viewers"] == 6,
                                timeout=5)
    await asyncio.gather(*(c.close() for c in [creator_a, creator_b, *viewers]))


async def test_product_patch_reaches_rooms_showing_it(server: ServerThread) -> None:
    server.product("p1", seller="s1")
    sid = server.session(["p1"])
    v = await WsClient.connect(server.ws_url, use_msgpack=True)
    await v.ok("join", session=sid)
    r = server.http("PATCH", "/api/products/p1", token=server.token("s1", "seller"),
                    json={"price": 777})
    assert r.status_code == 200
    ev = await v.wait_event("product")
    assert ev["d"] == {"id": "p1", "price": 777, "stock": 100}
    await v.close()


async def test_stock_changes_reach_every_session_showing_the_product(
        server: ServerThread) -> None:
    server.product("p1", stock=10)
    a = server.session(["p1"])
    b = server.session(["p1"], creator="creator2")
    watcher = await WsClient.connect(server.ws_url)
    await watcher.ok("join", session=b)
    buyer = await WsClient.connect(server.ws_url, token=server.token("b"))
    await buyer.ok("join", session=a)
    order = await buyer.ok("buy_now", product="p1", qty=4, idempotency_key="k")
    ev = await watcher.wait_event(lambda e: e["t"] == "product" and e["d"]["stock"] == 6)
    assert ev["d"]["id"] == "p1"
    server.http("POST", f"/api/orders/{order['id']}/refund", token=server.token("seller1",
                "seller"), json={"refund_id": "r"})
    await watcher.wait_event(lambda e: e["t"] == "product" and e["d"]["stock"] == 10)
    server.http("PATCH", "/api/products/p1", token=server.token("seller1", "seller"),
                json={"stock": 0})
    await watcher.wait_event(lambda e: e["t"] == "sold_out" and e["d"]["product"] == "p1")
    await watcher.close()
    await buyer.close()
