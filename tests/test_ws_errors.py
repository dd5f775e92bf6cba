"""Error replies and close codes of the WebSocket protocol: every malformed input gets its
precise code (never `internal` or `unavailable`) and counts toward abuse when it is the
client's fault; likes are merged at any rate; the connection lives on after errors
(docs/protocol.md, "Commands and replies", "Limits", "Error codes", "Close codes")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgpack
import orjson
import pytest
import websockets

from server.auth import issue_token
from tests.helpers import SECRET, TOO_BIG, ServerThread, WsClient, close_code

# Input, wire and schema checks: on the standalone store only (the stateful tests run on
# the cluster too); the tests marked `stores("standalone", "cluster")` run on both.
pytestmark = [pytest.mark.anyio, pytest.mark.stores("standalone")]


CODECS = [pytest.param(False, id="json"), pytest.param(True, id="msgpack")]


async def alive(c: WsClient) -> None:
    """The connection still answers."""
    assert (await c.ok("ping"))["pong"] > 0


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def send_msgpack(c: WsClient, doc: Any) -> None:
    await c.send_raw(msgpack.packb(doc, use_bin_type=True))


async def null_reply(c: WsClient, data: str | bytes) -> dict[str, Any]:
    await c.send_raw(data)
    reply = await c.reply(None)
    assert reply["ok"] is False and reply["id"] is None
    return dict(reply["error"])


# malformed frames -----------------------------------------------------------------------------


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_unparseable_frames_get_a_null_id_bad_request(server: ServerThread,
                                                            use_msgpack: bool) -> None:
    c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    garbage: list[str | bytes] = (
        [b"\xc1", b"\x92\x01", b"\xdc\x00\x05", b"\x81\xa2id"] if use_msgpack
        else ["{", "not json", '{"id": 1, "op": "ping"', "\u00ff", '{"id":1,}'])
    for data in garbage:
        err = await null_reply(c, data)
        assert err["code"] == "bad_request", data
        assert err["message"]
        await alive(c)
    await c.close()


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_non_objects_and_bad_ids_get_a_null_id_bad_request(server: ServerThread,
                                                                 use_msgpack: bool) -> None:
    c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    docs: list[Any] = [
        [1, 2], 5, "ping", None, True, [{"id": 1, "op": "ping"}],
        {"op": "ping"}, {"id": "1", "op": "ping"}, {"id": 1.5, "op": "ping"},
        {"id": True, "op": "ping"}, {"id": None, "op": "ping"}, {"id": [1], "op": "ping"},
        {"id": 2**60, "op": "ping"}, {"id": {"n": 1}, "op": "ping"},
    ]
    for doc in docs:
        err = await null_reply(c, c.encode(doc))
        assert err["code"] == "bad_request", doc
    await alive(c)
    await c.close()


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_missing_or_unknown_op(server: ServerThread, use_msgpack: bool) -> None:
    c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    for n, doc in enumerate([{"id": 1}, {"id": 2, "op": 5}, {"id": 3, "op": None},
                             {"id": 4, "op": ["ping"]}], start=1):
        await c.send_raw(c.encode(doc))
        r = await c.reply(n)
        assert r["ok"] is False and r["error"]["code"] == "bad_request", doc
    for n, op in enumerate(["nope", "", "PING", "x" * 300, "__init__", "handle"], start=10):
        await c.send_raw(c.encode({"id": n, "op": op}))
        r = await c.reply(n)
        assert r["ok"] is False and r["error"]["code"] == "unknown_op", op
        assert len(r["error"]["message"]) < 100
    # negative and zero ids are integers too and are echoed
    for n in (0, -7):
        await c.send_raw(c.encode({"id": n, "op": "ping"}))
        assert (await c.reply(n))["ok"] is True
    await alive(c)
    await c.close()


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_wrong_typed_fields_are_bad_request(server: ServerThread, use_msgpack: bool) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    c = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"),
                               use_msgpack=use_msgpack)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("join", {}), ("join", {"session": 5}), ("join", {"session": ["x"]}),
        ("join", {"session": ""}), ("join", {"session": "has space"}),
        ("join", {"session": "x" * 65}), ("join", {"session": sid + "\n"}),
        ("join", {"session": sid, "since": -1}),
        ("join", {"session": sid, "since": "3"}), ("join", {"session": sid, "since": 1.5}),
        ("join", {"session": sid, "since": 0, "epoch": 7}),
        ("auth", {"token": None}), ("auth", {"token": ["t"]}),
        ("pin", {"product": 1}), ("pin", {"product": None, "session": sid}),
        ("pin", {"product": "p1", "session": 3}),
    ]
    for op, args in cases:
        err = await c.err(op, **args)
        assert err["code"] == "bad_request", (op, args)
    await alive(c)
    await c.close()
    # a fresh connection: that was 17 errors of the 20 allowed in the window
    c = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"),
                               use_msgpack=use_msgpack)
    await c.ok("join", session=sid)
    for op, args in [("like", {"count": "1"}), ("like", {"count": None, "x": 1} | {"count": 0}),
                     ("click", {"product": {"a": 1}}), ("unpin", {"stream_ts_ms": "0"})]:
        err = await c.err(op, **args)
        assert err["code"] == "bad_request", (op, args)
    await alive(c)
    await c.close()


async def test_unknown_session_is_not_found(server: ServerThread) -> None:
    c = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    assert (await c.err("join", session="sess_nope"))["code"] == "not_found"
    for op in ("start", "end", "unpin"):
        assert (await c.err(op, session="sess_nope"))["code"] == "not_found"
    assert (await c.err("pin", session="sess_nope", product="p"))["code"] == "not_found"
    await alive(c)
    await c.close()


@pytest.mark.stores("standalone", "cluster")
async def test_non_string_map_key_is_bad_request_before_rights(
        server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    viewer = await WsClient.connect(server.ws_url, token=server.token("v1"), use_msgpack=True)
    await viewer.ok("join", session=sid)
    # a viewer may not pin at all: the malformed shape is still what is answered
    for i, doc in enumerate([
        {"op": "pin", "product": "p1", "deal": {1: 2, "price": 5}},
        {"op": "pin", "product": "p1", "deal": {"price": 5, 2.5: 1}},
        {"op": "cart_add", "product": "p1", "qty": 1, 7: "x"},
        {"op": "join", "session": sid, "since": {b"raw": 1}},
        {"op": "ping", "x": [{"ok": {True: 1}}]},
    ], start=1):
        await send_msgpack(viewer, {"id": i, **doc})
        reply = await viewer.reply(i)
        assert reply["ok"] is False, reply
        assert reply["error"]["code"] == "bad_request", reply
        assert "map keys must be strings" in reply["error"]["message"]
    assert (await viewer.ok("ping"))["pong"] > 0  # the connection lives on
    assert not tracebacks(caplog)
    await viewer.close()


@pytest.mark.stores("standalone", "cluster")
async def test_unreadable_id_with_a_bad_key_gets_a_null_id(server: ServerThread) -> None:
    c = await WsClient.connect(server.ws_url, use_msgpack=True)
    await c.send_raw(msgpack.packb({"id": "x", 1: 2}))
    reply = await c.reply(None)
    assert reply["error"]["code"] == "bad_request"
    await c.close()


# integers out of what Valkey and Lua take ---------------------------------------------------


@pytest.mark.stores("standalone", "cluster")
@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_join_since_out_of_range_is_bad_request(server: ServerThread,
                                                      use_msgpack: bool) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    snap = await c.ok("join", session=sid)
    for since in (TOO_BIG, 2**63, 2**53):
        err = await c.err("join", session=sid, since=since, epoch=snap["epoch"])
        assert err["code"] == "bad_request" and err["field"] == "since", err
    # the largest integer in range is fine: nothing to replay from there
    top = await c.ok("join", session=sid, since=2**53 - 1, epoch=snap["epoch"])
    assert top["recovered"] is False and top["seq"] == snap["seq"]
    await c.close()


@pytest.mark.stores("standalone", "cluster")
@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_every_integer_argument_is_range_checked(server: ServerThread,
                                                       use_msgpack: bool) -> None:
    server.product("p1")
    sid = server.session(["p1"], kind="video")
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"),
                                     use_msgpack=use_msgpack)
    await creator.ok("join", session=sid)
    future = int(time.time() * 1000) + 60_000
    deal = {"price": 1, "stock": 1, "per_buyer_limit": 1, "ends_at": future}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("like", {"count": TOO_BIG}, "count"),
        ("position", {"ms": TOO_BIG}, "ms"),
        ("pin", {"product": "p1", "stream_ts_ms": TOO_BIG}, "stream_ts_ms"),
        ("pin", {"product": "p1", "deal": deal | {"price": TOO_BIG}}, "price"),
        ("pin", {"product": "p1", "deal": deal | {"ends_at": TOO_BIG}}, "ends_at"),
        ("unpin", {"stream_ts_ms": -TOO_BIG // 2}, "stream_ts_ms"),
        ("cart_add", {"product": "p1", "qty": TOO_BIG}, "qty"),
        ("checkout", {"idempotency_key": "k1", "total": TOO_BIG}, "total"),
        ("buy_now", {"product": "p1", "qty": 1, "idempotency_key": "k2", "price": TOO_BIG},
         "price"),
    ]
    for op, args, field in cases:
        err = await creator.err(op, **args)
        assert (err["code"], err.get("field")) == ("bad_request", field), (op, err)
    await creator.close()


# tokens at connect ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [
    pytest.param(issue_token(SECRET, "u1", "viewer", 60, now=time.time() - 3600), id="expired"),
    pytest.param(issue_token("some-other-secret-0123456789abcdefgh", "u1", "viewer", 60),
                 id="forged"),
    pytest.param("garbage", id="garbage"),
    pytest.param(issue_token(SECRET, "u1", "viewer", 60)[:-3] + "AAA", id="bad-signature"),
])
async def test_bad_token_at_connect_closes_4001(server: ServerThread, token: str) -> None:
    c = await WsClient.connect(server.ws_url, token=token)
    assert await close_code(c) == 4001
    fresh = await WsClient.connect(server.ws_url, token=server.token("u1"))
    await alive(fresh)
    await fresh.close()


async def test_token_with_unknown_role_closes_4001(server: ServerThread) -> None:
    import jwt

    token = jwt.encode({"sub": "u1", "role": "king", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256")
    c = await WsClient.connect(server.ws_url, token=token)
    assert await close_code(c) == 4001
    unsigned = jwt.encode({"sub": "u1", "role": "admin", "exp": int(time.time()) + 60}, None,
                          algorithm="none")
    c = await WsClient.connect(server.ws_url, token=unsigned)
    assert await close_code(c) == 4001


# frame size, rate, abuse ---------------------------------------------------------------------


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_frame_over_the_limit_closes_1009(make_server: Callable[..., ServerThread],
                                                use_msgpack: bool) -> None:
    server = make_server(max_frame_bytes=2048)
    c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    # just under the limit is fine
    await c.send_raw(c.encode({"id": 1, "op": "ping", "pad": "x" * 1900}))
    assert (await c.reply(1))["ok"] is True
    await c.send_raw(c.encode({"id": 2, "op": "ping", "pad": "x" * 3000}))
    assert await close_code(c) == 1009
    assert 2 not in c.replies
    other = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    await alive(other)
    await other.close()


async def test_commands_over_the_rate_are_rate_limited(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(rate_per_s=0.5, rate_burst=5)
    c = await WsClient.connect(server.ws_url)
    for i in range(1, 9):
        await c.send_raw(c.encode({"id": i, "op": "ping"}))
    replies = [await c.reply(i) for i in range(1, 9)]
    assert [r["ok"] for r in replies] == [True] * 5 + [False] * 3
    for r in replies[5:]:
        assert r["error"]["code"] == "rate_limited"
    await c.close()


async def test_likes_are_merged_outside_the_rate_limit(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(rate_per_s=0.5, rate_burst=3)
    server.product("p1")
    sid = server.session(["p1"])
    c = await WsClient.connect(server.ws_url)
    await c.ok("join", session=sid)
    for i in range(100, 110):
        await c.send_raw(c.encode({"id": i, "op": "like", "count": 2}))
    replies = [await c.reply(i) for i in range(100, 110)]
    assert all(r["ok"] for r in replies), replies
    ev = await c.wait_event(lambda e: e["t"] == "counters" and e["d"]["likes"] == 20)
    assert ev["d"]["likes"] == 20
    # likes drew nothing from the command budget: 2 of the burst of 3 are left after join
    assert (await c.ok("ping"))["pong"] > 0
    assert (await c.ok("ping"))["pong"] > 0
    assert (await c.err("ping"))["code"] == "rate_limited"
    await c.close()


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_twenty_errors_in_the_window_close_4029(server: ServerThread,
                                                      use_msgpack: bool) -> None:
    c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    for _ in range(1, 20):
        r = await c.request("nope")
        assert r["error"]["code"] == "unknown_op"
    await alive(c)  # 19 errors: still fine
    await c.send_raw(c.encode({"id": 99, "op": "nope"}))
    assert await close_code(c) == 4029
    assert c.replies[99]["error"]["code"] == "unknown_op"  # the 20th still got its reply
    fresh = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    await alive(fresh)
    await fresh.close()


async def test_errors_outside_the_window_do_not_close(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(abuse_errors=3, abuse_window_s=0.3)
    c = await WsClient.connect(server.ws_url)
    for _ in range(3):
        assert (await c.err("nope"))["code"] == "unknown_op"
        assert (await c.err("nope"))["code"] == "unknown_op"
        await asyncio.sleep(0.35)
    await alive(c)
    await c.close()


@pytest.mark.stores("standalone", "cluster")
async def test_non_string_map_keys_count_toward_abuse(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(abuse_errors=4)
    server.product("p1")
    sid = server.session(["p1"])
    c = await WsClient.connect(server.ws_url, token=server.token("v1"), use_msgpack=True)
    await c.ok("join", session=sid)
    for i in range(1, 5):
        await send_msgpack(c, {"id": i, "op": "pin", "product": "p1", "deal": {1: 2}})
    assert await close_code(c) == 4029
    assert [c.replies[i]["error"]["code"] for i in range(1, 5)] == ["bad_request"] * 4


@pytest.mark.stores("standalone", "cluster")
async def test_a_burst_of_60_likes_is_merged_never_4029(server: ServerThread) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    c = await WsClient.connect(server.ws_url)
    await c.ok("join", session=sid)
    for i in range(100, 160):  # sent back to back: well over the 20/s, 40-burst budget
        await c.send_raw(c.encode({"id": i, "op": "like"}))
    replies = [await c.reply(i) for i in range(100, 160)]
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:2]
    ev = await c.wait_event(lambda e: e["t"] == "counters" and e["d"]["likes"] == 60)
    assert ev["d"]["likes"] == 60
    # nothing of the budget was used, nothing counted as abuse
    for _ in range(39):
        await c.ok("ping")
    await c.close()


@pytest.mark.stores("standalone", "cluster")
async def test_likes_at_a_sustained_flood_never_close(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(rate_per_s=0.5, rate_burst=2, abuse_errors=5)
    server.product("p1")
    sid = server.session(["p1"])
    c = await WsClient.connect(server.ws_url)
    await c.ok("join", session=sid)
    for i in range(100, 400):
        await c.send_raw(c.encode({"id": i, "op": "like", "count": 2}))
    replies = [await c.reply(i) for i in range(100, 400)]
    assert all(r["ok"] for r in replies)
    ev = await c.wait_event(lambda e: e["t"] == "counters" and e["d"]["likes"] == 600)
    assert ev["d"]["likes"] == 600
    assert (await c.ok("ping"))["pong"] > 0
    # a like that is wrong is still an error and still counts
    for _ in range(4):
        assert (await c.err("like", count=0))["code"] == "bad_request"
    await c.send_raw(c.encode({"id": 1, "op": "like", "count": "x"}))
    assert await close_code(c) == 4029


# handshake --------------------------------------------------------------------------------


async def test_origin_outside_the_allow_list_is_refused_403(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(allowed_origins=("http://ok.example",))
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(server.ws_url, origin="http://evil.example",  # type: ignore[arg-type]
                                 subprotocols=["livecart.json"])  # type: ignore[list-item]
    assert info.value.response.status_code == 403
    ok = await WsClient.connect(server.ws_url, origin="http://ok.example")
    await alive(ok)
    await ok.close()
    no_origin = await WsClient.connect(server.ws_url)  # non-browser clients send none
    await alive(no_origin)
    await no_origin.close()


async def test_ws_upgrade_on_other_paths_is_refused(server: ServerThread) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(f"ws://127.0.0.1:{server.port}/nope")
    assert info.value.response.status_code in (403, 404)


async def test_server_stop_closes_connections_with_1001(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    server.product("p1")
    sid = server.session(["p1"])
    clients = [await WsClient.connect(server.ws_url, use_msgpack=bool(i % 2)) for i in range(3)]
    for c in clients:
        await c.ok("join", session=sid)
    await anyio.to_thread.run_sync(server.stop)
    codes = await asyncio.gather(*(close_code(c) for c in clients))
    assert codes == [1001, 1001, 1001]


async def test_raw_msgpack_and_json_frames_decode_the_same(server: ServerThread) -> None:
    js = await websockets.connect(server.ws_url, subprotocols=["livecart.json"])  # type: ignore[list-item]
    mp = await websockets.connect(server.ws_url, subprotocols=["livecart.msgpack"])  # type: ignore[list-item]
    await js.send(orjson.dumps({"id": 5, "op": "nope"}).decode())
    await mp.send(msgpack.packb({"id": 5, "op": "nope"}))
    a = orjson.loads(await asyncio.wait_for(js.recv(), 5))
    b = msgpack.unpackb(await asyncio.wait_for(mp.recv(), 5))
    assert a == b == {"id": 5, "ok": False, "error": a["error"]}
    assert a["error"]["code"] == "unknown_op"
    await js.close()
    await mp.close()
