"""Connection-level behaviour of /ws (docs/protocol.md, "Connecting" and "Close codes"):
oversized handshakes, slow consumers that must see their 4008, handshake and idle
timeouts, the per-IP cap, the Authorization header, keepalive. Raw sockets where the point
is what a misbehaving client sees."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.helpers import ServerThread, WsClient, close_code

# Input, wire and schema checks: on the standalone store only (the stateful tests run on
# the cluster too).
pytestmark = [pytest.mark.anyio, pytest.mark.stores("standalone")]


def raw_request(port: int, head: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send `head`, read until the server closes; (what it sent, whether it closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return got, False
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
        return got, False


def upgrade_head(port: int, path: str = "/ws", extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


# oversized handshakes: 414 or 431, then closed ----------------------------------------------


async def test_a_request_line_over_the_limit_is_answered_414_and_closed(
        server: ServerThread) -> None:
    head = upgrade_head(server.port, "/ws?token=" + "x" * 9000)
    got, closed = await asyncio.to_thread(raw_request, server.port, head)
    assert got.startswith(b"HTTP/1.1 414 "), got[:80]
    assert closed


async def test_header_fields_over_the_limit_are_answered_431_and_closed(
        server: ServerThread) -> None:
    head = upgrade_head(server.port, extra="X-Big: " + "y" * 9000 + "\r\n")
    got, closed = await asyncio.to_thread(raw_request, server.port, head)
    assert got.startswith(b"HTTP/1.1 431 "), got[:80]
    assert closed
    many = "".join(f"X-H{i}: {'z' * 200}\r\n" for i in range(100))  # 20 KB of small lines
    got, closed = await asyncio.to_thread(raw_request, server.port,
                                          upgrade_head(server.port, extra=many))
    assert got.startswith(b"HTTP/1.1 431 "), got[:80]
    assert closed
    # the same limits hold for plain HTTP requests
    got, closed = await asyncio.to_thread(
        raw_request, server.port, b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 414 ") and closed


async def test_a_request_line_over_the_limit_sent_in_pieces_is_refused_early(
        server: ServerThread) -> None:
    """No CRLF yet and already over the limit: refused without waiting for the rest."""
    got, closed = await asyncio.to_thread(raw_request, server.port, b"GET /ws?" + b"a" * 9000)
    assert got.startswith(b"HTTP/1.1 414 ") and closed


# timeouts and caps ----------------------------------------------------------------------------


async def test_a_silent_socket_is_closed_after_the_handshake_timeout(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(handshake_timeout_s=0.4)
    started = time.monotonic()
    got, closed = await asyncio.to_thread(raw_request, server.port, b"", 5.0)
    assert closed and got.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3.0
    # a trickling head is cut off too
    got, closed = await asyncio.to_thread(raw_request, server.port, b"GET /ws HTTP/1.1\r\n", 5.0)
    assert closed and got.startswith(b"HTTP/1.1 408 ")
    # a normal connection is not affected
    c = await WsClient.connect(server.ws_url)
    await asyncio.sleep(0.8)
    assert (await c.ok("ping"))["pong"] > 0
    await c.close()


async def test_a_connection_that_never_joins_is_closed_4002(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(idle_timeout_s=1.0)
    server.product("p1")
    sid = server.session(["p1"])
    idle = await WsClient.connect(server.ws_url)
    joined = await WsClient.connect(server.ws_url)
    await joined.ok("join", session=sid)
    busy = await WsClient.connect(server.ws_url)

    async def keep_busy() -> int:  # commands keep a connection that has not joined alive
        pongs = 0
        for _ in range(25):
            pongs += (await busy.ok("ping"))["pong"] > 0
            await asyncio.sleep(0.1)
        return pongs

    code, pongs = await asyncio.gather(close_code(idle, timeout=8), keep_busy())
    assert code == 4002 and pongs == 25
    await joined.drain(0.3)
    assert (await joined.ok("ping"))["pong"] > 0  # joined: never idles out
    await asyncio.gather(joined.close(), busy.close())


async def test_connections_per_ip_are_capped_when_configured(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_connections_per_ip=3)
    clients = [await WsClient.connect(server.ws_url) for _ in range(3)]
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(server.ws_url)
    assert info.value.response.status_code == 429
    await clients.pop().close()
    await asyncio.sleep(0.2)
    again = await WsClient.connect(server.ws_url)
    assert (await again.ok("ping"))["pong"] > 0
    await asyncio.gather(again.close(), *(c.close() for c in clients))


async def test_no_per_ip_cap_by_default(server: ServerThread) -> None:
    clients = [await WsClient.connect(server.ws_url) for _ in range(12)]
    pongs = [(await c.ok("ping"))["pong"] for c in clients]
    assert len(pongs) == 12 and all(p > 0 for p in pongs)
    await asyncio.gather(*(c.close() for c in clients))


async def test_a_peer_that_never_answers_pings_is_dropped(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(ping_interval_s=0.3, idle_timeout_s=60)
    alive = await WsClient.connect(server.ws_url)  # websockets answers pings by itself
    sock = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", server.port), 5)
    sock.sendall(upgrade_head(server.port))
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    deadline = time.monotonic() + 5
    closed = False
    while time.monotonic() < deadline and not closed:  # read (pings) but never answer
        try:
            closed = not await asyncio.to_thread(sock.recv, 4096)
        except (ConnectionResetError, TimeoutError):
            closed = True
    sock.close()
    assert closed
    assert (await alive.ok("ping"))["pong"] > 0
    await alive.close()


# tokens in the Authorization header -------------------------------------------------------------


async def test_a_bearer_token_in_the_authorization_header_is_honoured(
        server: ServerThread) -> None:
    tok = server.token("hdr_user")
    c = await WsClient.connect(server.ws_url,
                               additional_headers={"Authorization": f"Bearer {tok}"})
    assert (await c.ok("cart_get"))["lines"] == []
    await c.close()
    # the same token in both places is fine
    both = await WsClient.connect(server.ws_url, token=tok,
                                  additional_headers={"Authorization": f"Bearer {tok}"})
    assert (await both.ok("cart_get"))["lines"] == []
    await both.close()


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt"])
async def test_an_unusable_authorization_header_closes_4001(server: ServerThread,
                                                            header: str) -> None:
    c = await WsClient.connect(server.ws_url, additional_headers={"Authorization": header})
    assert await close_code(c) == 4001


async def test_two_different_tokens_close_4001(server: ServerThread) -> None:
    c = await WsClient.connect(server.ws_url, token=server.token("a"),
                               additional_headers={"Authorization":
                                                   f"Bearer {server.token('b')}"})
    assert await close_code(c) == 4001


# a slow consumer sees its 4008, sent behind what the socket already holds -------------------


class SlowReader:
    """A raw WebSocket client (sans-I/O ClientProtocol) on a socket with a tiny receive
    window, read only when `read_slowly` is called."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(5)
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws"), max_size=None)
        self.proto.send_request(self.proto.connect())
        self._flush()
        self.frames: list[Frame] = []
        while not any(isinstance(e, Response) for e in self._feed(self.sock.recv(4096))):
            pass

    def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.sock.sendall(data)

    def _feed(self, data: bytes) -> list[object]:
        if not data:
            self.proto.receive_eof()
        else:
            self.proto.receive_data(data)
        events = self.proto.events_received()
        self.frames.extend(e for e in events if isinstance(e, Frame))
        return list(events)

    def send_text(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self._flush()

    def read_slowly(self, chunk: int, pause_s: float, timeout_s: float) -> int | None:
        """Read `chunk` bytes every `pause_s` until a close frame; its code (None: the
        connection ended without one, or the time ran out)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(chunk)
            except (ConnectionResetError, TimeoutError):
                return None
            self._feed(data)
            for frame in self.frames:
                if frame.opcode is Opcode.CLOSE:
                    return Close.parse(frame.data).code
            self.frames = []
            if not data:
                return None
            time.sleep(pause_s)
        return None


async def test_a_slow_consumer_receives_its_4008(
        make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> None:
    """The close frame must not wait behind the viewer's whole backlog: eviction drops
    what is queued for it, so a viewer that reads slowly still sees 4008 (not 1006)."""
    import server.edge.wire as wire

    # 4 s to deliver the close (a loaded box reads slowly), still short of the ~5 s a
    # 256 KiB backlog takes at ~50 KB/s: a close queued behind the backlog still fails
    monkeypatch.setattr(wire, "CLOSE_TIMEOUT_S", 4.0)
    server = make_server(send_buffer_bytes=256 * 1024, rate_per_s=10_000, rate_burst=10_000)
    server.product("big", title="B" * 200)
    sid = server.session(["big"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    slow = await asyncio.to_thread(SlowReader, server.port)
    slow.send_text(f'{{"id":1,"op":"join","session":"{sid}"}}')
    await asyncio.sleep(0.3)
    from tests.test_recovery import shrink_server_send_buffer

    shrink_server_send_buffer(server, slow.sock.getsockname())
    hub = server.node.hub
    deadline = time.monotonic() + 30
    while hub.evictions == 0:
        assert time.monotonic() < deadline, "the slow viewer was never evicted"
        await creator.ok("pin", product="big")
    # ~50 KB/s: a 256 KiB backlog would take 5 s, past the 4 s close timeout
    code = await asyncio.to_thread(slow.read_slowly, 1024, 0.02, 8.0)
    slow.sock.close()
    assert code == 4008
    await creator.close()


# the join path: one read per room per tick, one encoding per room state ----------------------


async def test_joins_in_one_tick_share_one_read_and_one_encoding(
        server: ServerThread, valkey_url: str) -> None:
    from server.edge.codecs import JSON, MSGPACK
    from server.node import Node
    from server.rooms.snapshots import Snapshots

    server.product("p1")
    server.product("p2")
    sid = server.session(["p1", "p2"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    watcher = await WsClient.connect(server.ws_url)  # a viewer (the creator is not one)
    await watcher.ok("join", session=sid)
    pinned = await creator.ok("pin", product="p2")
    node = Node(server.settings, valkey_url)  # its services, without serving
    store = node.store
    await store.open()
    snaps = Snapshots(node.sessions, node.products)
    try:
        got = await asyncio.gather(*(snaps.read(sid, f"v{i}", None) for i in range(40)),
                                   snaps.read(sid, "late", pinned["seq"] - 1))
        assert snaps.reads == 2  # state + history, then the (not yet known) showcase
        deadline = time.monotonic() + 5
        while got[0].doc["counters"]["viewers"] != 1:  # the watcher's presence report
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
            got = [await snaps.read(sid, "probe", None)]
        snaps.reads = 2
        got = await asyncio.gather(*(snaps.read(sid, f"v{i}", None) for i in range(40)),
                                   snaps.read(sid, "late", pinned["seq"] - 1))
        assert snaps.reads == 3  # the showcase is known now: one round trip for all
        assert len({id(s.encoded) for s in got}) == 1
        doc = got[0].doc
        assert doc["seq"] == pinned["seq"] and doc["pinned"]["product"]["id"] == "p2"
        assert [p["id"] for p in doc["showcase"]] == ["p1", "p2"]
        assert got[-1].histories[pinned["seq"] - 1]  # the missed pin event
        again = await asyncio.gather(*(snaps.read(sid, f"w{i}", None) for i in range(10)))
        assert snaps.reads == 4
        assert again[0].encoded is got[0].encoded  # same state: not rebuilt, not re-encoded
        reply = {"id": 9, "ok": True, "result": got[0].encoded}
        import msgpack
        import orjson

        assert orjson.loads(JSON.encode(reply))["result"] == doc
        assert msgpack.unpackb(MSGPACK.encode(reply))["result"] == doc
        uniques = await store.call("PFCOUNT", node.keys.uniques(sid))
        assert int(uniques) >= 51
    finally:
        await store.close()
        await creator.close()
        await watcher.close()


async def test_joins_behind_a_read_in_flight_share_the_next_read(
        server: ServerThread, valkey_url: str) -> None:
    from server.node import Node
    from server.rooms.snapshots import Snapshots

    server.product("p1")
    sid = server.session(["p1"])
    node = Node(server.settings, valkey_url)
    await node.store.open()
    snaps = Snapshots(node.sessions, node.products)
    try:
        await snaps.read(sid, "first", None)  # learns the showcase: one round trip from now
        before = snaps.reads
        first = asyncio.ensure_future(snaps.read(sid, "a", None))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # that read is in flight now
        queued = [asyncio.ensure_future(snaps.read(sid, f"q{i}", None)) for i in range(30)]
        await asyncio.sleep(0)
        more = [asyncio.ensure_future(snaps.read(sid, f"r{i}", None)) for i in range(5)]
        got = await asyncio.gather(first, *queued, *more)
        assert snaps.reads - before == 2  # the one in flight, then one for all 35 behind it
        assert len({id(s.encoded) for s in got[1:]}) == 1
        uniques = await node.store.call("PFCOUNT", node.keys.uniques(sid))
        assert int(uniques) == 37
    finally:
        await node.store.close()
