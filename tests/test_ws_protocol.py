"""Every live-room op over the real server, in both codecs (docs/protocol.md, "Ops",
"Shapes" and "Events")."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import msgpack
import orjson
import pytest
import websockets

from server.auth import issue_token
from tests.helpers import SECRET, ServerThread, WsClient

pytestmark = pytest.mark.anyio

CODECS = [pytest.param(False, id="json"), pytest.param(True, id="msgpack")]
PRODUCT_KEYS = {"id", "seller", "title", "price", "currency", "stock", "commission_bps",
                "image_url"}


async def connect(server: ServerThread, *, sub: str | None = None, role: str = "viewer",
                  use_msgpack: bool = False, **kwargs: Any) -> WsClient:
    token = server.token(sub, role) if sub else None
    return await WsClient.connect(server.ws_url, token=token, use_msgpack=use_msgpack, **kwargs)


def setup_room(server: ServerThread, *products: str, start: bool = True,
               creator: str = "creator1") -> str:
    for pid in products:
        server.product(pid)
    return server.session(list(products), creator=creator, start=start)


# join -----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_join_snapshot_has_the_documented_shape(server: ServerThread,
                                                      use_msgpack: bool) -> None:
    sid = setup_room(server, "p1", "p2")
    c = await connect(server, use_msgpack=use_msgpack)
    snap = await c.ok("join", session=sid)
    assert {"session", "status", "kind", "title", "showcase", "pinned", "counters", "seq",
            "epoch"} <= set(snap)
    assert snap["session"] == sid
    assert snap["status"] == "live" and snap["kind"] == "live" and snap["title"] == "show"
    assert [p["id"] for p in snap["showcase"]] == ["p1", "p2"]
    for p in snap["showcase"]:
        assert set(p) >= PRODUCT_KEYS
        assert p["price"] == 1000 and p["stock"] == 100 and p["currency"] == "USD"
    assert snap["pinned"] is None
    assert set(snap["counters"]) == {"viewers", "likes", "orders", "units"}
    assert all(isinstance(v, int) for v in snap["counters"].values())
    assert isinstance(snap["seq"], int) and snap["seq"] >= 1  # the `session{live}` event
    assert isinstance(snap["epoch"], str) and snap["epoch"]
    assert "recovered" not in snap
    await c.close()


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_join_snapshot_carries_the_current_pin(server: ServerThread,
                                                     use_msgpack: bool) -> None:
    sid = setup_room(server, "p1")
    creator = await connect(server, sub="creator1", role="creator")
    await creator.ok("join", session=sid)
    pinned = await creator.ok("pin", product="p1", stream_ts_ms=1234)
    c = await connect(server, use_msgpack=use_msgpack)
    snap = await c.ok("join", session=sid)
    assert snap["pinned"] == pinned["pinned"]
    assert snap["pinned"]["product"]["id"] == "p1"
    assert snap["pinned"]["stream_ts_ms"] == 1234
    assert snap["pinned"]["deal"] is None
    assert snap["seq"] == pinned["seq"]
    await asyncio.gather(c.close(), creator.close())


async def test_join_unknown_session_is_not_found(server: ServerThread) -> None:
    c = await connect(server)
    err = await c.err("join", session="sess_doesnotexist")
    assert err["code"] == "not_found"
    assert (await c.ok("ping"))["pong"] > 0
    # a failed join leaves the connection in no room
    assert (await c.ok("leave"))["left"] is None
    await c.close()


async def test_joining_another_session_leaves_the_first(server: ServerThread) -> None:
    server.product("p1")
    a = server.session(["p1"])
    b = server.session(["p1"])
    creator = await connect(server, sub="creator1", role="creator")
    c = await connect(server)
    await c.ok("join", session=a)
    await c.ok("join", session=b)
    await creator.ok("pin", product="p1", session=a)
    res = await creator.ok("pin", product="p1", session=b)
    ev = await c.wait_event("pinned")
    assert ev["seq"] == res["seq"]
    await c.drain(0.2)
    assert [e for e in c.events if e["t"] == "pinned"] == [ev]
    await asyncio.gather(c.close(), creator.close())


async def test_join_with_since_but_no_epoch_is_not_recovered(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    c = await connect(server)
    snap = await c.ok("join", session=sid, since=0)
    assert snap["recovered"] is False
    await c.close()


# leave, ping --------------------------------------------------------------------------------


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_leave_stops_events(server: ServerThread, use_msgpack: bool) -> None:
    sid = setup_room(server, "p1")
    creator = await connect(server, sub="creator1", role="creator")
    c = await connect(server, use_msgpack=use_msgpack)
    stay = await connect(server)
    await c.ok("join", session=sid)
    await stay.ok("join", session=sid)
    assert await c.ok("leave") == {"left": sid}
    res = await creator.ok("pin", product="p1", session=sid)
    await stay.wait_event(lambda e: e.get("seq") == res["seq"])
    assert (await c.ok("ping"))["pong"] > 0
    assert not [e for e in c.events if "seq" in e]
    assert (await c.err("like"))["code"] == "bad_request"  # not joined any more
    assert await c.ok("leave") == {"left": None}
    await asyncio.gather(c.close(), stay.close(), creator.close())


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_ping_answers_with_server_time(server: ServerThread, use_msgpack: bool) -> None:
    c = await connect(server, use_msgpack=use_msgpack)
    before = int(time.time() * 1000)
    res = await c.ok("ping")
    assert abs(res["pong"] - before) < 60_000
    await c.close()


async def test_default_codec_is_json_when_none_offered(server: ServerThread) -> None:
    ws = await websockets.connect(server.ws_url, compression=None)
    assert ws.subprotocol is None
    await ws.send(orjson.dumps({"id": 7, "op": "ping"}).decode())
    data = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(data, str)
    assert orjson.loads(data)["id"] == 7
    # a binary frame holding JSON is also accepted on a JSON connection
    await ws.send(orjson.dumps({"id": 8, "op": "ping"}))
    assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["id"] == 8
    await ws.close()


async def test_codec_follows_the_first_offered_subprotocol(server: ServerThread) -> None:
    ws = await websockets.connect(server.ws_url, compression=None,
                                  subprotocols=["x.other", "livecart.msgpack", "livecart.json"])
    assert ws.subprotocol == "livecart.msgpack"
    await ws.send(msgpack.packb({"id": 1, "op": "ping"}))
    data = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(data, bytes)
    reply = msgpack.unpackb(data)
    assert reply["id"] == 1 and reply["ok"] is True
    await ws.close()


# auth ----------------------------------------------------------------------------------------


async def test_auth_upgrades_an_anonymous_connection(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    c = await connect(server)
    await c.ok("join", session=sid)
    assert (await c.err("click", product="p1"))["code"] == "unauthorized"
    res = await c.ok("auth", token=server.token("u1", "viewer"))
    assert res["sub"] == "u1" and res["role"] == "viewer" and res["exp"] > time.time()
    assert await c.ok("click", product="p1") == {"product": "p1"}
    await c.close()


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_auth_refreshes_the_same_user(server: ServerThread, use_msgpack: bool) -> None:
    c = await connect(server, sub="u1", use_msgpack=use_msgpack)
    res = await c.ok("auth", token=server.token("u1", "viewer", ttl=7200))
    assert res["sub"] == "u1"
    assert res["exp"] > time.time() + 3600
    await c.close()


async def test_auth_with_another_users_token_is_forbidden(server: ServerThread) -> None:
    c = await connect(server, sub="u1")
    err = await c.err("auth", token=server.token("u2", "viewer"))
    assert err["code"] == "forbidden"
    # the connection keeps its identity
    assert (await c.ok("auth", token=server.token("u1")))["sub"] == "u1"
    await c.close()


async def test_auth_with_expired_or_forged_token_is_unauthorized(server: ServerThread) -> None:
    c = await connect(server, sub="u1")
    expired = issue_token(SECRET, "u1", "viewer", 60, now=time.time() - 3600)
    assert (await c.err("auth", token=expired))["code"] == "unauthorized"
    forged = issue_token("another-secret-0123456789abcdefghijkl", "u1", "viewer", 60)
    assert (await c.err("auth", token=forged))["code"] == "unauthorized"
    assert (await c.err("auth", token="not.a.jwt"))["code"] == "unauthorized"
    assert (await c.err("auth"))["code"] == "bad_request"
    assert (await c.err("auth", token=12))["code"] == "bad_request"
    assert (await c.ok("ping"))["pong"] > 0
    await c.close()


async def test_token_expiring_mid_connection_then_refreshed(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    c = await connect(server)
    # a token valid for about one more second
    await c.ok("auth", token=issue_token(SECRET, "u1", "viewer", 1))
    await c.ok("join", session=sid)
    deadline = time.monotonic() + 5
    while True:  # click until the token expires (at most ~1 s)
        r = await c.request("click", product="p1")
        if not r["ok"]:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert r["error"]["code"] == "unauthorized"
    # still connected, still in the room; a fresh token for the same user fixes it
    assert (await c.ok("ping"))["pong"] > 0
    await c.ok("auth", token=server.token("u1"))
    assert await c.ok("click", product="p1") == {"product": "p1"}
    await c.close()


# like and counters ----------------------------------------------------------------------------


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_likes_are_merged_into_a_counters_event(server: ServerThread,
                                                      use_msgpack: bool) -> None:
    sid = setup_room(server, "p1")
    c = await connect(server, use_msgpack=use_msgpack)
    other = await connect(server)
    await c.ok("join", session=sid)
    await other.ok("join", session=sid)
    assert await c.ok("like") == {"count": 1}
    assert await c.ok("like", count=5) == {"count": 5}
    assert await other.ok("like", count=4) == {"count": 4}
    for client in (c, other):
        ev = await client.wait_event(lambda e: e["t"] == "counters" and e["d"]["likes"] == 10,
                                     timeout=3)
        assert "seq" not in ev and isinstance(ev["ts"], int)
        assert set(ev["d"]) == {"viewers", "likes", "orders", "units"}
        assert ev["d"]["viewers"] == 2
    # a later joiner sees the merged likes in its snapshot
    late = await connect(server)
    assert (await late.ok("join", session=sid))["counters"]["likes"] == 10
    await asyncio.gather(c.close(), other.close(), late.close())


async def test_counters_at_most_once_per_interval_and_only_on_change(
        server: ServerThread) -> None:
    interval_ms = server.settings.counters_interval_s * 1000
    sid = setup_room(server, "p1")
    c = await connect(server)
    snap = await c.ok("join", session=sid)
    # the snapshot carries the counters; at most one event follows (our own arrival)
    await c.drain(server.settings.counters_interval_s * 3)
    settled = [e for e in c.events if e["t"] == "counters"]
    assert len(settled) <= 1
    assert all(e["d"] != snap["counters"] for e in settled)
    # nothing changes: no further counters events over several intervals
    await c.drain(server.settings.counters_interval_s * 4)
    assert [e for e in c.events if e["t"] == "counters"] == settled
    # a burst of likes gives counters events spaced at least one interval apart
    for _ in range(6):
        await c.ok("like", count=2)
        await asyncio.sleep(server.settings.counters_interval_s / 3)
    await c.wait_event(lambda e: e["t"] == "counters" and e["d"]["likes"] == 12, timeout=5)
    counters = [e for e in c.events if e["t"] == "counters"]
    for a, b in itertools.pairwise(counters):
        assert b["ts"] - a["ts"] >= interval_ms * 0.9
        assert b["d"] != a["d"]  # only when changed
    await c.close()


async def test_like_validation(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    c = await connect(server)
    assert (await c.err("like"))["code"] == "bad_request"  # not joined
    await c.ok("join", session=sid)
    for bad in (0, -1, 1001, "3", 1.5, True, [1]):
        err = await c.err("like", count=bad)
        assert err["code"] == "bad_request", bad
    assert await c.ok("like", count=1000) == {"count": 1000}
    await c.close()


# click --------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_click_needs_token_and_a_showcase_product(server: ServerThread,
                                                        use_msgpack: bool) -> None:
    sid = setup_room(server, "p1")
    server.product("other")
    anon = await connect(server, use_msgpack=use_msgpack)
    await anon.ok("join", session=sid)
    assert (await anon.err("click", product="p1"))["code"] == "unauthorized"
    c = await connect(server, sub="u1", use_msgpack=use_msgpack)
    assert (await c.err("click", product="p1"))["code"] == "bad_request"  # not joined
    await c.ok("join", session=sid)
    assert await c.ok("click", product="p1") == {"product": "p1"}
    assert (await c.err("click", product="other"))["code"] == "not_found"
    assert (await c.err("click", product="nope"))["code"] == "not_found"
    assert (await c.err("click"))["code"] == "bad_request"
    assert (await c.err("click", product=5))["code"] == "bad_request"
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    by_product = {p["product"]: p for p in report["products"]}
    assert report["clicks"] == 1 and by_product["p1"]["clicks"] == 1
    await asyncio.gather(anon.close(), c.close())


# pin, unpin, start, end ----------------------------------------------------------------------


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_pin_replaces_pin_and_unpin(server: ServerThread, use_msgpack: bool) -> None:
    sid = setup_room(server, "p1", "p2")
    creator = await connect(server, sub="creator1", role="creator")
    viewer = await connect(server, use_msgpack=use_msgpack)
    base = (await creator.ok("join", session=sid))["seq"]
    await viewer.ok("join", session=sid)
    r1 = await creator.ok("pin", product="p1")
    r2 = await creator.ok("pin", product="p2")
    assert (r1["seq"], r2["seq"]) == (base + 1, base + 2)
    assert r2["pinned"]["product"]["id"] == "p2"
    u = await creator.ok("unpin")
    assert u == {"pinned": None, "seq": base + 3}
    await viewer.wait_event(lambda e: e.get("seq") == base + 3)
    room = [e for e in viewer.events if "seq" in e]
    assert [(e["t"], e["seq"]) for e in room] == [
        ("pinned", base + 1), ("pinned", base + 2), ("unpinned", base + 3)]
    assert room[0]["d"] == r1["pinned"] and room[1]["d"] == r2["pinned"]
    assert room[2]["d"]["product"] == "p2"
    assert room[2]["d"]["stream_ts_ms"] >= room[1]["d"]["stream_ts_ms"]
    for e in room:
        assert isinstance(e["ts"], int)
    # unpin when nothing is pinned is harmless and emits nothing
    assert await creator.ok("unpin") == {"pinned": None, "seq": None}
    late = await connect(server)
    snap = await late.ok("join", session=sid)
    assert snap["pinned"] is None and snap["seq"] == base + 3
    await asyncio.gather(creator.close(), viewer.close(), late.close())


async def test_pin_stream_ts_given_or_defaulted(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    started_at = server.http("GET", f"/api/sessions/{sid}").json()["started_at"]
    creator = await connect(server, sub="creator1", role="creator")
    await creator.ok("join", session=sid)
    given = (await creator.ok("pin", product="p1", stream_ts_ms=42_000))["pinned"]
    assert given["stream_ts_ms"] == 42_000
    assert abs(given["pinned_at"] - time.time() * 1000) < 60_000
    default = (await creator.ok("pin", product="p1"))["pinned"]
    assert default["stream_ts_ms"] == default["pinned_at"] - started_at
    assert (await creator.ok("unpin", stream_ts_ms=50_000))["pinned"] is None
    for bad in (-1, "10", 1.5, 10 * 24 * 3600 * 1000 + 1):
        assert (await creator.err("pin", product="p1", stream_ts_ms=bad))["code"] == \
            "bad_request"
        assert (await creator.err("unpin", stream_ts_ms=bad))["code"] == "bad_request"
    await creator.close()


async def test_pin_errors(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    server.product("outside")
    other_creator = await connect(server, sub="creator2", role="creator")
    viewer = await connect(server, sub="v1")
    anon = await connect(server)
    creator = await connect(server, sub="creator1", role="creator")
    for c in (other_creator, viewer, anon, creator):
        await c.ok("join", session=sid)
    for c in (other_creator, viewer):
        for op, args in (("pin", {"product": "p1"}), ("unpin", {}), ("start", {}),
                         ("end", {})):
            assert (await c.err(op, **args))["code"] == "forbidden", (op, c)
    for op in ("pin", "unpin", "start", "end"):
        assert (await anon.err(op, product="p1"))["code"] == "unauthorized"
    assert (await creator.err("pin", product="nope"))["code"] == "not_found"
    assert (await creator.err("pin", product="outside"))["code"] in ("bad_request",
                                                                      "not_found")
    assert (await creator.err("pin"))["code"] == "bad_request"
    assert (await creator.err("pin", product={"id": "p1"}))["code"] == "bad_request"
    assert (await creator.err("pin", product="p1", session="sess_nope"))["code"] == "not_found"
    # nothing was pinned by any of that
    assert (await creator.ok("join", session=sid))["pinned"] is None
    lonely = await connect(server, sub="creator1", role="creator")
    assert (await lonely.err("pin", product="p1"))["code"] == "bad_request"  # no session
    await asyncio.gather(*(c.close() for c in (other_creator, viewer, anon, creator, lonely)))


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_scheduled_session_start_and_end(server: ServerThread, use_msgpack: bool) -> None:
    sid = setup_room(server, "p1", start=False)
    creator = await connect(server, sub="creator1", role="creator")
    viewer = await connect(server, use_msgpack=use_msgpack)
    snap = await viewer.ok("join", session=sid)
    assert snap["status"] == "scheduled" and snap["seq"] == 0
    await creator.ok("join", session=sid)
    assert (await creator.err("pin", product="p1"))["code"] == "not_live"
    assert (await creator.err("unpin"))["code"] == "not_live"
    assert (await creator.err("end"))["code"] == "not_live"
    started = await creator.ok("start")
    assert started["status"] == "live" and started["started_at"] > 0
    ev = await viewer.wait_event("session")
    assert ev["d"] == {"status": "live"} and ev["seq"] == 1
    assert (await creator.err("start"))["code"] == "conflict"
    await creator.ok("pin", product="p1")
    ended = await creator.ok("end")
    assert ended["status"] == "ended" and ended["ended_at"] >= ended["started_at"]
    await viewer.wait_event(lambda e: e["t"] == "session" and e["d"]["status"] == "ended")
    room = [(e["t"], e["seq"], e["d"]) for e in viewer.events if "seq" in e]
    assert room == [("session", 1, {"status": "live"}),
                    ("pinned", 2, room[1][2]),
                    ("unpinned", 3, room[2][2]),
                    ("session", 4, {"status": "ended"})]
    assert room[1][2]["product"]["id"] == "p1"
    assert room[2][2]["product"] == "p1" and isinstance(room[2][2]["stream_ts_ms"], int)
    assert (await creator.err("pin", product="p1"))["code"] == "not_live"
    assert (await creator.err("end"))["code"] == "conflict"
    assert (await creator.err("start"))["code"] == "conflict"
    snap = await viewer.ok("join", session=sid)
    assert snap["status"] == "ended" and snap["pinned"] is None and snap["seq"] == 4
    await asyncio.gather(creator.close(), viewer.close())


async def test_end_without_pin_emits_only_session_event(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    creator = await connect(server, sub="creator1", role="creator")
    base = (await creator.ok("join", session=sid))["seq"]
    await creator.ok("end")
    ev = await creator.wait_event("session")
    assert ev["seq"] == base + 1 and ev["d"] == {"status": "ended"}
    await creator.drain(0.1)
    assert [e["t"] for e in creator.events if "seq" in e] == ["session"]
    await creator.close()


async def test_creator_can_pin_by_session_without_joining(server: ServerThread) -> None:
    sid = setup_room(server, "p1")
    viewer = await connect(server)
    await viewer.ok("join", session=sid)
    creator = await connect(server, sub="creator1", role="creator")
    res = await creator.ok("pin", product="p1", session=sid)
    ev = await viewer.wait_event("pinned")
    assert ev["seq"] == res["seq"]
    await asyncio.gather(creator.close(), viewer.close())


async def test_a_joiner_around_a_counters_push_gets_the_fresh_values_once(
        server: ServerThread) -> None:
    """rooms/ops.join queues a joiner whose snapshot counters differ from the room's last
    push; the next tick sends it the fresh values only if they still differ from what its
    snapshot said (a push older than the snapshot is never replayed over it)."""
    sid = setup_room(server, "p1")
    stale, fresh = await connect(server), await connect(server)
    await stale.ok("join", session=sid)
    await fresh.ok("join", session=sid)
    await stale.wait_event(lambda e: e["t"] == "counters" and e["d"]["viewers"] == 2, 5)
    await fresh.drain(0.1)
    room = server.node.hub.rooms[sid]
    now = tuple(room.last_counters)
    by_id = {c.id: c for c in room.clients.values()}
    a, b = list(by_id.values())
    loop = server.node.loop
    loop.call_soon_threadsafe(room.catch_up.extend, [(a, (99, 0, 0, 0)), (b, now)])
    stale.events.clear()
    fresh.events.clear()
    await stale.drain(server.settings.counters_interval_s * 3)
    await fresh.drain(0.05)
    got = {id(c): [e for e in c.events if e["t"] == "counters"] for c in (stale, fresh)}
    sent = [evs for evs in got.values() if evs]
    assert len(sent) == 1 and len(sent[0]) == 1  # only the one whose snapshot was off
    assert sent[0][0]["d"]["viewers"] == now[0] == 2
    assert room.catch_up == []
    await asyncio.gather(stale.close(), fresh.close())
