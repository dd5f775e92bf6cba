"""Valkey killed with -9 and restarted from its AOF under real server processes, and a node
that lost its pub/sub connection while the chat went on: who keeps their connection.

A process crash loses nothing that Valkey had written to its AOF; a machine crash (or a
postponed `appendfsync everysec` write) loses the last writes. `restart(lose=...)` gives
the second: the AOF is put back as it was at an earlier point, so the restarted store is
behind what the nodes already passed on, numbering events again from there. The rule
(docs/protocol.md, Recovery): a device that joins on the restarted store keeps its
connection and gets what follows; a viewer that saw events the store no longer has is told
once (room: 4008 and it rejoins; chat: a `chat_gap` event and it stays). Chat never closes
anyone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis

from server.valkey.embedded import EmbeddedValkey
from tests.chat_support import tok
from tests.helpers import WsClient, close_code, unique_prefix
from tests.procs import NodeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
FAST_CHAT = {"LIVECART_CHAT_RATE_PER_S": 100, "LIVECART_CHAT_RATE_BURST": 100}


class Deployment:
    """Nodes on one Valkey with an AOF, in a short data dir (its socket path stays put)."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="lc-restart-"))
        self.valkey = EmbeddedValkey(self.data_dir)
        self.valkey.start()
        self.prefix = unique_prefix()
        self.nodes: list[NodeProcess] = []
        self.stopped: list[NodeProcess] = []

    def node(self, **env: Any) -> NodeProcess:
        n = NodeProcess(self.valkey.url, self.prefix, f"r{len(self.nodes)}",
                        **{**FAST_CHAT, **env}).start()
        self.nodes.append(n)
        return n

    def save_aof(self) -> Path:
        """A copy of the AOF as it is now (Valkey writes it before it answers)."""
        time.sleep(0.3)
        saved = self.data_dir.with_name(self.data_dir.name + "-aof")
        shutil.copytree(self.data_dir / "appendonlydir", saved)
        return saved

    def restart(self, lose: Path | None = None) -> None:
        """kill -9 the store, then start it again on the same socket from its AOF (`lose`:
        the AOF as saved earlier, without what was written since)."""
        assert self.valkey.process is not None
        os.kill(self.valkey.process.pid, signal.SIGKILL)
        self.valkey.process.wait()
        self.valkey.stop()  # lets go of the data dir
        if lose is not None:
            shutil.rmtree(self.data_dir / "appendonlydir")
            shutil.copytree(lose, self.data_dir / "appendonlydir")
        self.valkey = EmbeddedValkey(self.data_dir)
        self.valkey.start()
        for n in self.nodes:
            deadline = time.monotonic() + 15
            while httpx.get(n.base + "/readyz", timeout=5).status_code != 200:
                assert time.monotonic() < deadline, "node not ready after the restart"
                time.sleep(0.1)

    def show(self, node: NodeProcess) -> str:
        seller, creator = tok("seller1", "seller"), tok("creator1", "creator")
        for pid in ("p1", "p2", "p3"):
            r = httpx.post(node.base + "/api/products", timeout=10,
                           headers={"Authorization": f"Bearer {seller}"},
                           json={"id": pid, "title": pid, "price": 1000, "stock": 50,
                                 "commission_bps": 1000})
            assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {creator}"}
        r = httpx.post(node.base + "/api/sessions", headers=auth, timeout=10,
                       json={"kind": "live", "title": "restart", "showcase": ["p1", "p2", "p3"]})
        sid = str(r.json()["id"])
        assert httpx.post(f"{node.base}/api/sessions/{sid}/start", headers=auth,
                          timeout=10).status_code == 200
        return sid

    def freeze(self, node: NodeProcess) -> None:
        """The node stops (SIGSTOP) and the store drops its pub/sub connection, as a
        network fault or an overflowing subscriber would: what is published meanwhile
        never reaches it."""
        os.kill(node.pid, signal.SIGSTOP)
        self.stopped.append(node)
        store = redis.Redis(unix_socket_path=str(self.valkey.socket_path))
        store.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        store.close()

    def thaw(self, node: NodeProcess) -> None:
        os.kill(node.pid, signal.SIGCONT)
        self.stopped.remove(node)

    def close(self) -> None:
        for n in self.stopped:
            os.kill(n.pid, signal.SIGCONT)
        for n in self.nodes:
            n.stop()
        self.valkey.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.data_dir.with_name(self.data_dir.name + "-aof"), ignore_errors=True)


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    d = Deployment()
    yield d
    d.close()


async def once_ready(client: WsClient, op: str, **args: Any) -> Any:
    """`op` as soon as the store answers it again after the restart."""
    deadline = time.monotonic() + 15
    while True:
        r = await client.request(op, **args)
        if r["ok"]:
            return r["result"]
        assert time.monotonic() < deadline, r
        await asyncio.sleep(0.2)


async def still_open(*clients: WsClient) -> None:
    for client in clients:
        assert (await client.request("ping"))["ok"]


async def test_a_plain_restart_keeps_everyone(deployment: Deployment) -> None:
    node = deployment.node()
    sid = deployment.show(node)
    creator = await WsClient.connect(node.ws_url, token=tok("creator1", "creator"))
    await creator.ok("join", session=sid)
    old = await WsClient.connect(node.ws_url)
    await old.ok("join", session=sid)
    await creator.ok("pin", product="p1")
    await creator.ok("chat", text="before")
    await old.wait_event("chat")
    deployment.restart()
    device = await WsClient.connect(node.ws_url)
    snap = await device.ok("join", session=sid)
    pin = await once_ready(creator, "pin", product="p2")
    said = await once_ready(creator, "chat", text="after")
    assert pin["seq"] == snap["seq"] + 1 and said["cseq"] == snap["cseq"] + 1
    for client in (old, device):
        await client.wait_event(lambda e: e.get("seq") == pin["seq"])
        await client.wait_event(lambda e: e.get("cseq") == said["cseq"])
        assert not [e for e in client.events if e["t"] == "chat_gap"]
    await still_open(old, device, creator)


async def test_a_device_joining_after_a_restart_that_lost_writes_gets_the_next_pin(
        deployment: Deployment) -> None:
    node = deployment.node()
    sid = deployment.show(node)
    creator = await WsClient.connect(node.ws_url, token=tok("creator1", "creator"))
    old = await WsClient.connect(node.ws_url)
    old_snap = await old.ok("join", session=sid)
    kept = await creator.ok("pin", product="p1", session=sid)
    await old.wait_event(lambda e: e.get("seq") == kept["seq"])
    saved = deployment.save_aof()
    for product in ("p2", "p3"):
        lost = await creator.ok("pin", product=product, session=sid)
    await old.wait_event(lambda e: e.get("seq") == lost["seq"])  # it saw what will be lost

    deployment.restart(lose=saved)
    device = await WsClient.connect(node.ws_url)
    snap = await device.ok("join", session=sid)
    assert snap["seq"] == kept["seq"] < lost["seq"]  # the store went back
    assert snap["pinned"]["product"]["id"] == "p1"
    pin = await once_ready(creator, "pin", product="p2", session=sid)
    assert pin["seq"] == kept["seq"] + 1
    got = await device.wait_event(lambda e: e["t"] == "pinned")
    assert got["seq"] == pin["seq"] and got["d"]["product"]["id"] == "p2"
    await still_open(device)

    # the old viewer saw pins the store no longer has: told once, it rejoins on the new run
    assert await close_code(old) == 4008
    back = await WsClient.connect(node.ws_url)
    again = await back.ok("join", session=sid, since=lost["seq"], epoch=old_snap["epoch"])
    assert again["recovered"] is False and again["pinned"]["product"]["id"] == "p2"
    after = await creator.ok("pin", product="p3", session=sid)
    for client in (device, back):
        await client.wait_event(lambda e: e.get("seq") == after["seq"])
    await still_open(device, back)
    assert [e["seq"] for e in device.events if "seq" in e] == [pin["seq"], after["seq"]]


async def test_chat_lost_in_a_restart_closes_no_one(deployment: Deployment) -> None:
    node = deployment.node()
    sid = deployment.show(node)
    creator = await WsClient.connect(node.ws_url, token=tok("creator1", "creator", "Cy"))
    await creator.ok("join", session=sid)
    old = await WsClient.connect(node.ws_url, token=tok("ann", name="Ann"))
    await old.ok("join", session=sid)
    kept = await creator.ok("chat", text="kept")
    saved = deployment.save_aof()
    for text in ("lost one", "lost two"):
        lost = await creator.ok("chat", text=text)
    await old.wait_event(lambda e: e.get("cseq") == lost["cseq"])

    deployment.restart(lose=saved)
    device = await WsClient.connect(node.ws_url)
    snap = await device.ok("join", session=sid)
    assert snap["cseq"] == kept["cseq"] and [m["d"]["text"] for m in snap["chat"]] == ["kept"]
    said = await once_ready(creator, "chat", text="after")
    assert said["cseq"] == kept["cseq"] + 1
    got = await device.wait_event(lambda e: e["t"] == "chat")
    assert got["cseq"] == said["cseq"] and got["d"]["text"] == "after"
    # the others saw chat the store no longer has: told where the lane goes on, kept
    for client in (old, creator):
        gap = await client.wait_event("chat_gap")
        assert gap["cseq"] == kept["cseq"] and gap["d"]["after"] == lost["cseq"]
        newer = await client.wait_event(lambda e: e["t"] == "chat" and e["d"]["text"] == "after")
        assert newer["cseq"] == said["cseq"]
        assert client.events.index(gap) < client.events.index(newer)
    assert not [e for e in device.events if e["t"] == "chat_gap"]
    await still_open(old, creator, device)


async def deaf_node_show(deployment: Deployment, **env: Any,
                         ) -> tuple[NodeProcess, str, WsClient, WsClient]:
    """A node that will go deaf, with a viewer (`old`) on it, and another node (its store
    calls made with `env`: how much history the session keeps) with the creator, who has
    not joined (that node misses events too while the store drops its subscriber)."""
    deaf = deployment.node()
    other = deployment.node(**env)
    sid = deployment.show(other)
    creator = await WsClient.connect(other.ws_url, token=tok("creator1", "creator", "Cy"))
    old = await WsClient.connect(deaf.ws_url, token=tok("ann", name="Ann"))
    await old.ok("join", session=sid)
    return deaf, sid, creator, old


async def test_a_chat_gap_a_node_cannot_repair_closes_no_one(deployment: Deployment) -> None:
    deaf, sid, creator, old = await deaf_node_show(deployment, LIVECART_CHAT_HISTORY_MAX=5)
    await creator.ok("join", session=sid)  # to chat
    first = await creator.ok("chat", text="one")
    await old.wait_event(lambda e: e.get("cseq") == first["cseq"])

    deployment.freeze(deaf)
    for i in range(8):  # past what the chat stream keeps (5): the deaf node cannot repair
        last = await creator.ok("chat", text=f"missed {i}")
    deployment.thaw(deaf)
    device = await WsClient.connect(deaf.ws_url, token=tok("bo", name="Bo"))
    snap = await device.ok("join", session=sid)
    assert snap["cseq"] == last["cseq"]
    said = await creator.ok("chat", text="after")
    got = await device.wait_event(lambda e: e["t"] == "chat", timeout=10)
    assert got["cseq"] == said["cseq"]
    gap = await old.wait_event("chat_gap", timeout=10)
    assert gap["d"]["after"] == first["cseq"] and gap["cseq"] >= first["cseq"] + 1
    await old.wait_event(lambda e: e.get("cseq") == said["cseq"])
    assert not [e for e in device.events if e["t"] == "chat_gap"]
    await still_open(old, device, creator)


async def test_a_device_joining_after_a_gap_a_node_cannot_repair_gets_the_next_pin(
        deployment: Deployment) -> None:
    deaf, sid, creator, old = await deaf_node_show(deployment, LIVECART_HISTORY_MAX_EVENTS=2)
    seen = await creator.ok("pin", product="p1", session=sid)
    await old.wait_event(lambda e: e.get("seq") == seen["seq"])

    deployment.freeze(deaf)
    for product in ("p2", "p3", "p1", "p2"):  # past what the history keeps (2)
        missed = await creator.ok("pin", product=product, session=sid)
    deployment.thaw(deaf)
    device = await WsClient.connect(deaf.ws_url)
    snap = await device.ok("join", session=sid)  # on the store's state after the gap
    assert snap["seq"] == missed["seq"] and snap["pinned"]["product"]["id"] == "p2"
    pin = await creator.ok("pin", product="p3", session=sid)
    got = await device.wait_event(lambda e: e["t"] == "pinned", timeout=10)
    assert got["seq"] == pin["seq"]
    await still_open(device, creator)
    # the old viewer lacks pins the store no longer keeps: told once
    assert await close_code(old, 10) == 4008
