"""Shoppable videos (timed pins), live-to-replay timelines, replay attribution."""

from __future__ import annotations

import pytest

from server.errors import ApiError
from server.rooms.timeline import Entry, active_at, parse_timeline, replay_timeline
from tests.helpers import ServerThread, WsClient

SHOW = ["a", "b", "c"]


def test_parse_timeline_rules() -> None:
    ok = parse_timeline([{"at_ms": 0, "product": "a", "until_ms": 500},
                         {"at_ms": 500, "product": "b"}, {"at_ms": 900, "product": "c"}], SHOW)
    assert [e.product for e in ok] == SHOW
    bad = [
        [{"at_ms": 10, "product": "a"}, {"at_ms": 5, "product": "b"}],  # unsorted
        [{"at_ms": 0, "product": "a", "until_ms": 20}, {"at_ms": 10, "product": "b"}],  # overlap
        [{"at_ms": 0, "product": "zzz"}],  # not in the showcase
        [{"at_ms": 10, "product": "a", "until_ms": 10}],  # empty interval
        [{"at_ms": -1, "product": "a"}],
        [{"at_ms": 0, "product": "a", "extra": 1}],
        {"at_ms": 0},
    ]
    for body in bad:
        with pytest.raises(ApiError):
            parse_timeline(body, SHOW)


def test_active_at_boundaries() -> None:
    t = [Entry(1000, "a", 2000), Entry(3000, "b"), Entry(5000, "c", 6000)]
    assert active_at(t, 999) is None
    assert active_at(t, 1000) == t[0]
    assert active_at(t, 1999) == t[0]
    assert active_at(t, 2000) is None  # until_ms is exclusive
    assert active_at(t, 3000) == t[1]
    assert active_at(t, 4999) == t[1]  # until the next entry's at_ms
    assert active_at(t, 5000) == t[2]
    assert active_at(t, 6000) is None
    assert active_at([], 0) is None


def test_replay_timeline_from_pin_log() -> None:
    log = [{"op": "pin", "at": 100, "product": "a"}, {"op": "pin", "at": 400, "product": "b"},
           {"op": "unpin", "at": 700}, {"op": "pin", "at": 900, "product": "c"},
           {"op": "unpin", "at": 1200}]
    assert replay_timeline(log) == [Entry(100, "a", 400), Entry(400, "b", 700),
                                    Entry(900, "c", 1200)]
    assert replay_timeline([{"op": "pin", "at": 5, "product": "a"}]) == [Entry(5, "a")]




@pytest.mark.anyio
async def test_video_positions(server: ServerThread) -> None:
    for p in SHOW:
        server.product(p)
    sid = server.session(SHOW, kind="video", start=False)
    creator = server.token("creator1", "creator")
    bad = server.http("PUT", f"/api/sessions/{sid}/timeline", token=creator,
                      json=[{"at_ms": 10, "product": "a"}, {"at_ms": 5, "product": "b"}])
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert server.http("PUT", f"/api/sessions/{sid}/timeline", token=server.token("x", "creator"),
                       json=[]).status_code == 403
    timeline = [{"at_ms": 1000, "product": "a", "until_ms": 2000},
                {"at_ms": 3000, "product": "b"}, {"at_ms": 5000, "product": "c"}]
    r = server.http("PUT", f"/api/sessions/{sid}/timeline", token=creator, json=timeline)
    assert r.status_code == 200, r.text
    server.http("POST", f"/api/sessions/{sid}/start", token=creator)
    live_sid = server.session(SHOW)
    assert server.http("PUT", f"/api/sessions/{live_sid}/timeline", token=creator,
                       json=timeline).status_code == 409  # only videos have a timeline
    one = await WsClient.connect(server.ws_url, token=server.token("v1"))
    two = await WsClient.connect(server.ws_url, use_msgpack=True)
    for c in (one, two):
        snap = await c.ok("join", session=sid)
        assert snap["kind"] == "video" and snap["pinned"] is None

    async def at(c: WsClient, ms: int) -> str | None:
        pinned = (await c.ok("position", ms=ms))["pinned"]
        return None if pinned is None else pinned["product"]["id"]

    assert [await at(one, ms) for ms in (0, 999, 1000, 1999, 2000, 3000, 4999, 5000, 99_000)] == \
        [None, None, "a", "a", None, "b", "b", "c", "c"]
    assert await at(one, 5500) == "c" and await at(one, 1500) == "a"  # seek back
    assert await at(one, 3100) == "b"  # and forward
    assert await at(two, 1200) == "a" and await at(one, 5200) == "c"  # different positions
    assert (await one.err("position", ms=-5))["code"] == "bad_request"
    # buying in a video is direct
    order = await one.ok("buy_now", product="a", qty=1, idempotency_key="v")
    assert order["lines"][0]["attribution"] == "direct"
    await one.close()
    await two.close()


@pytest.mark.anyio
async def test_live_session_becomes_a_replay(server: ServerThread) -> None:
    for p in SHOW:
        server.product(p, price=1000, commission_bps=1000)
    sid = server.session(SHOW)
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    watcher = await WsClient.connect(server.ws_url, token=server.token("w"))
    await watcher.ok("join", session=sid)
    for product, ts in (("a", 1000), ("b", 4000), ("c", 9000)):
        r = await creator.ok("pin", product=product, stream_ts_ms=ts)
        assert r["pinned"]["stream_ts_ms"] == ts
        ev = await watcher.wait_event(lambda e, p=product: e["t"] == "pinned" and
                                      e["d"]["product"]["id"] == p)
        assert ev["d"]["stream_ts_ms"] == ts
    await creator.ok("unpin", stream_ts_ms=12_000)
    live_order = await watcher.ok("buy_now", product="a", qty=1, idempotency_key="live")
    assert live_order["lines"][0]["attribution"] == "direct"
    await creator.ok("end")
    ended = await watcher.wait_event(lambda e: e["t"] == "session" and
                                     e["d"]["status"] == "ended")
    assert ended["seq"] > 0
    # the watcher stayed connected through the end: its purchase now is a replay one
    stayed = await watcher.ok("buy_now", product="b", qty=2, idempotency_key="stayed")
    assert stayed["lines"][0]["attribution"] == "replay"

    late = await WsClient.connect(server.ws_url, token=server.token("late"))
    snap = await late.ok("join", session=sid)
    assert snap["status"] == "ended" and snap["pinned"] is None

    async def at(ms: int) -> str | None:
        pinned = (await late.ok("position", ms=ms))["pinned"]
        return None if pinned is None else pinned["product"]["id"]

    assert [await at(ms) for ms in (999, 1000, 3999, 4000, 8999, 9000, 11_999, 12_000)] == \
        [None, "a", "a", "b", "b", "c", "c", None]
    replay_order = await late.ok("buy_now", product="c", qty=1, idempotency_key="r")
    line = replay_order["lines"][0]
    assert (line["attribution"], line["session"], line["commission"]) == ("replay", sid, 100)
    session = server.http("GET", f"/api/sessions/{sid}").json()
    assert [e["product"] for e in session["timeline"]] == SHOW

    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    assert report["orders"] == 3 and report["gmv"] == 1000 + 2000 + 1000
    assert report["replay"] == {"orders": 2, "units": 3, "gmv": 3000, "commission": 300}
    ledger = server.http("GET", "/api/creators/creator1/ledger",
                         token=server.token("creator1", "creator")).json()
    assert ledger["balance"] == 100 + 200 + 100
    for c in (creator, watcher, late):
        await c.close()
