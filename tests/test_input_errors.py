"""Issue 13 (inputs): every malformed input gets its precise code through the real protocol,
counts toward abuse when it is the client's fault, and never shows up as `unavailable`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
import msgpack
import orjson
import pytest

from server.errors import ApiError, ErrorCode
from server.valkey.store import Store
from tests.helpers import SECRET, ServerThread, WsClient, close_code

pytestmark = pytest.mark.anyio

CODECS = [pytest.param(False, id="json"), pytest.param(True, id="msgpack")]
TOO_BIG = 18446744073709551615  # 2^64 - 1: fits msgpack and orjson, not Valkey or Lua


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def send_msgpack(c: WsClient, doc: Any) -> None:
    await c.send_raw(msgpack.packb(doc, use_bin_type=True))


# item 4: a msgpack map with a non-string key -------------------------------------------------


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


async def test_unreadable_id_with_a_bad_key_gets_a_null_id(server: ServerThread) -> None:
    c = await WsClient.connect(server.ws_url, use_msgpack=True)
    await c.send_raw(msgpack.packb({"id": "x", 1: 2}))
    reply = await c.reply(None)
    assert reply["error"]["code"] == "bad_request"
    await c.close()


# item 5: integers out of what Valkey and Lua take -------------------------------------------


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


# item 6: one definition of an id, shared by tokens and paths --------------------------------


async def test_an_email_sub_is_credited_and_reaches_its_ledger(server: ServerThread) -> None:
    creator = "ana@example.com"
    server.product("p1", price=1000, commission_bps=1000)
    sid = server.session(["p1"], creator=creator)
    buyer = await WsClient.connect(server.ws_url, token=server.token("bob+1@example.com"))
    await buyer.ok("join", session=sid)
    order = await buyer.ok("buy_now", product="p1", qty=1, idempotency_key="k1")
    assert order["buyer"] == "bob+1@example.com" and order["lines"][0]["commission"] == 100
    await buyer.close()
    for path in (f"/api/creators/{creator}/ledger", "/api/creators/ana%40example.com/ledger"):
        r = server.http("GET", path, token=server.token(creator, "creator"))
        assert r.status_code == 200, r.text
        assert r.json()["creator"] == creator and r.json()["balance"] == 100
    r = server.http("GET", f"/api/orders/{order['id']}", token=server.token("bob+1@example.com"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("sub", ["ana smith", "a/b", "x" * 65, "ana{x}", "é"])
async def test_a_sub_that_is_not_an_id_is_refused_at_issue_and_verify(
        server: ServerThread, sub: str) -> None:
    r = server.http("POST", "/api/tokens", json={"sub": sub, "role": "creator"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "sub", r.text
    forged = jwt.encode({"sub": sub, "role": "creator", "exp": int(time.time()) + 60},
                        SECRET, algorithm="HS256")
    r = server.http("GET", "/api/creators/anyone/ledger", token=forged)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    assert "must be an id" in r.json()["error"]["message"]
    c = await WsClient.connect(server.ws_url, token=forged)
    assert await close_code(c) == 4001
    anon = await WsClient.connect(server.ws_url)
    assert (await anon.err("auth", token=forged))["code"] == "unauthorized"
    await anon.close()


# item 8: time claims are numbers ------------------------------------------------------------


@pytest.mark.parametrize("claims", [
    {"exp": "9999999999"}, {"exp": 9999999999, "iat": "1"}, {"exp": 9999999999, "nbf": "1"},
])
async def test_time_claims_as_strings_are_refused(server: ServerThread,
                                                  claims: dict[str, Any]) -> None:
    tok = jwt.encode({"sub": "ana", "role": "viewer", **claims}, SECRET, algorithm="HS256")
    c = await WsClient.connect(server.ws_url, token=tok)
    assert await close_code(c) == 4001
    r = server.http("GET", "/api/creators/ana/ledger", token=tok)
    assert r.status_code == 401 and "must be a number" in r.json()["error"]["message"], r.text
    numeric = jwt.encode({"sub": "ana", "role": "viewer", "exp": 9999999999}, SECRET,
                         algorithm="HS256")
    assert server.http("GET", "/api/creators/ana/ledger", token=numeric).status_code == 200


# item 10: internal errors are `internal`, with a request id in the reply and the log --------


async def test_a_bug_in_a_command_is_internal_with_a_request_id(
        server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(client: Any, args: Any) -> Any:
        raise RuntimeError("a bug")

    server.node.dispatcher.handlers["ping"] = broken
    c = await WsClient.connect(server.ws_url)
    for _ in range(3):
        err = await c.err("ping")
        assert err["code"] == "internal" and len(err["request_id"]) == 16, err
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == err["request_id"]]
    assert logged and logged[0].exc_info is not None
    await c.close()


async def test_internal_errors_do_not_count_toward_abuse(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(abuse_errors=3)

    async def broken(client: Any, args: Any) -> Any:
        raise RuntimeError("a bug")

    server.node.dispatcher.handlers["ping"] = broken
    c = await WsClient.connect(server.ws_url)
    for _ in range(6):
        assert (await c.err("ping"))["code"] == "internal"
    assert (await c.ok("leave")) == {"left": None}
    await c.close()


async def test_a_bug_in_an_http_route_is_500_internal(
        server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(pid: str) -> Any:
        raise RuntimeError("a bug")

    server.node.products.get = broken
    r = server.http("GET", "/api/products/p1")
    assert r.status_code == 500, r.text
    error = r.json()["error"]
    assert error["code"] == "internal" and error["request_id"]
    assert any(getattr(rec, "request_id", None) == error["request_id"] for rec in caplog.records)


async def test_a_store_reply_we_did_not_expect_is_internal_not_unavailable(
        valkey_url: str) -> None:
    store = Store(valkey_url)
    try:
        with pytest.raises(ApiError) as info:  # what `join {since: 2^64-1}` used to send
            await store.call("XRANGE", "lc:x", f"{TOO_BIG + 1}-0", "+")
        assert info.value.code is ErrorCode.INTERNAL and info.value.details["request_id"]
        with pytest.raises(ApiError) as info:
            await store.call("NO-SUCH-COMMAND")
        assert info.value.code is ErrorCode.INTERNAL
        with pytest.raises(ApiError) as info:
            await store.call("EVAL", "return redis.error_reply('OOM command not allowed')", 0)
        assert info.value.code is ErrorCode.UNAVAILABLE  # the store cannot serve: an outage
    finally:
        await store.close()


# fragile: likes are merged at any rate ------------------------------------------------------


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


# fragile: Content-Type on JSON bodies -------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonx", "multipart/form-data"])
def test_json_bodies_need_a_json_content_type(server: ServerThread,
                                              content_type: str | None) -> None:
    body = orjson.dumps({"title": "T", "price": 100, "stock": 1, "commission_bps": 0})
    headers = {"Content-Type": content_type} if content_type else {}
    r = server.http("POST", "/api/products", token=server.token("s1", "seller"), content=body,
                    headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"


def test_json_content_type_may_carry_parameters(server: ServerThread) -> None:
    body = orjson.dumps({"title": "T", "price": 100, "stock": 1, "commission_bps": 0})
    r = server.http("POST", "/api/products", token=server.token("s1", "seller"), content=body,
                    headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 201, r.text


def test_method_not_allowed_lists_every_method_of_the_path(server: ServerThread) -> None:
    r = server.http("DELETE", "/api/products/p1")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "PATCH"}
