"""Several real server processes on one Valkey: same show everywhere, presence, recovery,
store outages and graceful drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from server.auth import issue_token
from server.valkey.embedded import EmbeddedValkey
from tests.helpers import SECRET, WsClient, unique_prefix
from tests.procs import NodeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def tok(sub: str, role: str = "viewer", name: str | None = None) -> str:
    return issue_token(SECRET, sub, role, 3600, name)


class Cluster:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.valkey = EmbeddedValkey(data_dir)
        self.valkey.start()
        self.prefix = unique_prefix()
        self.nodes: list[NodeProcess] = []

    def node(self, **env: object) -> NodeProcess:
        n = NodeProcess(self.valkey.url, self.prefix, f"node{len(self.nodes)}", **env).start()
        self.nodes.append(n)
        return n

    def restart_valkey(self, down_s: float, during: Callable[[], object] | None = None) -> None:
        self.valkey.stop()
        if during is not None:
            during()
        time.sleep(down_s)
        self.valkey = EmbeddedValkey(self.data_dir)
        self.valkey.start()

    def close(self) -> None:
        for n in self.nodes:
            n.stop()
        self.valkey.stop()

    def http(self, node: NodeProcess, method: str, path: str, token: str | None = None,
             json: object = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, node.base + path, json=json, headers=headers, timeout=10)

    def setup_show(self, node: NodeProcess, products: dict[str, int]) -> str:
        seller = tok("seller1", "seller")
        for pid, stock in products.items():
            r = self.http(node, "POST", "/api/products", seller, {
                "id": pid, "title": pid, "price": 1000, "stock": stock, "commission_bps": 1000})
            assert r.status_code == 201, r.text
        creator = tok("creator1", "creator")
        r = self.http(node, "POST", "/api/sessions", creator,
                      {"kind": "live", "title": "multi", "showcase": list(products)})
        sid = str(r.json()["id"])
        assert self.http(node, "POST", f"/api/sessions/{sid}/start", creator).status_code == 200
        return sid


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "valkey")
    yield c
    c.close()


async def test_same_events_same_order_on_every_node(cluster: Cluster) -> None:
    a, b, c = cluster.node(), cluster.node(), cluster.node()
    sid = cluster.setup_show(a, {"p1": 100, "p2": 100})
    creator = await WsClient.connect(a.ws_url, token=tok("creator1", "creator"))
    await creator.ok("join", session=sid)
    viewers = [await WsClient.connect(n.ws_url, use_msgpack=bool(i % 2))
               for i, n in enumerate([a, b, c] * 4)]
    for v in viewers:
        await v.ok("join", session=sid)
    for i in range(12):
        await creator.ok("pin", product="p1" if i % 2 else "p2")
    await creator.ok("unpin")
    for v in viewers:
        await v.wait_event(lambda e: e["t"] == "unpinned", timeout=10)
    reference = [(e["seq"], e["t"]) for e in viewers[0].events if "seq" in e]
    assert len(reference) == 13
    assert [s for s, _ in reference] == list(range(reference[0][0], reference[0][0] + 13))
    for v in viewers[1:]:
        assert [(e["seq"], e["t"]) for e in v.events if "seq" in e] == reference

    # a purchase on node A is social proof on node B
    buyer = await WsClient.connect(a.ws_url, token=tok("ann", name="Ann"))
    await buyer.ok("join", session=sid)
    await buyer.ok("buy_now", product="p1", qty=2, idempotency_key="k1")
    on_b = viewers[1]
    ev = await on_b.wait_event("purchase", timeout=10)
    assert ev["d"]["product"] == "p1" and ev["d"]["qty"] == 2 and ev["d"]["names"] == ["Ann"]
    # the cart follows the buyer to another node
    other = await WsClient.connect(c.ws_url, token=tok("ann"))
    await other.ok("cart_get")
    await buyer.ok("cart_add", product="p2", qty=1)
    cart = await other.wait_event("cart", timeout=10)
    assert cart["d"]["lines"][0]["product"] == "p2"
    for v in [creator, buyer, other, *viewers]:
        await v.close()


async def test_presence_sums_nodes_and_forgets_a_killed_one(cluster: Cluster) -> None:
    a, b, c = cluster.node(), cluster.node(), cluster.node()
    sid = cluster.setup_show(a, {"p1": 10})
    clients = [await WsClient.connect(n.ws_url) for n in [a, a, b, b, b, c, c, c, c]]
    for cl in clients:
        await cl.ok("join", session=sid)
    watcher = clients[0]
    await watcher.wait_event(lambda e: e["t"] == "counters" and e["d"]["viewers"] == 9, 10)
    # node C dies hard: its 4 viewers are gone from the count within the presence TTL
    c.kill()
    t0 = time.monotonic()
    await watcher.wait_event(lambda e: e["t"] == "counters" and e["d"]["viewers"] == 5, 10)
    assert time.monotonic() - t0 < 10
    report = cluster.http(a, "GET", f"/api/sessions/{sid}/report", tok("creator1", "creator"))
    assert report.json()["viewers"]["peak"] == 9
    for cl in clients[:5]:
        await cl.close()


async def test_viewer_moved_from_a_killed_node_recovers_missed_events(cluster: Cluster) -> None:
    a, b = cluster.node(), cluster.node()
    sid = cluster.setup_show(a, {"p1": 10, "p2": 10})
    creator = await WsClient.connect(a.ws_url, token=tok("creator1", "creator"))
    await creator.ok("join", session=sid)
    v = await WsClient.connect(b.ws_url)
    snap = await v.ok("join", session=sid)
    await creator.ok("pin", product="p1")
    seen = await v.wait_event("pinned")
    b.kill()
    missed = [(await creator.ok("pin", product=p))["seq"] for p in ("p2", "p1", "p2")]
    v2 = await WsClient.connect(a.ws_url)
    snap2 = await v2.ok("join", session=sid, since=seen["seq"], epoch=snap["epoch"])
    assert snap2["recovered"] is True
    await v2.wait_event(lambda e: e.get("seq") == missed[-1])
    assert [e["seq"] for e in v2.events if "seq" in e][:3] == missed
    await creator.close()
    await v2.close()


async def test_store_outage_unavailable_then_recovers_without_double_orders(
        cluster: Cluster) -> None:
    a, b = cluster.node(), cluster.node()
    sid = cluster.setup_show(a, {"p1": 50})
    creator = await WsClient.connect(a.ws_url, token=tok("creator1", "creator"))
    await creator.ok("join", session=sid)
    viewer = await WsClient.connect(b.ws_url)
    await viewer.ok("join", session=sid)
    buyer = await WsClient.connect(b.ws_url, token=tok("bob"))
    await buyer.ok("join", session=sid)
    first = await buyer.ok("buy_now", product="p1", qty=1, idempotency_key="before")

    outcomes: dict[str, object] = {}

    def during() -> None:
        ready = httpx.get(a.base + "/readyz", timeout=5)
        outcomes["readyz"] = ready.status_code

    loop_result: dict[str, object] = {}

    async def while_down() -> None:
        t0 = time.monotonic()
        r = await buyer.request("buy_now", product="p1", qty=1, idempotency_key="during")
        loop_result["err"] = r["error"]["code"] if not r["ok"] else "ok"
        loop_result["took"] = time.monotonic() - t0
        loop_result["pin"] = (await creator.request("pin", product="p1"))["ok"]
        loop_result["ping"] = (await viewer.request("ping"))["ok"]

    cluster.valkey.stop()
    await while_down()
    during()
    await asyncio.sleep(0.5)
    cluster.valkey = EmbeddedValkey(cluster.data_dir)
    cluster.valkey.start()
    assert outcomes["readyz"] == 503
    assert loop_result["err"] == "unavailable" and float(str(loop_result["took"])) < 3
    assert loop_result["pin"] is False and loop_result["ping"] is True

    # back: the nodes reconnect and resubscribe; the show goes on
    deadline = time.monotonic() + 15
    while httpx.get(b.base + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    again = await buyer.ok("buy_now", product="p1", qty=1, idempotency_key="before")
    assert again["id"] == first["id"]  # the retry after the outage counts once
    retried = await buyer.ok("buy_now", product="p1", qty=1, idempotency_key="during")
    assert retried["id"] != first["id"]
    deadline = time.monotonic() + 15
    while True:
        r = await creator.request("pin", product="p1")
        if r["ok"]:
            break
        assert time.monotonic() < deadline, r
        await asyncio.sleep(0.3)
    await viewer.wait_event(lambda e: e["t"] == "pinned" and e["seq"] == r["result"]["seq"], 15)
    stock = httpx.get(a.base + "/api/products/p1", timeout=5).json()["stock"]
    assert stock == 48
    for cl in (creator, viewer, buyer):
        await cl.close()


async def test_sigterm_drains_viewers_with_1001(cluster: Cluster) -> None:
    a = cluster.node(LIVECART_DRAIN_TIMEOUT_S=5)
    sid = cluster.setup_show(a, {"p1": 5})
    viewers = [await WsClient.connect(a.ws_url) for _ in range(20)]
    for v in viewers:
        await v.ok("join", session=sid)
    t0 = time.monotonic()
    a.proc.send_signal(15)  # type: ignore[union-attr]
    codes = []
    for v in viewers:
        try:
            await v.drain(5)
            await asyncio.wait_for(v.ws.recv(), 5)
        except Exception:
            pass
        codes.append(v.ws.close_code)
    assert codes == [1001] * 20
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown: -15 is a clean exit
    assert a.proc.wait(10) in (0, -15)  # type: ignore[union-attr]
    assert time.monotonic() - t0 < 5 + 2
    # a restarted node serves again
    b = cluster.node()
    v = await WsClient.connect(b.ws_url)
    assert (await v.ok("join", session=sid))["status"] == "live"
    await v.close()
