"""Private events (cart, order) survive what a bad network does to pub/sub: a lost
subscription, a store that is down, two devices racing (docs/protocol.md, "Events").

Real server processes on their own Valkey: the nodes' subscriber connections are killed
from the Valkey side (`CLIENT KILL TYPE pubsub`), devices connect while the store is down,
and two devices of one user race. In every case each device ends up with the stored cart:
cart events carry a version `v` and the client keeps the highest.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from server.valkey.embedded import EmbeddedValkey
from server.valkey.keys import Keys
from tests.helpers import WsClient
from tests.test_multinode import Cluster, tok

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "valkey")
    yield c
    c.close()


def newest_cart(client: WsClient) -> dict[str, Any] | None:
    carts = [e["d"] for e in client.events if e["t"] == "cart"]
    return max(carts, key=lambda c: c["v"]) if carts else None


def qty_of(cart: dict[str, Any] | None, product: str) -> int:
    for line in (cart or {}).get("lines", []):
        if line["product"] == product:
            return int(line["qty"])
    return 0


async def settle_on(client: WsClient, product: str, qty: int, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while qty_of(newest_cart(client), product) != qty:
        assert time.monotonic() < deadline, (qty, newest_cart(client))
        await client.drain(0.1)


def store(c: Cluster) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(c.valkey.socket_path))


async def test_cart_reaches_the_other_device_across_pubsub_kills(deployment: Cluster) -> None:
    a, b = deployment.node(), deployment.node()
    deployment.setup_show(a, {"p1": 500})
    one = await WsClient.connect(a.ws_url, token=tok("ann"))
    two = await WsClient.connect(b.ws_url, token=tok("ann"))
    await one.ok("cart_get")
    await two.ok("cart_get")
    r = store(deployment)
    for qty in range(1, 11):
        r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # both nodes' subscribers
        await two.ok("cart_set", product="p1", qty=qty)  # published into the gap, maybe
        await settle_on(one, "p1", qty)
    r.close()
    await one.close()
    await two.close()


async def test_devices_that_connected_while_the_store_was_down_get_private_events(
        deployment: Cluster) -> None:
    a = deployment.node()
    deployment.setup_show(a, {"p1": 50})
    deployment.valkey.stop()
    one = await WsClient.connect(a.ws_url, token=tok("bea"))  # the subscribe fails now
    two = await WsClient.connect(a.ws_url, token=tok("bea"))
    await asyncio.sleep(0.5)
    deployment.valkey = EmbeddedValkey(deployment.data_dir)
    deployment.valkey.start()
    deadline = time.monotonic() + 15
    while deployment.http(a, "GET", "/readyz").status_code != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await one.ok("cart_set", product="p1", qty=3)
    await settle_on(two, "p1", 3)
    await one.close()
    await two.close()


async def test_two_devices_racing_end_with_the_stored_cart(deployment: Cluster) -> None:
    a, b = deployment.node(), deployment.node()
    deployment.setup_show(a, {"p1": 500})
    one = await WsClient.connect(a.ws_url, token=tok("cy"))
    two = await WsClient.connect(b.ws_url, token=tok("cy"))
    r = store(deployment)
    cart_key = Keys(deployment.prefix).cart("cy")
    for n in range(40):
        await asyncio.gather(one.ok("cart_set", product="p1", qty=1 + n % 7),
                             two.ok("cart_set", product="p1", qty=1 + (n + 3) % 7))
        raw = r.hget(cart_key, "p1")
        assert raw is not None
        stored = int(orjson.loads(raw)["qty"])
        await settle_on(one, "p1", stored)
        await settle_on(two, "p1", stored)
    r.close()
    await one.close()
    await two.close()


class SilencingProxy:
    """A TCP proxy in front of Valkey, in a thread of its own, that can make every
    subscriber connection go silent: the socket stays open, publishes succeed, but nothing
    reaches the subscriber (what a half-dead connection after a failover looks like)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.states: list[dict[str, bool]] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> SilencingProxy:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        state = {"subscriber": False, "silenced": False}
        self.states.append(state)

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if b"SSUBSCRIBE" in data.upper():
                    state["subscriber"] = True
                up_writer.write(data)
                await up_writer.drain()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                if state["silenced"]:
                    continue  # swallowed: the connection stays open and says nothing
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            up_writer.close()

    def silence_subscribers(self) -> None:
        """Every subscriber connection open now goes silent (later ones are fine)."""
        for state in self.states:
            state["silenced"] = state["subscriber"]

    def close(self) -> None:
        async def shut() -> None:
            if self.server is not None:
                self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def test_a_silent_subscriber_connection_is_probed_and_rebuilt(tmp_path: Path) -> None:
    from server.valkey.local_cluster import free_ports
    from tests.helpers import unique_prefix
    from tests.procs import NodeProcess

    port = free_ports(1)[0]
    valkey = EmbeddedValkey(tmp_path / "valkey", tcp_port=port)
    valkey.start()
    proxy = SilencingProxy(port).start()
    node = NodeProcess(f"redis://127.0.0.1:{proxy.port}/0", unique_prefix(), "probed",
                       LIVECART_PUBSUB_PROBE_INTERVAL_S="0.5",
                       LIVECART_PUBSUB_PROBE_TIMEOUT_S="0.5").start()
    try:
        c = Cluster.__new__(Cluster)  # its HTTP helpers, on this node
        sid = c.setup_show(node, {"p1": 10, "p2": 10})
        viewer = await WsClient.connect(node.ws_url)
        creator = await WsClient.connect(node.ws_url, token=tok("creator1", "creator"))
        await viewer.ok("join", session=sid)
        await creator.ok("join", session=sid)
        await creator.ok("pin", product="p1")
        first = await viewer.wait_event("pinned", timeout=5)
        proxy.silence_subscribers()
        await asyncio.sleep(0.2)
        await creator.ok("pin", product="p2")  # published; the subscriber hears nothing
        ev = await viewer.wait_event(
            lambda e: e["t"] == "pinned" and e["d"]["product"]["id"] == "p2", timeout=10)
        # repaired from history once the probe rebuilt the connection: nothing skipped
        assert ev["seq"] == first["seq"] + 1
        await viewer.close()
        await creator.close()
    finally:
        node.stop()
        proxy.close()
        valkey.stop()

    assert any("delivers nothing" in line for line in node.output)
