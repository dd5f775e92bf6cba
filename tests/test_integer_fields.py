"""Issue 26 item 2: money, quantities, rates and timestamps are integers — a JSON number
with a fractional part written out (`1000.0`), a msgpack float (64- or 32-bit) and a
boolean are refused with `bad_request` naming the field, over the WebSocket (both codecs)
and HTTP alike. server/validate.py is the one place that decides."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server import validate as v
from server.errors import ApiError, ErrorCode
from tests.helpers import ServerThread, WsClient

pytestmark = pytest.mark.anyio

FUTURE = (int(time.time()) + 3600) * 1000  # an hour on: inside every "ends_at" window
ORDER = "ord_" + "0" * 20

# (who sends it, op, the arguments, the integer field given as a float). `who`: the
# session's creator or a viewer, each joined to the live session.
WS_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("viewer", "join", {"session": "{sid}", "since": 0}, "since"),
    ("viewer", "join", {"session": "{sid}", "chat_since": 0}, "chat_since"),
    ("viewer", "like", {"count": 2}, "count"),
    ("viewer", "position", {"ms": 1000}, "ms"),
    ("viewer", "cart_add", {"product": "p1", "qty": 1}, "qty"),
    ("viewer", "cart_set", {"product": "p1", "qty": 2}, "qty"),
    ("viewer", "checkout", {"idempotency_key": "k1", "total": 1000}, "total"),
    ("viewer", "buy_now", {"product": "p1", "qty": 1, "idempotency_key": "k2"}, "qty"),
    ("viewer", "buy_now", {"product": "p1", "qty": 1, "price": 1000,
                           "idempotency_key": "k3"}, "price"),
    ("viewer", "bid", {"auction": "auc_x", "amount": 100, "idempotency_key": "k4"}, "amount"),
    ("creator", "pin", {"product": "p1", "stream_ts_ms": 1000}, "stream_ts_ms"),
    ("creator", "unpin", {"stream_ts_ms": 1000}, "stream_ts_ms"),
    *[("creator", "pin", {"product": "p1", "deal": {
        "price": 500, "stock": 5, "per_buyer_limit": 1, "ends_at": FUTURE}}, name)
      for name in ("price", "stock", "per_buyer_limit", "ends_at")],
    *[("creator", "auction", {"product": "p1", "start_price": 100, "increment": 10,
                              "duration_s": 60, "reserve_price": 0}, name)
      for name in ("start_price", "increment", "duration_s", "reserve_price")],
    *[("creator", "giveaway", {"product": "p1", "winners": 1, "ends_at": FUTURE}, name)
      for name in ("winners", "ends_at")],
    ("creator", "chat_delete", {"message": 1}, "message"),
    ("creator", "mute", {"user": "v9", "seconds": 60}, "seconds"),
    ("creator", "chat_settings", {"slow_mode_s": 5}, "slow_mode_s"),
]


def as_float(args: dict[str, Any], field: str) -> dict[str, Any]:
    """`args` with `field` a float: at the top level, else in the nested object (`deal`)."""
    if field in args:
        return {**args, field: float(args[field])}
    return {k: {**val, field: float(val[field])} if isinstance(val, dict) and field in val
            else val for k, val in args.items()}


def case_id(case: tuple[str, str, dict[str, Any], str]) -> str:
    return f"{case[1]}.{case[3]}"


def http_cases(sid: str, video: str) -> list[tuple[str, str, str, Any, str]]:
    """(token role, method, path, body with a float, the field)."""
    product = {"id": "np1", "title": "t", "price": 1000, "stock": 5, "commission_bps": 100}
    voucher = {"code": "V1", "percent_off": 10, "min_spend": 0, "total_uses": 5,
               "per_buyer": 1, "starts_at": FUTURE - 1000, "ends_at": FUTURE}
    out: list[tuple[str, str, str, Any, str]] = []
    for name in ("price", "stock", "commission_bps"):
        out.append(("seller", "POST", "/api/products", {**product, name: float(product[name])},
                    name))
        out.append(("seller", "PATCH", "/api/products/p1", {name: 7.0}, name))
    for name in ("scheduled_at", "stream_clock_offset_ms"):
        out.append(("creator", "POST", "/api/sessions", {
            "kind": "live", "title": "s", "showcase": ["p1"],
            name: float(FUTURE) if name == "scheduled_at" else 0.0}, name))
    out.append(("creator", "PATCH", f"/api/sessions/{sid}", {"stream_clock_offset_ms": 5.0},
                "stream_clock_offset_ms"))
    out.append(("seller", "PUT", f"/api/sessions/{sid}/rates", {"p1": 2000.0}, "p1"))
    out.append(("creator", "PUT", f"/api/sessions/{video}/timeline",
                [{"at_ms": 0.0, "product": "p1"}], "at_ms"))
    out.append(("creator", "PUT", f"/api/sessions/{video}/timeline",
                [{"at_ms": 0, "product": "p1", "until_ms": 5000.0}], "until_ms"))
    line = {"product": "p1", "qty": 1, "unit_price": 100}
    for name in ("qty", "unit_price"):
        out.append(("seller", "POST", "/api/orders", {
            "external_id": f"x-{name}", "buyer": "b1",
            "lines": [{**line, name: float(line[name])}]}, name))  # type: ignore[arg-type]
    out.append(("seller", "POST", f"/api/orders/{ORDER}/refund",
                {"refund_id": "r1", "lines": [{"product": "p1", "qty": 1.0}]}, "qty"))
    for name in ("percent_off", "min_spend", "total_uses", "per_buyer", "starts_at",
                 "ends_at"):
        out.append(("seller", "POST", "/api/vouchers",
                    {**voucher, name: float(voucher[name])}, name))  # type: ignore[arg-type]
    out.append(("seller", "POST", "/api/vouchers",
                {**{k: val for k, val in voucher.items() if k != "percent_off"},
                 "amount_off": 100.0}, "amount_off"))
    return out


def _setup(server: ServerThread) -> tuple[str, str]:
    server.product("p1", stock=100)
    sid = server.session(["p1"])
    video = server.session(["p1"], kind="video", start=False)
    return sid, video


async def _clients(server: ServerThread, sid: str, use_msgpack: bool,
                   ) -> dict[str, WsClient]:
    who = {"viewer": await WsClient.connect(server.ws_url, token=server.token("v1"),
                                            use_msgpack=use_msgpack),
           "creator": await WsClient.connect(server.ws_url,
                                             token=server.token("creator1", "creator"),
                                             use_msgpack=use_msgpack)}
    for c in who.values():
        await c.ok("join", session=sid)
    return who


def _lenient(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(rate_per_s=1000.0, rate_burst=1000, abuse_errors=100_000)


@pytest.mark.parametrize("use_msgpack", [False, True], ids=["json", "msgpack"])
async def test_ws_refuses_a_float_in_every_integer_field(
        make_server: Callable[..., ServerThread], use_msgpack: bool) -> None:
    server = _lenient(make_server)
    sid, _ = _setup(server)
    who = await _clients(server, sid, use_msgpack)
    wrong = []
    for case in WS_CASES:
        role, op, args, field = case
        sent = as_float({k: (sid if val == "{sid}" else val) for k, val in args.items()}, field)
        r = await who[role].request(op, **sent)
        if r["ok"] or r["error"]["code"] != "bad_request" or r["error"].get("field") != field:
            wrong.append((case_id(case), r))
    assert not wrong, wrong
    # the same fields as integers are not refused for their shape
    cart = await who["viewer"].ok("cart_add", product="p1", qty=1)
    assert cart["lines"][0]["qty"] == 1
    for c in who.values():
        await c.close()


async def test_msgpack_single_precision_and_booleans_are_refused(
        make_server: Callable[..., ServerThread]) -> None:
    server = _lenient(make_server)
    sid, _ = _setup(server)
    who = await _clients(server, sid, True)
    viewer = who["viewer"]
    docs = [
        ({"id": 1, "op": "buy_now", "product": "p1", "qty": 1, "price": 1000.0,
          "idempotency_key": "k1"}, "price", True),
        ({"id": 2, "op": "cart_add", "product": "p1", "qty": 2.0}, "qty", True),
        ({"id": 3, "op": "buy_now", "product": "p1", "qty": True, "idempotency_key": "k2"},
         "qty", False),
        ({"id": 4, "op": "checkout", "idempotency_key": "k3", "total": False}, "total", False),
    ]
    for doc, field, single in docs:
        await viewer.send_raw(msgpack.packb(doc, use_bin_type=True, use_single_float=single))
        r = await viewer.reply(doc["id"])
        assert r["ok"] is False and r["error"]["code"] == "bad_request", r
        assert r["error"]["field"] == field, r
    assert (await server.store("HGET", server.node.keys.product("p1"), "stock")) == b"100"
    for c in who.values():
        await c.close()


async def test_json_text_with_a_written_out_fraction_is_refused(
        make_server: Callable[..., ServerThread]) -> None:
    """`1000.0` and `1e3` as the client wrote them (JSON text, not a Python float)."""
    server = _lenient(make_server)
    sid, _ = _setup(server)
    who = await _clients(server, sid, False)
    viewer = who["viewer"]
    for i, text in enumerate([
        '{"id": 1, "op": "buy_now", "product": "p1", "qty": 1, "price": 1000.0, '
        '"idempotency_key": "k1"}',
        '{"id": 2, "op": "buy_now", "product": "p1", "qty": 1e0, "idempotency_key": "k2"}',
        '{"id": 3, "op": "cart_add", "product": "p1", "qty": 1.00}',
    ], start=1):
        await viewer.send_raw(text)
        r = await viewer.reply(i)
        assert r["ok"] is False and r["error"]["code"] == "bad_request", r
        assert r["error"]["field"] in ("price", "qty"), r
    orders = await server.store("LRANGE", server.node.keys.user_orders("v1"), 0, -1)
    assert orders == []
    for c in who.values():
        await c.close()


async def test_http_refuses_a_float_in_every_integer_field(server: ServerThread) -> None:
    sid, video = _setup(server)
    wrong = []
    for role, method, path, body, field in http_cases(sid, video):
        token = server.token("seller1" if role == "seller" else "creator1", role)
        r = server.http(method, path, token=token, json=body)
        err = r.json().get("error", {}) if r.headers.get("content-type", "").startswith(
            "application/json") else {}
        if r.status_code != 400 or err.get("code") != "bad_request" or err.get("field") != field:
            wrong.append((method, path, field, r.status_code, r.text))
    assert not wrong, wrong
    # nothing was stored from any of them
    assert server.http("GET", "/api/products/np1").status_code == 404
    rates = await server.store("HGET", server.node.keys.rates("p1"), sid)
    assert rates is None


async def test_http_rates_written_out_as_text(server: ServerThread) -> None:
    """The issue's own example, as the bytes a client sends: `{"p1": 2000.0}`."""
    sid, _ = _setup(server)
    r = server.http("PUT", f"/api/sessions/{sid}/rates", token=server.token("seller1", "seller"),
                    content=b'{"p1": 2000.0}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request" and r.json()["error"]["field"] == "p1"
    r = server.http("PUT", f"/api/sessions/{sid}/rates", token=server.token("seller1", "seller"),
                    content=b'{"p1": 2000}', headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["rates"] == {"p1": 2000}, r.text


# the rule itself ------------------------------------------------------------------------

@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_float_is_an_integer(x: float) -> None:
    with pytest.raises(ApiError) as caught:
        v.integer({"n": x}, "n")
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert caught.value.to_wire()["field"] == "n"


@given(st.integers(min_value=-v.MAX_INT, max_value=v.MAX_INT))
def test_every_int_in_range_is_an_integer(n: int) -> None:
    got = v.integer({"n": n}, "n")
    assert got == n and type(got) is int


@given(st.integers(min_value=-(2**53), max_value=2**53).map(float))
def test_integral_floats_through_both_decoders_are_refused(x: float) -> None:
    for decoded in (orjson.loads(orjson.dumps({"n": x})),
                    msgpack.unpackb(msgpack.packb({"n": x}))):
        assert type(decoded["n"]) is float
        with pytest.raises(ApiError):
            v.integer(decoded, "n")
