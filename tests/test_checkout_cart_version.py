"""Issue 26 item 1: a checkout consumes the cart version it read.

A buyer's two devices check out one cart at the same moment with two different
idempotency keys: exactly one order, the other device `conflict` (or, when it read the
cart after the order emptied it, "the cart is empty") — never a second order for the same
cart contents, never a unit taken twice. The checkout's claim on the cart (cart_claim.lua,
the saga's step 0b in the cart's slot) is refused when the cart changed since it was read
or another checkout holds it, before the attempt reserves anything; a failed checkout
gives the cart back. On one Valkey and on the 3-master cluster (the `server` fixtures),
and across two real server processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from server.auth import issue_token
from server.errors import ApiError, ErrorCode
from server.valkey.embedded import EmbeddedValkey
from server.valkey.keys import Keys
from server.valkey.local_cluster import EmbeddedCluster
from server.valkey.scripts import Scripts
from server.valkey.store import Store
from tests.helpers import SECRET, ServerThread, WsClient, unique_prefix
from tests.procs import NodeProcess

pytestmark = pytest.mark.anyio

ROUNDS = 40
FAST = {"rate_per_s": 1000.0, "rate_burst": 1000, "abuse_errors": 100_000}
STOCK = {"p1": 200, "p2": 100}


def losing(reply: dict[str, Any]) -> bool:
    """The answer the device that did not get the order may see."""
    if reply["ok"]:
        return False
    error = reply["error"]
    return error["code"] == "conflict" or (
        error["code"] == "bad_request" and "empty" in error["message"])


async def race(devices: list[WsClient], rounds: int, tag: str,
               same_key: bool = False) -> list[dict[str, Any]]:
    """Fill the cart (p1 x 2, every other round p2 x 1 too) and check it out from every
    device at once, `rounds` times; each round's winning order."""
    orders = []
    for i in range(rounds):
        await devices[0].ok("cart_set", product="p1", qty=2)
        if i % 2:
            await devices[0].ok("cart_set", product="p2", qty=1)
        replies = await asyncio.gather(*(
            d.request("checkout", idempotency_key=f"{tag}-{i}" + ("" if same_key else f"-{j}"))
            for j, d in enumerate(devices)))
        won = [r for r in replies if r["ok"]]
        if same_key:  # one order, every device gets it
            assert len(won) == len(devices), replies
            assert len({r["result"]["id"] for r in won}) == 1, replies
        else:
            assert len(won) == 1, (i, replies)
            assert all(losing(r) for r in replies if not r["ok"]), (i, replies)
        order = won[0]["result"]
        want = {"p1": 2, **({"p2": 1} if i % 2 else {})}
        assert {line["product"]: line["qty"] for line in order["lines"]} == want, order
        orders.append(order)
    return orders


def units(orders: list[dict[str, Any]]) -> dict[str, int]:
    sold = {pid: 0 for pid in STOCK}
    for order in orders:
        for line in order["lines"]:
            sold[line["product"]] += line["qty"]
    return sold


async def assert_conserved(read: Callable[..., Any], keys: Keys, buyer: str,
                           orders: list[dict[str, Any]]) -> None:
    """Every unit sold is in exactly one of the buyer's orders; nothing stays reserved."""
    sold = units(orders)
    listed = await read("LRANGE", keys.user_orders(buyer), 0, -1)
    assert sorted(x.decode() for x in listed) == sorted(o["id"] for o in orders)
    for pid, initial in STOCK.items():
        stock, reserved, taken = (int(x or 0) for x in await read(
            "HMGET", keys.product(pid), "stock", "reserved", "sold"))
        assert (stock, reserved, taken) == (initial - sold[pid], 0, sold[pid]), pid
    assert await read("HGET", keys.cart_claims(buyer), "live") is None


async def test_two_devices_one_cart_one_order_per_round(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST)
    for pid, stock in STOCK.items():
        server.product(pid, stock=stock)
    token = server.token("buyer1")
    devices = [await WsClient.connect(server.ws_url, token=token),
               await WsClient.connect(server.ws_url, token=token, use_msgpack=True)]
    orders = await race(devices, ROUNDS, "k")
    await assert_conserved(server.store, server.node.keys, "buyer1", orders)
    assert (await devices[1].ok("cart_get"))["lines"] == []
    for d in devices:
        await d.close()


async def test_the_same_key_from_two_devices_is_one_order(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST)
    for pid, stock in STOCK.items():
        server.product(pid, stock=stock)
    token = server.token("buyer1")
    devices = [await WsClient.connect(server.ws_url, token=token) for _ in range(2)]
    orders = await race(devices, 10, "same", same_key=True)
    await assert_conserved(server.store, server.node.keys, "buyer1", orders)
    for d in devices:
        await d.close()


async def test_a_failed_checkout_gives_the_cart_back(server: ServerThread) -> None:
    """Its claim is released with its units: the cart is checked out again at once."""
    server.product("p1", stock=2)
    server.product("p2", stock=5)
    keys = server.node.keys
    c = await WsClient.connect(server.ws_url, token=server.token("buyer1"))
    await c.ok("cart_set", product="p1", qty=2)
    await c.ok("cart_set", product="p2", qty=2)
    # refused at commit (the total), then for stock (a unit sold elsewhere meanwhile)
    assert (await c.err("checkout", idempotency_key="k1", total=1))["code"] == "conflict"
    await server.store("HINCRBY", keys.product("p1"), "stock", -1)
    assert (await c.err("checkout", idempotency_key="k2"))["code"] == "out_of_stock"
    await c.ok("cart_set", product="p1", qty=1)
    order = await c.ok("checkout", idempotency_key="k3", total=1000 + 2 * 1000)
    assert {line["product"]: line["qty"] for line in order["lines"]} == {"p1": 1, "p2": 2}
    for pid, left in (("p1", 0), ("p2", 3)):
        stock, reserved = await server.store("HMGET", keys.product(pid), "stock", "reserved")
        assert (int(stock), int(reserved or 0)) == (left, 0), pid
    claims = {k.decode(): v.decode() for k, v in
              (await server.store("HGETALL", keys.cart_claims("buyer1"))).items()}
    assert "live" not in claims
    assert sorted(claims.values()) == ["released", "released", "taken"], claims
    await c.close()


# the claim itself, through the real store ----------------------------------------------

@pytest.fixture
async def scripts(valkey_url: str) -> Any:
    store = Store(valkey_url, timeout_s=2.0, cluster=None)
    await store.open()
    await store.load_all()
    keys = Keys(unique_prefix())
    yield store, keys, Scripts(store, keys, 1000, 600_000)
    await store.close()


async def conflict(call: Any) -> dict[str, Any]:
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.code is ErrorCode.CONFLICT, caught.value
    return caught.value.to_wire()


async def test_a_claim_consumes_the_version_it_read(scripts: Any) -> None:
    store, keys, s = scripts
    await store.call("HSET", keys.product("p1"), "id", "p1", "price", 100, "stock", 10,
                     "commission_bps", 0, "seller", "s1")
    _, v0, _ = await s.read_cart("b1")
    assert v0 == 0
    _, _, v1 = await s.update_cart("b1", "set", "p1", 2, "", 99, 10)
    assert v1 == 1
    # read at 0, the cart changed since: refused, with the version now
    assert (await conflict(s.claim_cart("b1", "o1#1", v0)))["v"] == 1
    flat, version, _ = await s.read_cart("b1", touches=True)
    assert version == 1 and len(flat) == 2
    assert await s.claim_cart("b1", "o1#2", version) == "held"
    assert await s.claim_cart("b1", "o1#2", version) == "held"  # a duplicate of the attempt
    # another checkout that read the same version while the cart is held: refused
    assert "in progress" in (await conflict(s.claim_cart("b1", "o2#1", version)))["message"]
    assert await s.release_cart("b1", "o1#2") == "released"
    assert await s.claim_cart("b1", "o2#1", version) == "held"  # free again, same version
    # the order of o2#1 takes the lines and the claim: the version moves on, the cart is free
    order = orjson.dumps({"id": "o2", "lines": []})
    cart_lines = {"p1": dict(zip(flat[::2], flat[1::2], strict=True))[b"p1"].decode()}
    await s.buyer_effects("b1", "o2", order, cart_lines, None, "o2#1")
    assert await s.claim_cart("b1", "o2#1", version) == "taken"  # a late duplicate
    _, after, _ = await s.read_cart("b1")
    assert after == version + 1
    assert await store.call("HGET", keys.cart_claims("b1"), "live") is None
    # a claim released before it was made (its attempt abandoned) stays refused
    assert await s.release_cart("b1", "o3#1") == "released"
    assert (await conflict(s.claim_cart("b1", "o3#1", after)))["aborted"] is True
    assert await s.release_cart("b1", "o2#1") == "taken"  # a taken claim is never released


# two real server processes ------------------------------------------------------------

def tok(sub: str, role: str = "viewer") -> str:
    return issue_token(SECRET, sub, role, 3600, sub)


@pytest.fixture(params=["standalone", "cluster"])
def two_nodes(request: pytest.FixtureRequest) -> Iterator[tuple[list[NodeProcess], str, bool]]:
    cluster = request.param == "cluster"
    store: EmbeddedValkey | EmbeddedCluster = request.getfixturevalue(
        "valkey_cluster" if cluster else "valkey")
    prefix = unique_prefix()
    env = {"LIVECART_RATE_PER_S": "1000", "LIVECART_RATE_BURST": "1000",
           "LIVECART_ABUSE_ERRORS": "100000",
           **({"LIVECART_REDIS_CLUSTER": "1"} if cluster else {})}
    nodes = [NodeProcess(store.url, prefix, f"cv{i}", **env).start() for i in range(2)]
    yield nodes, prefix, cluster
    for n in nodes:
        n.stop()


async def test_two_nodes_one_cart_one_order_per_round(
        two_nodes: tuple[list[NodeProcess], str, bool], request: pytest.FixtureRequest) -> None:
    nodes, prefix, cluster = two_nodes
    for pid, stock in STOCK.items():
        r = httpx.post(nodes[0].base + "/api/products", headers={
            "Authorization": f"Bearer {tok('seller1', 'seller')}"}, json={
            "id": pid, "title": pid, "price": 1000, "stock": stock, "commission_bps": 0},
            timeout=10)
        assert r.status_code == 201, r.text
    devices = [await WsClient.connect(nodes[0].ws_url, token=tok("buyer1")),
               await WsClient.connect(nodes[1].ws_url, token=tok("buyer1"), use_msgpack=True)]
    orders = await race(devices, ROUNDS, "n")
    for d in devices:
        await d.close()
    url = request.getfixturevalue("valkey_cluster" if cluster else "valkey").url
    store = Store(url, timeout_s=2.0, cluster=cluster)
    await store.open()
    try:
        await assert_conserved(store.call, Keys(prefix), "buyer1", orders)
    finally:
        await store.close()
