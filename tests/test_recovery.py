"""Recovery with `since` + `epoch`, history limits, and slow-consumer eviction (4008)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

import pytest

from tests.helpers import ServerThread, WsClient, close_code

pytestmark = pytest.mark.anyio

CODECS = [pytest.param(False, id="json"), pytest.param(True, id="msgpack")]


async def room(server: ServerThread, *products: str) -> tuple[str, WsClient]:
    for pid in products:
        server.product(pid)
    sid = server.session(list(products))
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    return sid, creator


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_rejoin_with_since_replays_exactly_the_missed_events(
        server: ServerThread, use_msgpack: bool) -> None:
    sid, creator = await room(server, "p1", "p2")
    v = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    snap = await v.ok("join", session=sid)
    await creator.ok("pin", product="p1")
    await v.wait_event("pinned")
    since, epoch = v.seqs()[-1], snap["epoch"]
    await v.close()
    missed = [await creator.ok("pin", product="p2"), await creator.ok("unpin"),
              await creator.ok("pin", product="p1", stream_ts_ms=5)]
    v2 = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    snap2 = await v2.ok("join", session=sid, since=since, epoch=epoch)
    assert v2.events == []  # nothing before the reply
    assert snap2["recovered"] is True
    assert snap2["seq"] == missed[-1]["seq"] and snap2["epoch"] == epoch
    assert snap2["pinned"] == missed[-1]["pinned"]
    await v2.wait_event(lambda e: e.get("seq") == snap2["seq"])
    got = [e for e in v2.events if "seq" in e]
    assert [e["seq"] for e in got] == [since + 1, since + 2, since + 3]
    assert [e["t"] for e in got] == ["pinned", "unpinned", "pinned"]
    assert got[0]["d"] == missed[0]["pinned"] and got[2]["d"] == missed[2]["pinned"]
    assert got[1]["d"]["product"] == "p2"
    # then live events continue gap-free
    live = await creator.ok("unpin")
    await v2.wait_event(lambda e: e.get("seq") == live["seq"])
    assert v2.seqs() == list(range(since + 1, live["seq"] + 1))
    await asyncio.gather(v2.close(), creator.close())


async def test_replay_comes_before_live_events_under_load(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(rate_per_s=1000, rate_burst=1000)
    sid, creator = await room(server, "p1", "p2")
    v = await WsClient.connect(server.ws_url)
    snap = await v.ok("join", session=sid)
    since = snap["seq"]
    await v.close()
    for _ in range(5):
        await creator.ok("pin", product="p1")
    stop = asyncio.Event()

    async def keep_pinning() -> int:
        n = 0
        while not stop.is_set():
            await creator.ok("pin", product="p2" if n % 2 else "p1")
            n += 1
        return n

    pinner = asyncio.create_task(keep_pinning())
    await asyncio.sleep(0.05)
    rejoined = []
    for use_msgpack in (False, True, False, True):
        c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
        r = await c.ok("join", session=sid, since=since, epoch=snap["epoch"])
        assert c.events == [] and r["recovered"] is True
        rejoined.append(c)
        await asyncio.sleep(0.02)
    stop.set()
    await pinner
    last = (await creator.ok("unpin"))["seq"]
    for c in rejoined:
        await c.wait_event(lambda e, last=last: e.get("seq") == last)
        assert c.seqs() == list(range(since + 1, last + 1))
    await asyncio.gather(creator.close(), *(c.close() for c in rejoined))


async def test_rejoin_on_the_same_connection(server: ServerThread) -> None:
    sid, creator = await room(server, "p1")
    v = await WsClient.connect(server.ws_url)
    snap = await v.ok("join", session=sid)
    await v.ok("leave")
    res = await creator.ok("pin", product="p1")
    again = await v.ok("join", session=sid, since=snap["seq"], epoch=snap["epoch"])
    assert again["recovered"] is True
    ev = await v.wait_event("pinned")
    assert ev["seq"] == res["seq"] and v.seqs() == [res["seq"]]
    await asyncio.gather(v.close(), creator.close())


async def test_since_equal_to_seq_recovers_nothing_missing(server: ServerThread) -> None:
    sid, creator = await room(server, "p1")
    v = await WsClient.connect(server.ws_url)
    snap = await v.ok("join", session=sid)
    await v.close()
    v2 = await WsClient.connect(server.ws_url)
    again = await v2.ok("join", session=sid, since=snap["seq"], epoch=snap["epoch"])
    assert again["recovered"] is True
    await v2.drain(0.2)
    assert v2.seqs() == []
    await asyncio.gather(v2.close(), creator.close())


@pytest.mark.parametrize("use_msgpack", CODECS)
async def test_wrong_epoch_or_future_since_is_not_recovered(server: ServerThread,
                                                            use_msgpack: bool) -> None:
    sid, creator = await room(server, "p1")
    v = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
    snap = await v.ok("join", session=sid)
    await creator.ok("pin", product="p1")
    for since, epoch in ((snap["seq"], "deadbeef"), (snap["seq"] + 50, snap["epoch"])):
        c = await WsClient.connect(server.ws_url, use_msgpack=use_msgpack)
        r = await c.ok("join", session=sid, since=since, epoch=epoch)
        assert r["recovered"] is False
        assert r["pinned"]["product"]["id"] == "p1"  # the snapshot is the truth
        await c.drain(0.2)
        assert c.seqs() == []
        await c.close()
    await asyncio.gather(v.close(), creator.close())


async def test_trimmed_history_is_not_recovered(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(history_max_events=5)
    sid, creator = await room(server, "p1")
    v = await WsClient.connect(server.ws_url)
    snap = await v.ok("join", session=sid)
    await v.close()
    for _ in range(4):
        await creator.ok("pin", product="p1")
    # 4 missed events still fit in 5
    c = await WsClient.connect(server.ws_url)
    r = await c.ok("join", session=sid, since=snap["seq"], epoch=snap["epoch"])
    assert r["recovered"] is True
    await c.wait_event(lambda e: e.get("seq") == r["seq"])
    assert c.seqs() == list(range(snap["seq"] + 1, r["seq"] + 1))
    await c.close()
    for _ in range(4):
        await creator.ok("pin", product="p1")
    c = await WsClient.connect(server.ws_url)
    r = await c.ok("join", session=sid, since=snap["seq"], epoch=snap["epoch"])
    assert r["recovered"] is False
    assert r["seq"] == snap["seq"] + 8
    await c.drain(0.2)
    assert c.seqs() == []
    # a recent `since` within the kept history still recovers
    r2 = await c.ok("join", session=sid, since=r["seq"] - 3, epoch=r["epoch"])
    assert r2["recovered"] is True
    await c.wait_event(lambda e: e.get("seq") == r["seq"])
    assert c.seqs() == [r["seq"] - 2, r["seq"] - 1, r["seq"]]
    await asyncio.gather(c.close(), creator.close())


# slow consumer ----------------------------------------------------------------------------


def shrink_server_send_buffer(server: ServerThread, peer: tuple[str, int]) -> None:
    """Pin the server-side kernel send buffer of one connection small (no autotuning).

    On loopback Linux autotunes it to megabytes, so a viewer that stops reading would take
    thousands of events before the node's own per-connection limit is even reached."""
    for client in list(server.node.connections.clients.values()):
        transport = client.sink.transport
        if transport.get_extra_info("peername") == peer:
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                          4096)
            return
    raise AssertionError("no server-side connection for that peer")


async def test_slow_consumer_is_closed_4008_and_recovers(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(send_buffer_bytes=16 * 1024, rate_per_s=10_000, rate_burst=10_000)
    server.product("big", title="B" * 200)
    sid = server.session(["big"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await creator.ok("join", session=sid)
    good = await WsClient.connect(server.ws_url, use_msgpack=True)
    await good.ok("join", session=sid)
    # a viewer with a tiny receive window that stops reading after its join reply
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    slow = await WsClient.connect(server.ws_url, sock=sock, max_queue=1)
    snap = await slow.ok("join", session=sid)
    shrink_server_send_buffer(server, sock.getsockname())
    hub = server.node.hub
    sent = 0
    deadline = time.monotonic() + 20
    while hub.evictions == 0:
        assert time.monotonic() < deadline, "the slow viewer was never evicted"
        await creator.ok("pin", product="big")
        sent += 1
        if sent % 20 == 0:  # keep the good viewer reading
            await good.drain(0.001)
    last = (await creator.ok("unpin"))["seq"]
    # the good viewer got everything, in order
    await good.wait_event(lambda e: e.get("seq") == last, timeout=10)
    assert good.seqs() == list(range(snap["seq"] + 1, last + 1))
    # the slow one gets what was queued, then 4008
    assert await close_code(slow, timeout=5) == 4008
    seen = slow.seqs()
    assert seen == list(range(snap["seq"] + 1, snap["seq"] + 1 + len(seen)))
    assert len(seen) < last - snap["seq"]
    # and recovers with since
    again = await WsClient.connect(server.ws_url)
    since = seen[-1] if seen else snap["seq"]
    r = await again.ok("join", session=sid, since=since, epoch=snap["epoch"])
    assert r["recovered"] is True
    await again.wait_event(lambda e: e.get("seq") == last, timeout=10)
    assert again.seqs() == list(range(since + 1, last + 1))
    metrics = server.http("GET", "/metrics").text
    assert "livecart_slow_consumer_evictions_total 1.0" in metrics
    with contextlib.suppress(Exception):
        await slow.close()
    await asyncio.gather(again.close(), good.close(), creator.close())


async def test_a_lost_history_starts_a_fresh_epoch(server: ServerThread) -> None:
    """The store lost a session's history (evicted, flushed): the next event starts a new
    epoch, so a rejoin with the old one is not recovered from the new history; one with
    the new epoch is."""
    sid, creator = await room(server, "p1")
    v = await WsClient.connect(server.ws_url)
    snap = await v.ok("join", session=sid)
    first = await creator.ok("pin", product="p1")
    await v.wait_event(lambda e: e.get("seq") == first["seq"])
    await v.close()
    assert await server.store("DEL", server.node.keys.history(sid)) == 1
    after = await creator.ok("unpin")
    assert after["seq"] == first["seq"] + 1  # seq goes on: gap-free in the new epoch too
    c = await WsClient.connect(server.ws_url)
    r = await c.ok("join", session=sid, since=snap["seq"], epoch=snap["epoch"])
    assert r["recovered"] is False and r["epoch"] != snap["epoch"]
    assert r["seq"] == after["seq"] and r["pinned"] is None
    await c.drain(0.2)
    assert c.seqs() == []
    await creator.ok("pin", product="p1")
    r2 = await c.ok("join", session=sid, since=after["seq"], epoch=r["epoch"])
    assert r2["recovered"] is True and r2["epoch"] == r["epoch"]
    await c.wait_event(lambda e: e.get("seq") == r2["seq"])
    assert c.seqs() == [after["seq"] + 1]
    await asyncio.gather(c.close(), creator.close())
