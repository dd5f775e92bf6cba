"""Giveaways: one entry per user, the creator excluded, winners only among entrants still
joined, a draw anyone can re-run from the published seed and entrant list, free orders,
and a close that happens once when two nodes race."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from typing import Any

import pytest

from server.cart.orders import prize_order_id
from server.cart.products import NewProduct
from server.node import Node
from server.rooms.giveaways import draw, entrant_id
from server.rooms.sessions import NewSession
from server.valkey.store import as_dict, text
from tests.conftest import make_settings
from tests.helpers import ServerThread, WsClient, joined_viewer

pytestmark = pytest.mark.anyio


def rerun(seed: str, entrants: list[str], k: int) -> list[str]:
    """The published algorithm, written out again from docs/protocol.md."""
    pool = sorted(entrants)
    for i in range(min(k, len(pool))):
        j = i + int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest(), "big") % (
            len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def _closed(e: dict[str, Any]) -> bool:
    return e["t"] == "giveaway" and e["d"]["status"] == "closed"


async def test_a_giveaway_draw_anyone_can_rerun(server: ServerThread) -> None:
    server.product("tote", price=1500, stock=5, commission_bps=1000)
    sid = server.session(["tote"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    names = ["ann", "bob", "cy", "dan", "eve"]
    viewers = {n: await joined_viewer(server, n, sid) for n in names}
    ends_at = int(time.time() * 1000) + 2000
    assert (await creator.err("giveaway", product="tote", winners=6,
                              ends_at=ends_at))["code"] == "out_of_stock"
    assert (await viewers["ann"].err("giveaway", product="tote", winners=1,
                                     ends_at=ends_at))["code"] == "forbidden"
    opened = (await creator.ok("giveaway", product="tote", winners=2, ends_at=ends_at,
                               keyword="tote!"))["giveaway"]
    gid = opened["id"]
    assert opened["status"] == "open" and opened["winner_count"] == 2
    assert opened["keyword"] == "tote!" and opened["winners"] == []
    assert (await creator.err("enter", giveaway=gid))["code"] == "forbidden"
    anon = await WsClient.connect(server.ws_url)
    await anon.ok("join", session=sid)
    assert (await anon.err("enter", giveaway=gid))["code"] == "unauthorized"
    for i, n in enumerate(names):
        entered = await viewers[n].ok("enter", giveaway=gid)
        assert entered == {"giveaway": gid, "entered": True, "new": True, "entries": i + 1}
    again = await viewers["ann"].ok("enter", giveaway=gid)
    assert again["new"] is False and again["entries"] == 5  # one entry per user
    assert (await viewers["ann"].err("enter", giveaway="gw_nope"))["code"] == "not_found"
    before = server.http("GET", f"/api/sessions/{sid}/giveaways/{gid}").json()
    assert before["seed"] is None and before["entrants"] is None and before["entries"] == 5
    await viewers.pop("dan").close()  # left before the end: cannot win
    closed = await creator.wait_event(_closed, timeout=10)
    assert (await viewers["ann"].err("enter", giveaway=gid))["code"] == "ended"

    g = server.http("GET", f"/api/sessions/{sid}/giveaways/{gid}").json()
    expected = sorted(entrant_id(gid, n) for n in names if n != "dan")
    assert g["entrants"] == expected and entrant_id(gid, "dan") not in g["entrants"]
    assert g["entrant_hash"] == hashlib.sha256("\n".join(g["entrants"]).encode()).hexdigest()
    winners = rerun(g["seed"], g["entrants"], 2)
    assert [w["entrant"] for w in g["winners"]] == winners
    by_entrant = {entrant_id(gid, n): n for n in names}
    won_names = [by_entrant[e].title() for e in winners]
    assert [w["name"] for w in g["winners"]] == won_names == closed["d"]["winners"]
    assert closed["d"]["entries"] == 5 and "algorithm" in g
    for w in g["winners"]:
        who = by_entrant[w["entrant"]]
        assert w["order"] == prize_order_id("giveaway", f"{gid}:{who}")
        won = await viewers[who].wait_event("won", timeout=5)
        assert won["d"] == {"giveaway": gid, "product": "tote", "price": 0, "order": w["order"]}
        order = (await viewers[who].wait_event("order", timeout=5))["d"]
        assert (order["total"], order["source"], order["lines"][0]["commission"]) == (
            0, "giveaway", 0)
    for n, c in viewers.items():
        if n.title() not in won_names:
            assert not [e for e in c.events if e["t"] == "won"]
    assert server.http("GET", "/api/products/tote").json()["stock"] == 3
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    assert report["giveaways"] == {"run": 1, "entrants": 5, "winners": 2}
    assert report["gmv"] == 0 and report["commission"] == 0
    ledger = server.http("GET", "/api/creators/creator1/ledger",
                         token=server.token("creator1", "creator")).json()
    assert ledger["entries"] == []  # no commission on a free order
    for c in (creator, anon, *viewers.values()):
        await c.close()


async def test_two_nodes_racing_draw_the_same_winners_once(valkey_url: str) -> None:
    settings = make_settings()
    a, b = Node(settings, valkey_url), Node(settings, valkey_url)
    for n in (a, b):
        await n.store.open()
        await n.store.load_all()
    try:
        await a.products.create("seller1", NewProduct("cap", "Cap", 900, 10, 1000, ""))
        s, _ = await a.sessions.create("cr", NewSession("live", "S", ["cap"]))
        await a.sessions.set_status(s.id, "cr", "start")
        ends = int(time.time() * 1000) + 300
        await a.scripts.open_giveaway(s.id, "gw_race", "cr", "cap", 3, ends, "")
        await a.store.call("ZADD", a.keys.open_giveaways(), ends, f"{s.id}/gw_race")
        until = ends + 60_000
        entered = await asyncio.gather(*(  # one user entering from many devices at once
            n.scripts.enter_giveaway(s.id, "gw_race", "u0", "U0", until) for n in (a, b) * 5))
        assert sorted(entered) == [(False, 1)] * 9 + [(True, 1)]
        for i in range(1, 8):
            await a.scripts.enter_giveaway(s.id, "gw_race", f"u{i}", f"U{i}", until)
        await a.scripts.enter_giveaway(s.id, "gw_race", "gone", "Gone", ends - 200)  # left
        await asyncio.sleep(0.35)
        states = await asyncio.gather(*(n.giveaways.close_due(f"{s.id}/gw_race")
                                        for n in (a, b) * 4))
        assert states.count("closed_now") == 1 and set(states) <= {"closed_now", "closed"}
        g = await a.giveaways.get(s.id, "gw_race")
        assert len(g["entrants"]) == 8 and entrant_id("gw_race", "gone") not in g["entrants"]
        assert [w["entrant"] for w in g["winners"]] == rerun(g["seed"], g["entrants"], 3)
        stock = as_dict(await a.store.call("HGETALL", a.keys.product("cap")))["stock"]
        assert stock == "7"
        for w in g["winners"]:
            status = await a.store.call("HGET", a.keys.order(w["order"]), "status")
            assert text(status) == "committed"
        assert await a.store.call("ZCARD", a.keys.open_giveaways()) == 0
    finally:
        for n in (a, b):
            await n.store.close()


def test_the_draw_is_uniform_and_is_the_documented_one() -> None:
    entrants = [f"e_{i}" for i in range(4)]
    counts = Counter(draw(f"seed{i}", entrants, 1)[0] for i in range(4000))
    assert set(counts) == set(entrants)
    assert all(900 <= c <= 1100 for c in counts.values()), counts  # ±3.6 sigma; fixed seeds
    for i in range(50):
        assert draw(str(i), entrants, 3) == rerun(str(i), entrants, 3)
    assert draw("s", [], 2) == [] and draw("s", ["only"], 2) == ["only"]
    assert sorted(draw("s", entrants, 4)) == entrants  # every winner drawn once


async def test_chatting_the_keyword_enters_and_moderators_never_win(
        server: ServerThread) -> None:
    server.product("mug", price=900, stock=5)
    sid = server.session(["mug"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    server.http("PUT", f"/api/sessions/{sid}/moderators", token=server.token(
        "creator1", "creator"), json=["mo"]).raise_for_status()
    ann, bob, mo = [await joined_viewer(server, n, sid) for n in ("ann", "bob", "mo")]
    opened = (await creator.ok("giveaway", product="mug", winners=3,
                               ends_at=int(time.time() * 1000) + 2500,
                               keyword="Mug Please"))["giveaway"]
    gid = opened["id"]
    await ann.wait_event(lambda e: e["t"] == "giveaway" and e["d"]["id"] == gid)
    await ann.ok("chat", text="  mug PLEASE ")  # the keyword, case and spaces aside
    await bob.ok("chat", text="mug please now")  # not the keyword
    await mo.ok("enter", giveaway=gid)  # a moderator may enter but never wins
    deadline = time.monotonic() + 5
    while server.http("GET", f"/api/sessions/{sid}/giveaways/{gid}").json()["entries"] < 2:
        assert time.monotonic() < deadline, "the keyword did not enter its author"
        await asyncio.sleep(0.05)
    await creator.wait_event(_closed, timeout=10)
    g = server.http("GET", f"/api/sessions/{sid}/giveaways/{gid}").json()
    assert g["entries"] == 2 and g["entrants"] == [entrant_id(gid, "ann")]
    assert [w["name"] for w in g["winners"]] == ["Ann"]
    for c in (creator, ann, bob, mo):
        await c.close()
