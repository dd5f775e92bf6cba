"""Pure units: codecs and frames (checked against the `websockets` frame parser), rate and
abuse limits, tokens, argument validation, settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any

import jwt
import msgpack
import orjson
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from server import validate as v
from server.auth import (
    ANONYMOUS,
    Identity,
    issue_token,
    mask_id,
    require_role,
    require_user,
    verify_token,
)
from server.cart.lanes import Lanes
from server.edge.client import Client, ErrorWindow, TokenBucket
from server.edge.codecs import (
    JSON,
    MSGPACK,
    OP_BINARY,
    OP_TEXT,
    DecodeError,
    batch,
    choose,
    frame,
)
from server.errors import ApiError, CloseCode, ErrorCode
from server.rooms.sold_out import SoldOut
from server.settings import Settings, SettingsError, from_env

SECRET = "unit-secret-0123456789abcdef-0123456789"


def parse_frames(data: bytes) -> list[Frame]:
    """Parse server (unmasked) frames with the websockets library's own parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen: Generator[None, None, Frame] = Frame.parse(reader.read_exact, mask=False,
                                                        max_size=None)
        try:
            next(gen)
        except StopIteration as stop:
            frames.append(stop.value)
        else:  # pragma: no cover
            raise AssertionError("incomplete frame")
    return frames


# frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 1 << 20])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_frame_matches_the_websockets_parser(size: int, opcode: int) -> None:
    payload = (b"abcdefghij" * (size // 10 + 1))[:size]
    data = frame(opcode, payload)
    [parsed] = parse_frames(data)
    assert parsed.fin is True
    assert parsed.opcode == Opcode(opcode)
    assert bytes(parsed.data) == payload
    header = {True: 2, False: 4 if size < 65536 else 10}[size < 126]
    assert len(data) == header + size


def test_concatenated_frames_parse_in_order() -> None:
    payloads = [b"", b"x" * 200, b"y" * 70000, b"z"]
    frames = parse_frames(b"".join(frame(OP_TEXT, p) for p in payloads))
    assert [bytes(f.data) for f in frames] == payloads


def test_close_codes_are_the_documented_ones() -> None:
    assert sorted(int(c) for c in CloseCode) == [1001, 1009, 4001, 4002, 4003, 4008, 4029]


# codecs and batches ----------------------------------------------------------------------

DOCS: list[Any] = [
    {"t": "pinned", "seq": 1, "ts": 1_700_000_000_000, "d": {"product": {"id": "p"}}},
    {"id": 1, "ok": True, "result": {"pong": 5}},
    {"x": [1, 2.5, None, True, "ü"]}, {}, [],
]


@pytest.mark.parametrize("doc", DOCS)
def test_codecs_round_trip(doc: Any) -> None:
    assert JSON.decode(JSON.encode(doc)) == doc
    assert MSGPACK.decode(MSGPACK.encode(doc)) == doc
    assert JSON.decode(JSON.encode(doc).decode()) == doc  # text frames arrive as str


@pytest.mark.parametrize("n", [0, 1, 2, 15, 16, 17, 65535, 65536])
def test_batch_is_one_array_document(n: int) -> None:
    # small n: real events; around the array16/array32 boundary: tiny items
    events: list[Any] = [{"t": "x", "seq": i, "d": {}} for i in range(n)] if n < 100 \
        else list(range(n))
    js = batch(JSON, [JSON.encode(e) for e in events])
    assert orjson.loads(js) == events
    mp = batch(MSGPACK, [MSGPACK.encode(e) for e in events])
    assert msgpack.unpackb(mp) == events
    # and the batch travels as one frame of the codec's opcode
    [parsed] = parse_frames(frame(MSGPACK.opcode, mp))
    assert parsed.opcode == Opcode.BINARY and msgpack.unpackb(parsed.data) == events


def test_decode_errors() -> None:
    for bad in ("{", "", "nul", b"\xff"):
        with pytest.raises(DecodeError):
            JSON.decode(bad)
    for bad in (b"\xc1", b"\x92\x01", b"", b"\x81"):
        with pytest.raises(DecodeError):
            MSGPACK.decode(bad)


def test_msgpack_refuses_non_string_keys_and_takes_str_input() -> None:
    for doc in ({1: 2}, {"id": 1, "deal": {1: 2}}, [{"a": {b"k": 1}}], {1.5: None}):
        with pytest.raises(DecodeError, match="map keys must be strings"):
            MSGPACK.decode(msgpack.packb(doc, use_bin_type=True))
    assert MSGPACK.decode(msgpack.packb({"id": 1}).decode("latin-1").encode("latin-1")) == {
        "id": 1}


def test_choose_codec() -> None:
    assert choose([]) is JSON
    assert choose(["livecart.msgpack"]) is MSGPACK
    assert choose(["foo", "livecart.json", "livecart.msgpack"]) is JSON
    assert choose(["livecart.msgpack", "livecart.json"]) is MSGPACK
    assert choose(["bogus"]) is JSON


# token bucket and error window --------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    b = TokenBucket(rate=4.0, burst=3)
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(100.125) is False  # half a token
    assert b.take(100.25) is True
    assert b.take(100.25) is False
    assert [b.take(1000.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_token_bucket_survives_a_clock_that_does_not_move() -> None:
    b = TokenBucket(rate=1000.0, burst=1)
    assert b.take(5.0) is True
    assert all(b.take(5.0) is False for _ in range(10))


def test_error_window_slides() -> None:
    w = ErrorWindow(limit=3, window_s=10.0)
    assert w.add(0.0) is False
    assert w.add(1.0) is False
    assert w.add(2.0) is True
    w = ErrorWindow(limit=3, window_s=10.0)
    assert [w.add(t) for t in (0.0, 5.0, 10.5, 16.0)] == [False, False, False, False]
    assert w.add(16.1) is True  # 10.5, 16.0, 16.1 within 10 s


class FakeSink:
    def __init__(self, backlog: int = 0) -> None:
        self.written: list[bytes] = []
        self.closed: list[tuple[int, str]] = []
        self.backlog = backlog

    @property
    def open(self) -> bool:
        return not self.closed

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def buffered(self) -> int:
        return self.backlog + sum(map(len, self.written))

    def close_now(self, code: int, reason: str = "") -> None:
        self.closed.append((code, reason))


def test_client_evicts_when_its_buffer_overflows() -> None:
    evicted: list[int] = []
    sink = FakeSink()
    c = Client(sink, JSON, max_buffer=100, on_evict=lambda cl, code: evicted.append(code))
    c.send_obj({"a": 1})
    assert not c.evicted
    c.send_frame(frame(OP_TEXT, b"x" * 200))
    assert c.evicted and evicted == [4008] and sink.closed[0][0] == 4008
    n = len(sink.written)
    c.send_obj({"more": 1})
    c.evict(4029, "again")
    assert len(sink.written) == n and len(sink.closed) == 1 and evicted == [4008]


def test_client_admit_and_note_error() -> None:
    c = Client(FakeSink(), MSGPACK, rate=1.0, burst=2, abuse_errors=2, abuse_window_s=1.0)
    assert [c.admit(0.0), c.admit(0.0), c.admit(0.0)] == [True, True, False]
    assert c.note_error(0.0) is False and c.note_error(0.5) is True
    assert c.user is None and c.identity is ANONYMOUS
    written = FakeSink()
    Client(written, MSGPACK).send_obj({"id": 1})
    [parsed] = parse_frames(written.written[0])
    assert parsed.opcode == Opcode.BINARY and msgpack.unpackb(parsed.data) == {"id": 1}


# tokens -----------------------------------------------------------------------------------


def test_token_round_trip() -> None:
    tok = issue_token(SECRET, "ana", "creator", 60, name="Ana")
    ident = verify_token(SECRET, tok)
    assert (ident.sub, ident.role, ident.name) == ("ana", "creator", "Ana")
    assert ident.exp is not None and ident.exp > time.time()
    assert not ident.expired() and not ident.anonymous
    assert ident.display_name() == "Ana"


@pytest.mark.parametrize("make", [
    lambda: issue_token(SECRET, "ana", "viewer", 60, now=time.time() - 120),
    lambda: issue_token("wrong-secret-0123456789abcdef-01234567", "ana", "viewer", 60),
    lambda: "x.y.z",
    lambda: "",
    lambda: jwt.encode({"sub": "ana", "role": "viewer"}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": "ana", "role": "god", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": 5, "role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": "", "role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "name": "n" * 65}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) + 60}, None,
                       algorithm="none"),
    lambda: jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS512"),
    # RFC 7519 NumericDate: a number, never a (numeric) string or a boolean
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": str(int(time.time()) + 60)},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "iat": str(int(time.time()))}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "nbf": str(int(time.time()) - 5)}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": True}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": 2**64}, SECRET, algorithm="HS256"),
    # `sub` must be an id (the definition of server/validate.py)
    lambda: jwt.encode({"sub": "ana smith", "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "x" * 65, "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a{b}", "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a/b", "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
])
def test_bad_tokens_are_unauthorized(make: Any) -> None:
    with pytest.raises(ApiError) as info:
        verify_token(SECRET, make())
    assert info.value.code is ErrorCode.UNAUTHORIZED


def test_tokens_interoperate_with_pyjwt() -> None:
    """Our HS256 is the standard one: PyJWT reads what we sign and we read what it signs."""
    ours = issue_token(SECRET, "ana", "creator", 60, name="Ana")
    assert jwt.decode(ours, SECRET, algorithms=["HS256"])["sub"] == "ana"
    theirs = jwt.encode({"sub": "bo", "role": "viewer", "exp": int(time.time()) + 60,
                         "nbf": int(time.time()) - 1, "iat": time.time()}, SECRET,
                        algorithm="HS256")
    ident = verify_token(SECRET, theirs)
    assert (ident.sub, ident.role) == ("bo", "viewer")


@pytest.mark.parametrize("make", [
    # not yet valid, tampered payload, padding or extra parts, a header without HS256
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "nbf": int(time.time()) + 30}, SECRET, algorithm="HS256"),
    lambda: _swap_payload(issue_token(SECRET, "a", "viewer", 60),
                          issue_token(SECRET, "a", "admin", 60)),
    lambda: issue_token(SECRET, "a", "viewer", 60) + "=",
    lambda: issue_token(SECRET, "a", "viewer", 60) + ".x",
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256", headers={"alg": "HS384"}),
    lambda: "e30." + issue_token(SECRET, "a", "viewer", 60).split(".", 1)[1],
])
def test_forged_or_early_tokens_are_unauthorized(make: Any) -> None:
    with pytest.raises(ApiError) as info:
        verify_token(SECRET, make())
    assert info.value.code is ErrorCode.UNAUTHORIZED


def _swap_payload(token: str, other: str) -> str:
    head, _, sig = token.split(".")
    return ".".join((head, other.split(".")[1], sig))


def test_issue_token_rejects_unknown_roles() -> None:
    with pytest.raises(ApiError) as info:
        issue_token(SECRET, "a", "king", 60)
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_require_user_and_role() -> None:
    with pytest.raises(ApiError) as info:
        require_user(ANONYMOUS)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    expired = Identity("a", "viewer", exp=int(time.time()) - 1)
    with pytest.raises(ApiError) as info:
        require_user(expired)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert require_role(Identity("s", "seller", exp=None), "seller") == "s"
    assert require_role(Identity("r", "admin"), "seller") == "r"
    with pytest.raises(ApiError) as info:
        require_role(Identity("v", "viewer"), "seller")
    assert info.value.code is ErrorCode.FORBIDDEN


def test_display_names_never_leak_ids() -> None:
    assert Identity("user-12345", "viewer").display_name() != "user-12345"
    assert "12345" not in mask_id("user-12345")
    assert ANONYMOUS.display_name() == "someone"


# validation --------------------------------------------------------------------------------


def bad(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    assert info.value.code is ErrorCode.BAD_REQUEST
    return info.value.to_wire()


def test_validate_integer() -> None:
    assert v.integer({"n": 5}, "n", lo=0, hi=5) == 5
    assert v.integer({}, "n", required=False) is None
    assert v.integer({}, "n", default=3) == 3
    assert v.integer({"n": None}, "n", required=False, default=7) == 7
    for value in (True, 1.5, "1", [1], {"a": 1}):
        assert bad(v.integer, {"n": value}, "n")["field"] == "n"
    assert bad(v.integer, {"n": 1.0}, "n")["field"] == "n"  # a float, even integral: no
    bad(v.integer, {"n": -1}, "n", lo=0)
    bad(v.integer, {"n": 6}, "n", hi=5)
    bad(v.integer, {}, "n")
    assert v.req_int({"n": 0}, "n", lo=0) == 0


def test_validate_strings_and_ids() -> None:
    assert v.string({"s": "hi"}, "s") == "hi"
    assert v.string({}, "s", required=False) is None
    for value in ("", "   ", 5, None, ["a"]):
        bad(v.req_str, {"s": value}, "s")
    bad(v.string, {"s": "x" * 11}, "s", max_len=10)
    assert v.req_ident({"i": "sess_ab-c.d:e"}, "i") == "sess_ab-c.d:e"
    for value in ("a b", "x" * 65, "é", "a/b", "{a}", "a\n"):
        bad(v.req_ident, {"i": value}, "i")


def test_validate_obj_and_only() -> None:
    assert v.obj({"a": 1}) == {"a": 1}
    for value in ([], "x", 1, None):
        bad(v.obj, value)
    v.only({"a": 1}, {"a", "b"})
    assert "c" in bad(v.only, {"a": 1, "c": 2}, {"a"})["message"]


def test_error_codes_map_to_http_statuses() -> None:
    expected = {"bad_request": 400, "unknown_op": 400, "unauthorized": 401, "forbidden": 403,
                "not_found": 404, "not_live": 409, "out_of_stock": 409, "sold_out": 409,
                "limit_exceeded": 409, "deal_ended": 409, "conflict": 409, "ended": 409,
                "voucher_used_up": 409, "voucher_not_applicable": 409,
                "too_large": 413, "muted": 403, "banned": 403, "blocked": 422,
                "method_not_allowed": 405, "unsupported_media_type": 415,
                "rate_limited": 429, "internal": 500, "unavailable": 503,
                "stream_origin_refused": 403, "stream_upstream_failed": 502, "no_stream": 409}
    assert {c.value: c.http_status for c in ErrorCode} == expected
    wire = ApiError(ErrorCode.NOT_FOUND, "gone", product="p").to_wire()
    assert wire == {"code": "not_found", "message": "gone", "product": "p"}


# settings ----------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    s = from_env({"LIVECART_SECRET": "s" * 32, "LIVECART_RATE_PER_S": "5",
                  "LIVECART_ALLOWED_ORIGINS": "http://a.example, http://b.example ,"})
    assert s.rate_per_s == 5.0 and s.secret == "s" * 32
    assert s.allowed_origins == ("http://a.example", "http://b.example")
    assert s.max_frame_bytes == 64 * 1024 and s.rate_burst == 40 and s.abuse_errors == 20


@pytest.mark.parametrize("env", [
    {"LIVECART_SECRET": "short"},
    {"LIVECART_RATE_PER_S": "fast"},
    {"LIVECART_FSYNC": "sometimes"},
    {"LIVECART_CURRENCY": "EURO"},
    {"LIVECART_MAX_FRAME_BYTES": "0"},
    {"LIVECART_KEY_PREFIX": "a b"},
])
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        from_env(env)


def test_missing_secret_is_an_error_outside_demo() -> None:
    with pytest.raises(SettingsError) as info:
        _ = Settings().signing_secret
    assert "LIVECART_SECRET" in str(info.value)
    assert Settings(demo=True).signing_secret
    assert Settings(secret="x" * 32).signing_secret == "x" * 32


def test_origin_allow_list() -> None:
    from server.edge.gate import origin_allowed

    assert origin_allowed("http://any", ())
    assert origin_allowed(None, ("http://ok",))  # non-browser clients
    assert origin_allowed("http://ok", ("http://ok",))
    assert not origin_allowed("http://evil", ("http://ok",))
    assert not origin_allowed("http://ok.evil", ("http://ok",))
    assert origin_allowed("http://x", ("*",))


@pytest.mark.parametrize("sub", ["ana@example.com", "auth0|5f1c", "ana+live@shop.example",
                                 "u:1.2-3_4", "x" * 64])
def test_every_id_is_a_token_sub_and_back(sub: str) -> None:
    """One definition of an id: what a token may name is exactly what a path may name."""
    assert v.is_id(sub)
    ident = verify_token(SECRET, issue_token(SECRET, sub, "creator", 60))
    assert ident.sub == sub


@pytest.mark.parametrize("sub", ["ana smith", "a/b", "x" * 65, "", "a{b}", "ana\n", "é"])
def test_a_non_id_sub_is_refused_at_issue(sub: str) -> None:
    assert not v.is_id(sub)
    with pytest.raises(ApiError) as info:
        issue_token(SECRET, sub, "viewer", 60)
    assert info.value.code is ErrorCode.BAD_REQUEST and info.value.details == {"field": "sub"}


def test_numeric_dates_may_be_floats() -> None:
    now = time.time()
    tok = jwt.encode({"sub": "a", "role": "viewer", "exp": now + 60.5, "iat": now,
                      "nbf": now - 1.25}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, tok).exp == int(now + 60.5)


def test_integers_are_bounded_to_what_json_javascript_and_lua_hold_exactly() -> None:
    assert v.integer({"n": v.MAX_INT}, "n") == 2**53 - 1
    assert v.integer({"n": -v.MAX_INT}, "n") == -(2**53 - 1)
    for n in (2**53, 2**64 - 1, -(2**53), -(2**63)):
        assert bad(v.integer, {"n": n}, "n")["field"] == "n"
    assert bad(v.integer, {"n": 2**60}, "n", hi=2**62)["message"] == f"`n` must be ≤ {v.MAX_INT}"


def test_only_names_non_string_keys_without_failing() -> None:
    assert "1" in bad(v.only, {"a": 1, 1: 2, "z": 3}, {"a"})["message"]


def test_an_integral_float_is_not_an_integer() -> None:
    """Issue 26 item 2: money and counts are integers as sent; 5.0 is refused like 5.5."""
    for value in (5.0, 5.5, float(2**53), "5", True, float("inf"), float("nan")):
        bad(v.integer, {"n": value}, "n")


@pytest.mark.anyio
async def test_lanes_run_at_most_their_width_in_arrival_order() -> None:
    lanes = Lanes(3)
    running, peak, order = 0, 0, []

    async def attempt(i: int) -> None:
        nonlocal running, peak
        assert await lanes.enter(("room", "p1"), lambda: False)
        running += 1
        peak = max(peak, running)
        order.append(i)
        await asyncio.sleep(0.01)
        running -= 1
        lanes.leave(("room", "p1"), lambda: False)

    tasks = [asyncio.ensure_future(attempt(i)) for i in range(12)]
    await asyncio.sleep(0.005)
    assert lanes.waiting() == 9
    await asyncio.gather(*tasks)
    assert peak == 3 and order == list(range(12)) and lanes.waiting() == 0


@pytest.mark.anyio
async def test_a_lane_lets_its_whole_queue_go_once_skipping_holds() -> None:
    lanes = Lanes(1)
    sold_out = False
    assert await lanes.enter("k", lambda: sold_out)
    waiters = [asyncio.ensure_future(lanes.enter("k", lambda: sold_out)) for _ in range(50)]
    await asyncio.sleep(0)
    assert lanes.waiting() == 50
    sold_out = True
    lanes.leave("k", lambda: sold_out)  # one leave answers all fifty in the same tick
    assert await asyncio.gather(*waiters) == [False] * 50
    assert lanes.waiting() == 0 and not await lanes.enter("k", lambda: sold_out)
    # a cancelled waiter gives its turn to the next one
    sold_out = False
    assert await lanes.enter("k", lambda: sold_out)
    first = asyncio.ensure_future(lanes.enter("k", lambda: sold_out))
    second = asyncio.ensure_future(lanes.enter("k", lambda: sold_out))
    await asyncio.sleep(0)
    lanes.leave("k", lambda: sold_out)
    first.cancel()
    assert await second is True
    lanes.leave("k", lambda: sold_out)
    assert lanes.waiting() == 0


def test_sold_out_facts_clear_only_when_buy_now_could_get_units() -> None:
    facts = SoldOut()
    pin = {"product": {"id": "p1"}, "deal": {"price": 5, "stock_left": 3}}
    facts.on_event("s1", "pinned", pin)
    assert facts.deal_units("s1", "p1") == 3  # what the pin's deal has
    facts.on_event("s1", "deal", {"product": "p1", "status": "open", "stock_left": 2})
    assert facts.deal_units("s1", "p1") == 2 and facts.deal_units("s1", "p2") is None
    facts.on_event("s1", "sold_out", {"product": "p1"})
    assert facts.known("s1", "p1") and not facts.known("s2", "p1")
    # sales elsewhere lower list stock and the deal's own progress says 0 left: still sold out
    facts.on_event("s1", "product", {"id": "p1", "price": 9, "stock": 7})
    facts.on_event("s1", "deal", {"product": "p1", "status": "open", "stock_left": 0})
    facts.on_event("s1", "purchase", {"product": "p1", "qty": 1})
    assert facts.known("s1", "p1")
    # an undone attempt gave the deal a unit back
    facts.on_event("s1", "deal", {"product": "p1", "status": "open", "stock_left": 1})
    assert not facts.known("s1", "p1")
    facts.on_event("s1", "sold_out", {"product": "p1"})
    facts.on_event("s1", "deal", {"product": "p1", "status": "closed", "stock_left": 0})
    assert not facts.known("s1", "p1")  # list price again: the store decides
    # without a deal, list stock is what buy_now sells: a restock clears it, 0 does not
    facts.on_event("s1", "sold_out", {"product": "p1"})
    facts.on_event("s1", "product", {"id": "p1", "price": 9, "stock": 0})
    assert facts.known("s1", "p1")
    facts.on_event("s1", "product", {"id": "p1", "price": 9, "stock": 3})
    assert not facts.known("s1", "p1")
    facts.on_event("s1", "sold_out", {"product": "p1"})
    facts.forget("s1")
    assert not facts.known("s1", "p1")


@pytest.mark.anyio
async def test_a_lane_widens_to_the_units_a_deal_has_left() -> None:
    lanes = Lanes(2)
    assert all([await lanes.enter("k", lambda: False, 5) for _ in range(5)])
    sixth = asyncio.ensure_future(lanes.enter("k", lambda: False, 5))
    await asyncio.sleep(0)
    assert lanes.waiting() == 1 and not sixth.done()
    lanes.leave("k", lambda: False)
    assert await sixth is True
    assert not await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(
        lanes.enter("other", lambda: True, 5))), 1)
