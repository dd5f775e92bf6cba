"""Auctions: bids, anti-sniping, sudden death, reserve, the close (once, with one order
through the purchase saga), a stock-less close, 200 bidders on two real nodes, and a
property test of bid ordering against the Lua itself."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.cart.orders import prize_order_id
from server.cart.products import NewProduct
from server.errors import ApiError
from server.node import Node
from server.rooms.sessions import NewSession
from server.valkey.store import as_dict, text
from tests.conftest import make_settings
from tests.helpers import ServerThread, WsClient, joined_viewer

pytestmark = pytest.mark.anyio


async def _creator(server: ServerThread, sid: str, sub: str = "creator1") -> WsClient:
    c = await WsClient.connect(server.ws_url, token=server.token(sub, "creator"))
    await c.ok("join", session=sid)
    return c


def _closed(e: dict[str, Any]) -> bool:
    return e["t"] == "auction" and e["d"]["status"] == "closed"


@pytest.fixture
def fast(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(auction_extend_s=1.0)


async def test_bids_outbid_idempotency_and_a_sold_close(fast: ServerThread) -> None:
    server = fast
    server.product("mug", price=2000, stock=5, commission_bps=1000)
    sid = server.session(["mug"])
    creator = await _creator(server, sid)
    ann, bob = await joined_viewer(server, "ann", sid), await joined_viewer(server, "bob", sid)
    assert (await creator.err("auction", product="mug", start_price=500, increment=0,
                              duration_s=2))["field"] == "increment"
    assert (await ann.err("auction", product="mug", start_price=500, increment=50,
                          duration_s=2))["code"] == "forbidden"
    opened = (await creator.ok("auction", product="mug", start_price=500, increment=50,
                               duration_s=2))["auction"]
    aid = opened["id"]
    assert opened["status"] == "open" and opened["top_bid"] is None and opened["min_bid"] == 500
    assert (await creator.err("auction", product="mug", start_price=5, increment=5,
                              duration_s=2))["code"] == "conflict"  # one open per session
    low = await ann.err("bid", auction=aid, amount=499, idempotency_key="a0")
    assert low["code"] == "conflict" and low["min_bid"] == 500 and low["top_bid"] is None
    assert (await creator.err("bid", auction=aid, amount=900,
                              idempotency_key="c"))["code"] == "forbidden"
    assert (await ann.ok("bid", auction=aid, amount=500, idempotency_key="a1"))["bids"] == 1
    short = await bob.err("bid", auction=aid, amount=540, idempotency_key="b1")
    assert short["code"] == "conflict" and short["top_bid"] == 500 and short["min_bid"] == 550
    first = await bob.ok("bid", auction=aid, amount=550, idempotency_key="b1")
    outbid = await ann.wait_event("outbid")
    assert outbid["d"] == {"auction": aid, "product": "mug", "top_bid": 550,
                           "ends_at": first["ends_at"]}
    again = await bob.ok("bid", auction=aid, amount=550, idempotency_key="b1")
    assert again == first and again["bids"] == 2  # a retry counts once, same answer
    assert (await bob.err("bid", auction=aid, amount=600,
                          idempotency_key="b1"))["code"] == "conflict"
    closed = await ann.wait_event(_closed, timeout=8)
    assert closed["d"]["outcome"] == "sold" and closed["d"]["top_bid"] == 550
    assert closed["d"]["bidder"] == "Bob" and closed["d"]["bids"] == 2
    won = await bob.wait_event("won", timeout=5)
    order_ev = await bob.wait_event("order", timeout=5)
    oid = prize_order_id("auction", aid)
    assert won["d"] == {"auction": aid, "product": "mug", "price": 550, "order": oid}
    order = order_ev["d"]
    assert order["id"] == oid and order["source"] == "auction" and order["total"] == 550
    line = order["lines"][0]
    assert (line["qty"], line["unit_price"], line["attribution"], line["session"],
            line["commission"]) == (1, 550, "direct", sid, 55)
    assert (await ann.err("bid", auction=aid, amount=5000,
                          idempotency_key="late"))["code"] == "ended"
    assert server.http("GET", "/api/products/mug").json()["stock"] == 4
    ledger = server.http("GET", "/api/creators/creator1/ledger",
                         token=server.token("creator1", "creator")).json()
    assert [(e["order"], e["amount"], e["kind"]) for e in ledger["entries"]] == [
        (oid, 55, "credit")]
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    assert report["auctions"] == {"run": 1, "sold": 1, "revenue": 550}
    assert (report["orders"], report["gmv"], report["commission"]) == (1, 550, 55)
    public = server.http("GET", f"/api/sessions/{sid}/auctions/{aid}").json()
    assert public["outcome"] == "sold" and public["order"] == oid and public["bids"] == 2
    assert "reserve" not in public and "bidder_id" not in public
    # the close ran once: one `auction closed` event in the room's history, one order
    history = await server.store("XRANGE", server.node.keys.history(sid), "-", "+")
    events = [orjson.loads(as_dict(f)["e"]) for _, f in history]
    assert sum(1 for e in events if _closed(e)) == 1
    # a re-run of the close (any node, any time) changes nothing
    assert await server.on_loop(server.node.auctions.close_due(f"{sid}/{aid}")) == "closed"
    for c in (creator, ann, bob):
        await c.close()


async def test_a_last_second_bid_extends_and_sudden_death_does_not(fast: ServerThread) -> None:
    server = fast  # LIVECART_AUCTION_EXTEND_S = 1
    server.product("lamp", stock=3)
    server.product("vase", stock=3)
    sid = server.session(["lamp", "vase"])
    creator = await _creator(server, sid)
    ann = await joined_viewer(server, "ann", sid)
    a = (await creator.ok("auction", product="lamp", start_price=100, increment=10,
                          duration_s=2))["auction"]
    early = await ann.ok("bid", auction=a["id"], amount=100, idempotency_key="e")
    assert early["extended"] is False and early["ends_at"] == a["ends_at"]
    await asyncio.sleep(max(0.0, (a["ends_at"] - 500) / 1000 - time.time()))
    late = await ann.ok("bid", auction=a["id"], amount=110, idempotency_key="l")
    assert late["extended"] is True and late["ends_at"] > a["ends_at"]
    ev = await ann.wait_event(lambda e: e["t"] == "auction" and e["d"]["bids"] == 2)
    assert ev["d"]["ends_at"] == late["ends_at"]
    closed = await ann.wait_event(_closed, timeout=8)
    assert closed["d"]["ends_at"] == late["ends_at"] and closed["ts"] >= late["ends_at"]

    b = (await creator.ok("auction", product="vase", start_price=100, increment=10,
                          duration_s=2, sudden_death=True))["auction"]
    await asyncio.sleep(max(0.0, (b["ends_at"] - 500) / 1000 - time.time()))
    late = await ann.ok("bid", auction=b["id"], amount=100, idempotency_key="s")
    assert late["extended"] is False and late["ends_at"] == b["ends_at"]
    closed = await ann.wait_event(lambda e: _closed(e) and e["d"]["id"] == b["id"], timeout=8)
    assert closed["d"]["ends_at"] == b["ends_at"] and closed["d"]["outcome"] == "sold"
    for c in (creator, ann):
        await c.close()


async def test_reserve_not_met_and_stock_gone_close_without_an_order(fast: ServerThread) -> None:
    server = fast
    server.product("ring", stock=2)
    server.product("last", stock=1)
    sid = server.session(["ring", "last"])
    creator = await _creator(server, sid)
    ann = await joined_viewer(server, "ann", sid)
    a = (await creator.ok("auction", product="ring", start_price=100, increment=10,
                          duration_s=1, reserve_price=1000))["auction"]
    bid = await ann.ok("bid", auction=a["id"], amount=200, idempotency_key="r")
    assert bid["top_bid"] == 200
    closed = await ann.wait_event(_closed, timeout=8)
    assert closed["d"]["outcome"] == "reserve_not_met" and closed["d"]["order"] is None
    assert closed["d"]["reserve_met"] is False
    oid = prize_order_id("auction", a["id"])
    assert await server.store("EXISTS", server.node.keys.order(oid)) == 0
    assert server.http("GET", "/api/products/ring").json()["stock"] == 2

    # the only unit is bought while the auction runs: it closes `unsold`, for good
    b = (await creator.ok("auction", product="last", start_price=100, increment=10,
                          duration_s=1))["auction"]
    await ann.ok("bid", auction=b["id"], amount=100, idempotency_key="u")
    bob = await joined_viewer(server, "bob", sid)
    await bob.ok("buy_now", product="last", qty=1, idempotency_key="k")
    closed = await ann.wait_event(lambda e: _closed(e) and e["d"]["id"] == b["id"], timeout=8)
    assert closed["d"]["outcome"] == "unsold" and closed["d"]["order"] is None
    oid = prize_order_id("auction", b["id"])
    assert text(await server.store("HGET", server.node.keys.order(oid), "status")) == "void"
    server.http("PATCH", "/api/products/last", token=server.token("seller1", "seller"),
                json={"stock": 5})
    with pytest.raises(ApiError):  # a voided prize order can never be placed
        await server.on_loop(server.node.orders.saga.place(oid, "x" * 32, {}))
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    assert report["auctions"] == {"run": 2, "sold": 0, "revenue": 0}
    for c in (creator, ann, bob):
        await c.close()


async def test_two_nodes_closing_at_once_close_once_with_one_order(valkey_url: str) -> None:
    """Two nodes' services race to close the same due auction, many times each."""
    settings = make_settings(auction_extend_s=0.2)
    a, b = Node(settings, valkey_url), Node(settings, valkey_url)
    for n in (a, b):
        await n.store.open()
        await n.store.load_all()
    try:
        await a.products.create("seller1", NewProduct("pen", "Pen", 900, 3, 1000, ""))
        s, _ = await a.sessions.create("cr", NewSession("live", "S", ["pen"]))
        await a.sessions.set_status(s.id, "cr", "start")
        terms = {"start_price": 100, "increment": 5, "duration_ms": 300, "reserve_price": 0,
                 "sudden_death": 1}
        await a.scripts.open_auction(s.id, "auc_race", "cr", "pen", terms, 200)
        await a.store.call("ZADD", a.keys.open_auctions(), 0, f"{s.id}/auc_race")
        await a.scripts.bid(s.id, "auc_race", "ann", "Ann", 150, "k")
        await asyncio.sleep(0.35)
        states = await asyncio.gather(*(n.auctions.close_due(f"{s.id}/auc_race")
                                        for n in (a, b) * 5))
        assert states.count("closed_now") == 1 and set(states) <= {"closed_now", "closed"}
        oid = prize_order_id("auction", "auc_race")
        assert text(await a.store.call("HGET", a.keys.order(oid), "status")) == "committed"
        assert as_dict(await a.store.call("HGETALL", a.keys.product("pen")))["stock"] == "2"
        counters = as_dict(await a.store.call("HGETALL", a.keys.counters(s.id)))
        assert (counters["auctions_sold"], counters["auction_revenue"]) == ("1", "150")
        assert (counters["orders"], counters["gmv"], counters["commission"]) == ("1", "150", "15")
        assert await a.store.call("ZCARD", a.keys.open_auctions()) == 0
    finally:
        for n in (a, b):
            await n.store.close()


async def test_equal_bids_at_once_one_wins_the_rest_conflict(valkey_url: str) -> None:
    node = Node(make_settings(), valkey_url)
    await node.store.open()
    await node.store.load_all()
    try:
        s, _ = await node.sessions.create("cr", NewSession("live", "S", ["p"]))
        await node.store.call("HSET", node.keys.session(s.id), "status", "live")
        terms = {"start_price": 100, "increment": 10, "duration_ms": 60_000,
                 "reserve_price": 0, "sudden_death": 0}
        await node.scripts.open_auction(s.id, "auc_eq", "cr", "p", terms, 1000)
        results = await asyncio.gather(*(
            node.scripts.bid(s.id, "auc_eq", f"u{i}", f"U{i}", 250, "k") for i in range(20)),
            return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, ApiError)]
        assert len(won) == 1 and len(lost) == 19
        assert all(e.code.value == "conflict" and e.details["top_bid"] == 250
                   and e.details["min_bid"] == 260 for e in lost)
    finally:
        await node.store.close()


# bid ordering, against the Lua itself ------------------------------------------------

async def _bid_programme(url: str, start: int, inc: int, bids: list[tuple[int, int]]) -> None:
    node = Node(make_settings(), url)
    await node.store.open()
    await node.store.load_all()
    try:
        s, _ = await node.sessions.create("cr", NewSession("live", "S", ["p"]))
        await node.store.call("HSET", node.keys.session(s.id), "status", "live")
        terms = {"start_price": start, "increment": inc, "duration_ms": 60_000,
                 "reserve_price": 0, "sudden_death": 0}
        await node.scripts.open_auction(s.id, "auc_p", "cr", "p", terms, 1000)
        accepted: list[int] = []
        # in concurrent groups of 4, as bidders racing each other
        for i in range(0, len(bids), 4):
            group = bids[i:i + 4]
            results = await asyncio.gather(*(
                node.scripts.bid(s.id, "auc_p", f"u{who}", f"U{who}", amount, f"k{i + j}")
                for j, (who, amount) in enumerate(group)), return_exceptions=True)
            for r in results:
                if isinstance(r, ApiError):
                    assert r.code.value == "conflict", r
                    assert r.details["min_bid"] == (accepted[-1] + inc if accepted else start)
                else:
                    assert not isinstance(r, BaseException)
                    accepted.append(r[0]["amount"])
        for x, y in itertools.pairwise(accepted):
            assert y >= x + inc
        if accepted:
            assert accepted[0] >= start
        a = as_dict(await node.store.call("HGETALL", node.keys.auction(s.id, "auc_p")))
        assert int(a["top_bid"]) == (max(accepted) if accepted else 0)
        assert int(a["bids"]) == len(accepted)
    finally:
        await node.store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(1, 1000), inc=st.integers(1, 100),
       bids=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3000)), max_size=30))
def test_accepted_bids_strictly_increase_by_the_increment(
        valkey_url: str, start: int, inc: int, bids: list[tuple[int, int]]) -> None:
    asyncio.run(_bid_programme(valkey_url, start, inc, bids))


# 200 bidders on two real nodes ---------------------------------------------------------

@pytest.mark.e2e
async def test_200_bidders_on_two_nodes_agree_and_one_order(tmp_path: Path) -> None:
    from tests.test_multinode import Cluster, tok

    cluster = Cluster(tmp_path / "valkey")
    try:
        a = cluster.node(LIVECART_AUCTION_EXTEND_S="1")
        b = cluster.node(LIVECART_AUCTION_EXTEND_S="1")
        sid = cluster.setup_show(a, {"watch": 5})
        creator = await WsClient.connect(a.ws_url, token=tok("creator1", "creator"))
        await creator.ok("join", session=sid)
        bidders = []
        for i in range(200):
            c = await WsClient.connect((a, b)[i % 2].ws_url, token=tok(f"u{i}", name=f"U{i}"))
            bidders.append(c)
        await asyncio.gather(*(c.ok("join", session=sid) for c in bidders))
        opened = (await creator.ok("auction", product="watch", start_price=1000,
                                   increment=10, duration_s=3))["auction"]
        aid = opened["id"]
        rng = random.Random(16)
        accepted: list[int] = []

        async def bidder(i: int, c: WsClient) -> None:
            for r in range(3):  # every round, everyone bids the same next amount, or more
                amount = 1000 + 10 * (r * 3 + rng.randrange(3))
                reply = await c.request("bid", auction=aid, amount=amount,
                                        idempotency_key=f"b{i}-{r}")
                if reply["ok"]:
                    accepted.append(reply["result"]["amount"])
                else:
                    error = reply["error"]
                    assert error["code"] in ("conflict", "ended"), reply
                    if error["code"] == "conflict":  # it names the bid that beat this one
                        assert error["min_bid"] > amount and error["top_bid"] >= amount - 10

        await asyncio.gather(*(bidder(i, c) for i, c in enumerate(bidders)))
        finals = await asyncio.gather(*(c.wait_event(_closed, timeout=20)
                                        for c in [creator, *bidders]))
        final = finals[0]["d"]
        assert all(f["d"] == final for f in finals), "every node shows the same close"
        assert final["outcome"] == "sold" and final["bids"] == len(accepted)
        assert final["top_bid"] == max(accepted)
        assert len(set(accepted)) == len(accepted)  # strictly increasing in script order
        views = [cluster.http(n, "GET", f"/api/sessions/{sid}/auctions/{aid}").json()
                 for n in (a, b)]
        assert views[0] == views[1] and views[0]["top_bid"] == final["top_bid"]
        winner = next(c for i, c in enumerate(bidders) if f"U{i}" == final["bidder"])
        won = await winner.wait_event("won", timeout=10)
        assert won["d"]["price"] == final["top_bid"]
        # one order, in one stream; the stock moved once; one close in the room
        import redis

        r = redis.Redis.from_url(cluster.valkey.url)
        in_streams = [orjson.loads(fields[b"json"])
                      for bucket in range(16)
                      for _, fields in r.xrange(f"{cluster.prefix}:{{o:{bucket}}}:orders")]
        r.close()
        assert [(o["id"], o["source"], o["total"]) for o in in_streams] == [
            (won["d"]["order"], "auction", final["top_bid"])]
        assert cluster.http(a, "GET", "/api/products/watch").json()["stock"] == 4
        report = cluster.http(a, "GET", f"/api/sessions/{sid}/report",
                              tok("creator1", "creator")).json()
        assert report["auctions"] == {"run": 1, "sold": 1, "revenue": final["top_bid"]}
        assert report["orders"] == 1
        closes = [e for e in creator.events if _closed(e)]
        assert len(closes) == 1
        for c in [creator, *bidders]:
            await c.close()
    finally:
        cluster.close()


async def test_malformed_format_commands_get_precise_errors(
        make_server: Callable[..., ServerThread]) -> None:
    """Random arguments to the four new ops: always a reply with a client error code (never
    `internal`), and the connection lives on (limits raised: this is about the answers)."""
    server = make_server(abuse_errors=100_000, rate_per_s=10_000.0, rate_burst=10_000)
    server.product("fz", stock=3)
    sid = server.session(["fz"])
    creator = await _creator(server, sid)
    viewer = await joined_viewer(server, "fuzzy", sid)
    rng = random.Random(1616)
    junk: list[Any] = [None, True, -1, 0, 1, 2.5, 2**60, "", " ", "x" * 70, "fz", "a/b",
                       [], {}, {"a": 1}, [1], "auc_x", "gw_x", 1e300]
    fields = ["product", "start_price", "increment", "duration_s", "reserve_price",
              "sudden_death", "auction", "amount", "idempotency_key", "giveaway", "winners",
              "ends_at", "keyword", "session"]
    codes = set()
    for i in range(240):
        who = creator if i % 2 else viewer
        op = rng.choice(["auction", "bid", "giveaway", "enter"])
        args = {f: rng.choice(junk) for f in rng.sample(fields, rng.randrange(0, 6))}
        reply = await who.request(op, **args)
        if not reply["ok"]:
            codes.add(reply["error"]["code"])
            assert reply["error"]["code"] not in ("internal", "unavailable"), (op, args, reply)
    assert {"bad_request"} <= codes
    assert await viewer.ok("ping")
    for c in (creator, viewer):
        await c.close()
