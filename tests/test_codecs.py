"""The wire codecs (server/edge/codecs.py): frames checked against the `websockets` frame
parser, JSON and msgpack round trips, a batch as one array document, decode errors, and
the codec a connection's subprotocols choose (docs/protocol.md, "Connecting")."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest
from websockets.frames import Opcode

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
from tests.helpers import parse_frames

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
