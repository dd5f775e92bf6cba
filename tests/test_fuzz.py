"""Property: whatever a client sends, every frame gets exactly one reply (or the connection is
closed with a legal close code), and the server keeps serving fresh connections."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.edge.codecs import JSON, MSGPACK, DecodeError
from tests.conftest import make_settings
from tests.helpers import ServerThread, WsClient

# Input, wire and schema checks: on the standalone store only (the stateful tests run on
# the cluster too).
pytestmark = pytest.mark.stores("standalone")


LEGAL_CLOSE = {1009, 4029}
SERVER_FAULTS = {"internal", "unavailable"}
OPS = ["join", "leave", "ping", "auth", "like", "click", "pin", "unpin", "start", "end",
       "cart_add", "cart_set", "checkout", "buy_now",
       "position", "cart_get", "nope", ""]
FIELDS = ["session", "since", "epoch", "product", "count", "token", "stream_ts_ms", "deal",
          "idempotency_key", "price", "total",
          "qty", "ms"]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text)
keys = st.one_of(text, text, st.integers(-5, 5), st.booleans(), st.binary(max_size=3))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)


@st.composite
def commands(draw: Any, session_ids: list[str]) -> dict[str, Any]:
    cmd: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:
        cmd["id"] = draw(st.one_of(st.integers(-(2**40), 2**40), values))
    cmd["op"] = draw(st.one_of(st.sampled_from(OPS), values))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if name == "session" and session_ids:
            cmd[name] = draw(st.one_of(st.sampled_from(session_ids), values))
        elif name == "product":
            cmd[name] = draw(st.one_of(st.just("p1"), values))
        else:
            cmd[name] = draw(values)
    return cmd


frames = st.one_of(
    st.tuples(st.just("raw-text"), text),
    st.tuples(st.just("raw-bytes"), st.binary(max_size=64)),
    st.tuples(st.just("doc"), values),
    st.tuples(st.just("cmd"), st.just(None)),
    st.tuples(st.just("cmd"), st.just(None)),
    st.tuples(st.just("cmd"), st.just(None)),
)


def encode(doc: Any, use_msgpack: bool) -> str | bytes:
    """msgpack carries any map key as it is; JSON turns every key into a string."""
    if use_msgpack:
        return msgpack.packb(doc, use_bin_type=True)  # type: ignore[no-any-return]
    return orjson.dumps(as_json(doc)).decode()


def as_json(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {str(as_json(k)): as_json(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [as_json(v) for v in doc]
    return doc.hex() if isinstance(doc, bytes) else doc


def valid_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53


def expected_id(frame: str | bytes, use_msgpack: bool) -> Any:
    """The id the server must echo: the frame's own integer id, else null."""
    codec = MSGPACK if use_msgpack else JSON
    try:
        doc = codec.decode(frame)
    except DecodeError as exc:
        doc = exc.document  # what could be read of a msgpack map with a non-string key
    if isinstance(doc, dict) and valid_id(doc.get("id")):
        return doc["id"]
    return None


async def exercise(server: ServerThread, sid: str, plan: list[tuple[str, Any]],
                   use_msgpack: bool, with_token: bool, data: Any) -> None:
    token = server.token("creator1", "creator") if with_token else None
    c = await WsClient.connect(server.ws_url, token=token, use_msgpack=use_msgpack)
    marker = itertools.count(10**12)
    try:
        for kind, payload in plan:
            if kind == "raw-text":
                frame: str | bytes = payload
            elif kind == "raw-bytes":
                frame = payload
            elif kind == "doc":
                frame = encode(payload, use_msgpack)
            else:
                cmd = data.draw(commands([sid]))
                if valid_id(cmd.get("id")):
                    cmd["id"] = next(marker)  # unique, so the reply can be matched
                frame = encode(cmd, use_msgpack)
            expect_id = expected_id(frame, use_msgpack)
            try:
                await c.send_raw(frame)
                reply = await c.reply(expect_id, timeout=5)
                if expect_id is None:
                    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
                if not reply["ok"]:  # a client's input is never the server's fault
                    assert reply["error"]["code"] not in SERVER_FAULTS, (frame, reply)
                assert set(reply) == {"id", "ok", "result"} or set(reply) == {"id", "ok", "error"}
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code in LEGAL_CLOSE, exc
                return
        # exactly one reply per frame: nothing extra is pending
        pong = await c.request("ping")
        assert pong["ok"] is True or pong["error"]["code"] == "rate_limited"
        assert not c.replies, c.replies
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code in LEGAL_CLOSE, exc
    finally:
        await c.close()


@dataclass
class Fuzzed:
    """The module's one server, the live session the fuzzing talks to, and how many
    examples have hit it."""

    server: ServerThread
    sid: str
    examples: int = 0


@pytest.fixture(scope="module")
def fuzzed(valkey_url: str) -> Iterator[Fuzzed]:
    """One server for the whole module: every example hits it, and then
    test_server_still_serves_after_fuzzing checks that same server."""
    server = ServerThread(make_settings(), valkey_url).start()
    try:
        server.product("p1")
        yield Fuzzed(server, server.session(["p1"]))
    finally:
        server.stop()


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(plan=st.lists(frames, min_size=1, max_size=25), use_msgpack=st.booleans(),
       with_token=st.booleans(), data=st.data())
def test_every_frame_gets_one_reply_or_a_legal_close(fuzzed: Fuzzed, plan: list[Any],
                                                     use_msgpack: bool, with_token: bool,
                                                     data: Any) -> None:
    fuzzed.examples += 1
    asyncio.run(exercise(fuzzed.server, fuzzed.sid, plan, use_msgpack, with_token, data))


def test_server_still_serves_after_fuzzing(fuzzed: Fuzzed) -> None:
    """The server every fuzzing example hit (the module's) still serves: junk still gets its
    null-id reply, a new session can be joined in both codecs, and it is ready."""
    if not fuzzed.examples:  # selected on its own: fuzz the server first
        test_every_frame_gets_one_reply_or_a_legal_close(fuzzed)
    assert fuzzed.examples > 0
    server = fuzzed.server

    async def run() -> None:
        server.product("p2")
        sid = server.session(["p2"])
        for use_msgpack in (False, True):
            c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
            for junk in (b"\xff" * 50, "}{", "[]", "null"):
                await c.send_raw(junk)
                await c.reply(None)
            assert (await c.ok("join", session=sid))["session"] == sid
            await c.close()
        assert server.http("GET", "/readyz").status_code == 200

    asyncio.run(run())
