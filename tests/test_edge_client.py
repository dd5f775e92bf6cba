"""One connection's own limits (server/edge/client.py): the command token bucket, the
sliding window of errors that closes an abusive connection, and eviction when what it
has not read yet overflows its buffer (docs/protocol.md, "Limits")."""

from __future__ import annotations

import msgpack
from websockets.frames import Opcode

from server.auth import ANONYMOUS
from server.edge.client import Client, ErrorWindow, TokenBucket
from server.edge.codecs import JSON, MSGPACK, OP_TEXT, frame
from tests.helpers import FakeSink, parse_frames


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
