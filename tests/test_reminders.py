"""Scheduled shows and "notify me": `remind`, the private `live` event reaching the
reminded user's connection on another node, and the durable notifications stream."""

from __future__ import annotations

import time

import pytest
import redis

from tests.chat_support import TwoNodes, tok, two_nodes
from tests.helpers import ServerThread, WsClient

pytestmark = pytest.mark.anyio
__all__ = ["two_nodes"]


def scheduled(server: ServerThread, at: int) -> str:
    server.product("mug")
    r = server.http("POST", "/api/sessions", token=tok("creator1", "creator"), json={
        "kind": "live", "title": "Friday drop", "showcase": ["mug"], "scheduled_at": at})
    assert r.status_code == 201, r.text
    assert r.json()["scheduled_at"] == at
    return str(r.json()["id"])


async def test_remind_and_undo(server: ServerThread) -> None:
    at = int(time.time() * 1000) + 3_600_000
    sid = scheduled(server, at)
    assert server.http("GET", f"/api/sessions/{sid}").json()["scheduled_at"] == at
    listed = server.http("GET", "/api/sessions").json()["sessions"]
    assert [s["scheduled_at"] for s in listed if s["id"] == sid] == [at]
    ana = await WsClient.connect(server.ws_url, token=tok("ana"))
    assert await ana.ok("remind", session=sid) == {"session": sid, "reminded": True}
    assert await ana.ok("remind", session=sid, on=False) == {"session": sid, "reminded": False}
    assert (await ana.err("remind", session=sid, on="yes"))["field"] == "on"
    assert (await ana.err("remind", session="nope"))["code"] == "not_found"
    anon = await WsClient.connect(server.ws_url)
    assert (await anon.err("remind", session=sid))["code"] == "unauthorized"
    r = server.http("PUT", f"/api/sessions/{sid}/reminder", token=tok("bo"))
    assert r.status_code == 200 and r.json()["reminded"] is True
    r = server.http("DELETE", f"/api/sessions/{sid}/reminder", token=tok("bo"))
    assert r.json()["reminded"] is False
    assert server.http("PUT", f"/api/sessions/{sid}/reminder").status_code == 401
    r = server.http("POST", "/api/sessions", token=tok("creator1", "creator"), json={
        "kind": "live", "title": "x", "showcase": [], "scheduled_at": "tomorrow"})
    assert r.status_code == 400
    assert (await ana.ok("remind", session=sid))["reminded"] is True
    assert server.http("POST", f"/api/sessions/{sid}/start",
                       token=tok("creator1", "creator")).status_code == 200
    live = await ana.wait_event("live")
    assert live["d"] == {"session": sid, "title": "Friday drop"} and "seq" not in live
    assert (await ana.err("remind", session=sid))["code"] == "conflict"
    await ana.close()
    await anon.close()


async def test_going_live_tells_reminded_users_on_any_node(two_nodes: TwoNodes) -> None:
    at = int(time.time() * 1000) + 60_000
    sid = two_nodes.show(start=False, scheduled_at=at)
    a, b = (n.ws_url for n in two_nodes.nodes)
    reminded_on_b = await WsClient.connect(b, token=tok("ana"))
    second_device = await WsClient.connect(a, token=tok("ana"))
    other = await WsClient.connect(b, token=tok("bo"))
    await reminded_on_b.ok("remind", session=sid)
    assert two_nodes.http(1, "PUT", f"/api/sessions/{sid}/reminder", tok("cy")).status_code == 200
    started = two_nodes.http(0, "POST", f"/api/sessions/{sid}/start", tok("creator1", "creator"))
    assert started.status_code == 200
    for client in (reminded_on_b, second_device):
        live = await client.wait_event("live")
        assert live["d"] == {"session": sid, "title": "Chat show"}
    await other.drain(0.3)
    assert [e for e in other.events if e["t"] == "live"] == []

    store = redis.Redis.from_url(two_nodes.valkey.url)
    stream = f"{two_nodes.nodes[0].env['LIVECART_KEY_PREFIX']}:notifications"
    store.xgroup_create(stream, "push", id="0", mkstream=True)
    got = store.xreadgroup("push", "worker-1", {stream: ">"}, count=10)
    entries = [fields for _, rows in got for _, fields in rows]
    assert sorted(e[b"user"].decode() for e in entries) == ["ana", "cy"]
    for e in entries:
        assert e[b"type"] == b"live" and e[b"session"].decode() == sid
        assert e[b"title"] == b"Chat show" and int(e[b"at"]) > 0
    ids = [entry_id for _, rows in got for entry_id, _ in rows]
    assert store.xack(stream, "push", *ids) == 2
    store.close()
    for c in (reminded_on_b, second_device, other):
        await c.close()
