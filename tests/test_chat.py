"""Chat through the real protocol: delivery, its own sequence (`cseq`), history on join,
recovery with `chat_since`, pins-only viewers, the per-user rate, and random text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from server.edge.client import Client
from server.edge.codecs import JSON
from server.fanout.hub import Hub
from tests.chat_support import TwoNodes, chats, joined, show, two_nodes
from tests.helpers import FakeSink, ServerThread, WsClient

pytestmark = pytest.mark.anyio
__all__ = ["two_nodes"]  # the fixture, imported for the tests below
FAST = {"chat_rate_per_s": 1000.0, "chat_rate_burst": 1000, "rate_per_s": 1000.0,
        "rate_burst": 1000}


async def test_chat_reaches_everyone_in_the_session(server: ServerThread) -> None:
    sid = show(server)
    ana, snap = await joined(server.ws_url, sid, "ana")
    anon, _ = await joined(server.ws_url, sid)
    packed = await WsClient.connect(server.ws_url, use_msgpack=True)
    await packed.ok("join", session=sid)
    assert snap["chat"] == [] and snap["cseq"] == 0
    result = await ana.ok("chat", text="  hello room  ")
    assert result == {"id": 1, "cseq": 1}
    for client in (ana, anon, packed):
        event = await client.wait_event("chat")
        assert event["cseq"] == 1 and "seq" not in event
        assert event["d"] == {"user": "ana", "name": "Ana", "text": "hello room", "id": 1}
    err = await anon.err("chat", text="hi")
    assert err["code"] == "unauthorized"
    lonely = await WsClient.connect(server.ws_url, token=server.token("bo"))
    assert (await lonely.err("chat", text="hi"))["code"] == "bad_request"  # not joined
    metrics = server.http("GET", "/metrics").text
    assert "livecart_chat_messages_total 1.0" in metrics
    assert "livecart_chat_events_received_total 1.0" in metrics
    late = await WsClient.connect(server.ws_url, use_msgpack=True)
    assert [m["d"]["text"] for m in (await late.ok("join", session=sid))["chat"]] == [
        "hello room"]
    for c in (ana, anon, lonely, packed, late):
        await c.close()


@pytest.mark.parametrize("text, ok", [
    ("x" * 300, True), ("  " + "y" * 300 + "\u3000", True), ("héllo 👋🏽 日本", True),
    ("", False), ("   ", False), ("z" * 301, False), ("line\nbreak", False),
    ("nul\x00", False), ("tab\tbed", False), ("c1\x85c", False), ("bell\x07", False),
])
async def test_text_rules(make_server: Callable[..., ServerThread], text: str, ok: bool) -> None:
    server = make_server(**FAST)
    sid = show(server)
    ana, _ = await joined(server.ws_url, sid, "ana")
    reply = await ana.request("chat", text=text)
    if ok:
        assert reply["ok"], reply
        assert (await ana.wait_event("chat"))["d"]["text"] == text.strip()
    else:
        assert reply["error"]["code"] == "bad_request" and reply["error"]["field"] == "text"
    assert (await ana.err("chat", text=5))["field"] == "text"
    await ana.close()


async def test_chat_has_its_own_sequence_and_pins_stay_gap_free(server: ServerThread) -> None:
    sid = show(server)
    creator, _ = await joined(server.ws_url, sid, "creator1", "creator")
    viewer, snap = await joined(server.ws_url, sid, "ana")
    await viewer.ok("chat", text="one")
    await creator.ok("pin", product="mug")
    await viewer.ok("chat", text="two")
    await creator.ok("unpin")
    await viewer.wait_event("unpinned")
    await viewer.wait_event(lambda e: e.get("cseq") == 2)
    seqs = [e["seq"] for e in viewer.events if "seq" in e]
    assert seqs == [snap["seq"] + 1, snap["seq"] + 2]
    assert [e["cseq"] for e in chats(viewer)] == [1, 2]
    await creator.close()
    await viewer.close()


async def test_joiners_get_the_last_50_messages(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST)
    sid = show(server)
    ana, _ = await joined(server.ws_url, sid, "ana")
    for i in range(55):
        await ana.ok("chat", text=f"m{i}")
    late, snap = await joined(server.ws_url, sid, "bo")
    assert snap["cseq"] == 55
    assert [m["d"]["text"] for m in snap["chat"]] == [f"m{i}" for i in range(5, 55)]
    assert [m["cseq"] for m in snap["chat"]] == list(range(6, 56))
    pins_only, quiet = await joined(server.ws_url, sid, "cy", chat=False)
    assert "chat" not in quiet
    await ana.ok("chat", text="after")
    assert (await late.wait_event("chat"))["cseq"] == 56
    for c in (ana, late, pins_only):
        await c.close()


async def test_reconnect_with_chat_since_neither_loses_nor_repeats(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST)
    sid = show(server)
    ana, _ = await joined(server.ws_url, sid, "ana")
    bo, snap = await joined(server.ws_url, sid, "bo")
    for i in range(3):
        await ana.ok("chat", text=f"before{i}")
    await bo.wait_event(lambda e: e.get("cseq") == 3)
    await bo.close()
    for i in range(4):
        await ana.ok("chat", text=f"while{i}")
    back = await WsClient.connect(server.ws_url, token=server.token("bo"))
    again = await back.ok("join", session=sid, since=snap["seq"], epoch=snap["epoch"],
                          chat_since=3)
    assert again["chat_recovered"] is True and "chat" not in again
    await ana.ok("chat", text="live")
    await back.wait_event(lambda e: e.get("cseq") == 8)
    assert [e["cseq"] for e in chats(back)] == [4, 5, 6, 7, 8]
    assert [e["d"]["text"] for e in chats(back)][:4] == [f"while{i}" for i in range(4)]
    stale = await WsClient.connect(server.ws_url, token=server.token("bo"))
    old = await stale.ok("join", session=sid, chat_since=3, epoch="not-the-epoch")
    assert old["chat_recovered"] is False and len(old["chat"]) == 8
    for c in (ana, back, stale):
        await c.close()


async def test_pins_only_viewers_get_no_chat(server: ServerThread) -> None:
    sid = show(server)
    creator, _ = await joined(server.ws_url, sid, "creator1", "creator")
    quiet, snap = await joined(server.ws_url, sid, "ana", chat=False)
    quiet_mp = await WsClient.connect(server.ws_url, use_msgpack=True)
    await quiet_mp.ok("join", session=sid, chat=False)
    loud, _ = await joined(server.ws_url, sid, "bo")
    assert "chat" not in snap
    await loud.ok("chat", text="anyone?")
    await creator.ok("pin", product="mug")
    await loud.wait_event("pinned")
    await loud.ok("chat", text="nice mug")
    await loud.wait_event(lambda e: e.get("cseq") == 2)
    for client in (quiet, quiet_mp):
        await client.wait_event("pinned")
        await client.drain(0.3)
        assert chats(client) == []
    assert (await quiet.err("join", session=sid, chat="no"))["field"] == "chat"
    for c in (creator, quiet, quiet_mp, loud):
        await c.close()


async def test_per_user_rate_across_connections(server: ServerThread) -> None:
    sid = show(server)  # defaults: 1 message/s, burst 3
    phone, _ = await joined(server.ws_url, sid, "ana")
    laptop, _ = await joined(server.ws_url, sid, "ana")
    await phone.ok("chat", text="1")
    await laptop.ok("chat", text="2")
    await phone.ok("chat", text="3")
    err = await laptop.err("chat", text="4")
    assert err["code"] == "rate_limited" and 0 < err["retry_after_ms"] <= 1000
    await asyncio.sleep(err["retry_after_ms"] / 1000 + 0.05)
    await laptop.ok("chat", text="4")
    await phone.close()
    await laptop.close()


async def test_one_order_on_two_nodes(two_nodes: TwoNodes) -> None:
    sid = two_nodes.show()
    a, _ = await joined(two_nodes.nodes[0].ws_url, sid, "ana")
    b, _ = await joined(two_nodes.nodes[1].ws_url, sid, "bo")
    watch_a, _ = await joined(two_nodes.nodes[0].ws_url, sid)
    watch_b, _ = await joined(two_nodes.nodes[1].ws_url, sid)

    async def talk(client: WsClient, who: str) -> None:
        for i in range(15):
            await client.ok("chat", text=f"{who}{i}")

    await asyncio.gather(talk(a, "a"), talk(b, "b"))
    for w in (watch_a, watch_b):
        await w.wait_event(lambda e: e.get("cseq") == 30, timeout=10)
    seen_a = [(e["cseq"], e["d"]["text"]) for e in chats(watch_a)]
    seen_b = [(e["cseq"], e["d"]["text"]) for e in chats(watch_b)]
    assert seen_a == seen_b and [c for c, _ in seen_a] == list(range(1, 31))
    assert [t for _, t in seen_a if t.startswith("a")] == [f"a{i}" for i in range(15)]
    for c in (a, b, watch_a, watch_b):
        await c.close()


_TEXT = st.one_of(
    st.text(max_size=400),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=320),
    st.text(alphabet=st.characters(categories=["Cc", "Zs", "Ll"]), max_size=50),
    st.just("w" * 10240), st.just("ok " * 100),
)


@hsettings(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_TEXT, min_size=1, max_size=4))
def test_random_text_gets_delivery_or_a_precise_error(make_server: Callable[..., ServerThread],
                                                      texts: list[str]) -> None:
    server = getattr(make_server, "_chat_server", None)
    if server is None:
        server = make_server(**FAST)
        server.sid = show(server)  # type: ignore[attr-defined]
        make_server._chat_server = server  # type: ignore[attr-defined]

    async def run() -> None:
        speaker, _ = await joined(server.ws_url, server.sid, "ana")
        listener, _ = await joined(server.ws_url, server.sid)
        for text in texts:
            reply = await speaker.request("chat", text=text)
            if reply["ok"]:
                cseq = reply["result"]["cseq"]
                event = await listener.wait_event(lambda e, c=cseq: e.get("cseq") == c)
                assert event["d"]["text"] == text.strip()
                assert 1 <= len(text.strip()) <= 300
            else:
                assert reply["error"]["code"] == "bad_request", reply
                assert reply["error"]["field"] == "text"
        assert (await listener.ok("ping"))["pong"] > 0  # the room still answers
        await speaker.close()
        await listener.close()

    asyncio.run(run())


async def test_chat_recovery_is_bounded_by_the_chat_history(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST, chat_history_max=5)
    sid = show(server)
    ana, snap = await joined(server.ws_url, sid, "ana")
    for i in range(10):
        await ana.ok("chat", text=f"m{i}")
    late, fresh = await joined(server.ws_url, sid, "bo")
    assert [m["cseq"] for m in fresh["chat"]] == [6, 7, 8, 9, 10]
    gone, old = await joined(server.ws_url, sid, "cy", chat_since=4, epoch=snap["epoch"])
    assert old["chat_recovered"] is False and len(old["chat"]) == 5
    back, again = await joined(server.ws_url, sid, "cy", chat_since=5, epoch=snap["epoch"])
    assert again["chat_recovered"] is True
    await back.wait_event(lambda e: e.get("cseq") == 10)
    assert [e["cseq"] for e in chats(back)] == [6, 7, 8, 9, 10]
    for c in (ana, late, gone, back):
        await c.close()


def _payloads(frames: list[bytes]) -> list[Any]:
    """The events in server WebSocket frames (unmasked; one event or an array each)."""
    out: list[Any] = []
    for data in frames:
        n, at = data[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(data[2:10], "big"), 10
        doc = orjson.loads(data[at:at + n])
        out.extend(doc if isinstance(doc, list) else [doc])
    return out


async def test_the_hub_repairs_a_chat_gap_and_keeps_the_audiences_apart() -> None:
    def ev(cseq: int) -> bytes:
        return orjson.dumps({"t": "chat", "cseq": cseq, "ts": 1, "d": {"id": cseq}})

    asked: list[int] = []

    async def chat_history(sid: str, since: int) -> list[tuple[int, bytes]] | None:
        asked.append(since)
        return [(2, ev(2)), (3, ev(3))]

    async def no_history(sid: str, since: int) -> list[tuple[int, bytes]] | None:
        return []

    hub = Hub(fetch_history=no_history, fetch_chat=chat_history)
    loud, quiet = Client(FakeSink(), JSON), Client(FakeSink(), JSON)
    for client, chat in ((loud, True), (quiet, False)):
        hub.add_joining(client, "s1", chat=chat)
        hub.activate(client, 0, [], 0)
    hub.on_event("s1", ev(1))
    hub.on_event("s1", ev(3))  # 2 is missing: repaired from the chat stream
    hub.on_event("s1", orjson.dumps({"t": "pinned", "seq": 1, "ts": 1, "d": {}}))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(_payloads(loud.sink.written)) == 4:
            break
    got = _payloads(loud.sink.written)  # each lane in order (no order across the lanes)
    assert [e["cseq"] for e in got if e["t"] == "chat"] == [1, 2, 3]
    assert [e["seq"] for e in got if e["t"] == "pinned"] == [1]
    assert asked == [1]
    assert [e["t"] for e in _payloads(quiet.sink.written)] == ["pinned"]
