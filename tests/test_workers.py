"""`livecart serve --workers N`: real processes, one port, one store, nodes of their own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.helpers import SECRET, WsClient, close_code, unique_prefix
from tests.procs import NodeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def workers2(valkey_url: str) -> Iterator[NodeProcess]:
    node = NodeProcess(valkey_url, unique_prefix(), "wk", LIVECART_LOG_LEVEL="info")
    node.start("--workers", "2", timeout=40)
    yield node
    node.stop()


def token(sub: str, role: str) -> str:
    from server.auth import issue_token

    return issue_token(SECRET, sub, role, 3600)


def node_ids(base: str, tries: int = 40) -> set[str]:
    seen = set()
    for _ in range(tries):  # a new TCP connection each time: the kernel picks a worker
        seen.add(httpx.get(base + "/healthz", timeout=5).json()["node"])
    return seen


async def test_two_workers_share_one_port_and_one_store(workers2: NodeProcess) -> None:
    assert node_ids(workers2.base) == {"wk-w0", "wk-w1"}
    creator = token("wc", "creator")
    seller = token("ws", "seller")
    r = httpx.post(workers2.base + "/api/products", headers={"Authorization": f"Bearer {seller}"},
                   json={"id": "p1", "title": "t", "price": 100, "stock": 5,
                         "commission_bps": 0}, timeout=5)
    assert r.status_code == 201, r.text
    r = httpx.post(workers2.base + "/api/sessions", headers={"Authorization": f"Bearer {creator}"},
                   json={"kind": "live", "title": "t", "showcase": ["p1"]}, timeout=5)
    sid = r.json()["id"]
    r = httpx.post(workers2.base + f"/api/sessions/{sid}/start",
                   headers={"Authorization": f"Bearer {creator}"}, timeout=5)
    assert r.status_code == 200, r.text
    # viewers land on both workers; presence sums both; a pin reaches all of them
    viewers = [await WsClient.connect(workers2.ws_url) for _ in range(16)]
    for v in viewers:
        await v.ok("join", session=sid)
    pinner = await WsClient.connect(workers2.ws_url, token=creator)
    snap = await pinner.ok("join", session=sid)
    await pinner.ok("pin", product="p1")
    for v in viewers:
        await v.wait_event("pinned")
    await viewers[0].wait_event(lambda e: e["t"] == "counters" and e["d"]["viewers"] == 16,
                                timeout=10)
    # recovery works against whichever worker the reconnect lands on
    again = await WsClient.connect(workers2.ws_url)
    r2 = await again.ok("join", session=sid, since=snap["seq"], epoch=snap["epoch"])
    assert r2["recovered"] is True
    await again.wait_event("pinned")
    await asyncio.gather(again.close(), pinner.close(), *(v.close() for v in viewers))


async def test_sigterm_drains_every_worker(workers2: NodeProcess) -> None:
    viewers = [await WsClient.connect(workers2.ws_url) for _ in range(10)]
    for v in viewers:
        await v.ok("ping")
    started = time.monotonic()
    code = await asyncio.to_thread(workers2.terminate, 20)
    codes = await asyncio.gather(*(close_code(v) for v in viewers))
    assert codes == [1001] * 10
    assert code == 0
    assert time.monotonic() - started < 15
