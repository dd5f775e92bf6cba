"""livecart on a real 3-master Valkey Cluster, with real server processes.

Two nodes see the same `seq`; one show's keys land on several shards; and concurrent,
retried multi-product checkouts over products on different shards stay exact while one
master is killed with SIGKILL and restarted from its AOF: every idempotency key maps to
at most one order, stock is conserved on every shard, each session's counters equal the
sum of its attributed lines and each creator's ledger the sum of its entries — once the
saga has settled, within SETTLE_S.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot
from websockets.exceptions import ConnectionClosed

from server.auth import issue_token
from server.valkey.keys import ORDER_BUCKETS, Keys
from server.valkey.local_cluster import SLOTS, EmbeddedCluster
from tests.helpers import SECRET, WsClient, unique_prefix
from tests.procs import NodeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MASTERS = 3
SETTLE_S = 20.0  # the saga's bound here: takeover 1 s + redo 0.5 s + sweeps + the restart
NODE_ENV = {"LIVECART_REDIS_CLUSTER": "1", "LIVECART_SAGA_TAKEOVER_MS": "1000",
            "LIVECART_SAGA_REDO_MS": "500", "LIVECART_COUNTERS_INTERVAL_S": "0.3"}


def tok(sub: str, role: str = "viewer") -> str:
    return issue_token(SECRET, sub, role, 3600, sub)


def shard_of(key: str) -> int:
    return key_slot(key.encode()) * MASTERS // SLOTS


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(MASTERS)
    c.start()
    yield c
    c.stop()


class Deployment:
    def __init__(self, cluster: EmbeddedCluster) -> None:
        self.cluster = cluster
        self.prefix = unique_prefix()
        self.keys = Keys(self.prefix)
        self.nodes = [NodeProcess(cluster.url, self.prefix, f"cnode{i}", **NODE_ENV).start()
                      for i in range(2)]
        self.redis = RedisCluster.from_url(cluster.url)

    def http(self, i: int, method: str, path: str, token: str | None = None,
             json: object = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.nodes[i].base + path, json=json, headers=headers,
                             timeout=15)

    def product(self, pid: str, price: int, stock: int) -> None:
        r = self.http(0, "POST", "/api/products", tok("seller1", "seller"), {
            "id": pid, "title": pid, "price": price, "stock": stock, "commission_bps": 1000})
        assert r.status_code == 201, r.text

    def live_session(self, creator: str, showcase: list[str]) -> str:
        r = self.http(0, "POST", "/api/sessions", tok(creator, "creator"),
                      {"kind": "live", "title": "show", "showcase": showcase})
        assert r.status_code == 201, r.text
        sid = str(r.json()["id"])
        assert self.http(1, "POST", f"/api/sessions/{sid}/start", tok(creator, "creator")) \
            .status_code == 200
        return sid

    def close(self) -> None:
        for n in self.nodes:
            n.stop()
        self.redis.close()


@pytest.fixture
def deployment(cluster: EmbeddedCluster) -> Iterator[Deployment]:
    d = Deployment(cluster)
    yield d
    d.close()


def pids_over_shards(prefix: str, per_shard: int) -> list[str]:
    keys = Keys(prefix)
    chosen: dict[int, list[str]] = defaultdict(list)
    i = 0
    while any(len(chosen[s]) < per_shard for s in range(MASTERS)):
        pid = f"cp{i}"
        shard = shard_of(keys.product(pid))
        if len(chosen[shard]) < per_shard:
            chosen[shard].append(pid)
        i += 1
    return [p for s in range(MASTERS) for p in chosen[s]]


async def test_two_nodes_on_a_cluster_see_the_same_seq(deployment: Deployment) -> None:
    d = deployment
    pids = pids_over_shards(d.prefix, 1)
    for pid in pids:
        d.product(pid, 1000, 50)
    sid = d.live_session("creator1", pids)
    viewers = [await WsClient.connect(d.nodes[i % 2].ws_url, token=tok(f"v{i}"))
               for i in range(4)]
    for v in viewers:
        await v.ok("join", session=sid)
    creator = await WsClient.connect(d.nodes[0].ws_url, token=tok("creator1", "creator"))
    await creator.ok("join", session=sid)
    for i in range(6):
        await creator.ok("pin", product=pids[i % len(pids)])
    await creator.ok("unpin")
    for v in viewers:
        await v.wait_event(lambda e: e["t"] == "unpinned", timeout=10)
    seqs = [[e["seq"] for e in v.events if e["t"] in ("pinned", "unpinned")] for v in viewers]
    assert len(seqs[0]) == 7 and all(s == seqs[0] for s in seqs)
    assert seqs[0] == sorted(seqs[0])
    for c in (*viewers, creator):
        await c.close()


def test_one_show_spreads_over_shards(deployment: Deployment) -> None:
    d = deployment
    pids = pids_over_shards(d.prefix, 1)
    for pid in pids:
        d.product(pid, 1000, 5)
    sid = d.live_session("creator1", pids)
    keys = [d.keys.session(sid), *(d.keys.product(p) for p in pids),
            d.keys.ledger("creator1")]
    assert all(d.redis.exists(k) for k in keys[:-1])
    assert len({shard_of(k) for k in keys}) == MASTERS


async def _shopper(d: Deployment, i: int, sid: str,
                   products: list[str]) -> tuple[WsClient, WsClient]:
    """A buyer with two devices, one on each node."""
    client = await WsClient.connect(d.nodes[i % 2].ws_url, token=tok(f"b{i}"))
    other = await WsClient.connect(d.nodes[(i + 1) % 2].ws_url, token=tok(f"b{i}"))
    await client.ok("join", session=sid)
    for j, pid in enumerate(products):
        await client.ok("cart_set", product=pid, qty=1 + (i + j) % 2)
    return client, other


async def _checkout(d: Deployment, devices: tuple[WsClient, WsClient], i: int,
                    results: dict[str, list[Any]]) -> None:
    clients = list(devices)
    urls = [d.nodes[i % 2].ws_url, d.nodes[(i + 1) % 2].ws_url]

    async def ask(n: int, key: str) -> dict[str, Any]:
        try:
            return await clients[n].request("checkout", _timeout=30, idempotency_key=key)
        except ConnectionClosed:  # e.g. 4008 when the room's history shard was down:
            clients[n] = await WsClient.connect(urls[n], token=tok(f"b{i}"))  # come back
            return {"ok": False, "error": {"code": "unavailable"}}

    try:
        key = f"k-b{i}"
        await asyncio.sleep((i % 8) * 0.15)  # spread over the kill window
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            replies = await asyncio.gather(ask(0, key), ask(1, key))  # two devices at once
            for r in replies:
                results[key].append(r)
            codes = {r["error"]["code"] for r in replies if not r["ok"]}
            if any(r["ok"] for r in replies) or not codes <= {"unavailable", "conflict"}:
                break
            await asyncio.sleep(0.3)  # the store is down or the attempt was undone: retry
    finally:
        for c in clients:
            await c.close()


def _settled(d: Deployment) -> bool:
    return all(d.redis.zcard(d.keys.saga(b)) == 0 for b in range(ORDER_BUCKETS))


async def test_checkouts_stay_exact_while_a_master_is_killed(deployment: Deployment) -> None:
    d = deployment
    pids = pids_over_shards(d.prefix, 2)
    for n, pid in enumerate(pids):
        d.product(pid, 1000 + 100 * n, 40)
    sessions = [d.live_session("creator1", pids), d.live_session("creator2", pids)]
    results: dict[str, list[Any]] = defaultdict(list)
    shoppers = await asyncio.gather(*(
        _shopper(d, i, sessions[i % 2], [pids[(i + j * 2) % len(pids)] for j in range(3)])
        for i in range(24)))
    tasks = [asyncio.ensure_future(_checkout(d, c, i, results))
             for i, c in enumerate(shoppers)]
    await asyncio.sleep(0.6)
    d.cluster.kill(1)
    await asyncio.sleep(1.5)
    await asyncio.to_thread(d.cluster.restart, 1)
    await asyncio.wait_for(asyncio.gather(*tasks), 180)

    deadline = time.monotonic() + SETTLE_S
    while not _settled(d):
        assert time.monotonic() < deadline, "the saga did not settle"
        await asyncio.sleep(0.2)

    # every idempotency key maps to at most one order, and every success names it
    orders: dict[str, dict[str, Any]] = {}
    for b in range(ORDER_BUCKETS):
        for _, fields in d.redis.xrange(d.keys.orders_stream(b)):
            if fields[b"type"] == b"order":
                doc = orjson.loads(fields[b"json"])
                assert doc["id"] not in orders, "an order was recorded twice"
                orders[doc["id"]] = doc
    placed = 0
    for key, replies in results.items():
        ids = {r["result"]["id"] for r in replies if r["ok"]}
        assert len(ids) <= 1, (key, ids)
        assert ids <= set(orders)
        placed += len(ids)
    assert placed >= 12, "most buyers should get their order despite the outage"
    assert len(orders) == placed  # no order exists that its buyer was never told about

    # stock conservation on every shard
    sold: dict[str, int] = defaultdict(int)
    for o in orders.values():
        for line in o["lines"]:
            sold[line["product"]] += line["qty"]
    for pid in pids:
        p = {k.decode(): int(v) for k, v in d.redis.hgetall(d.keys.product(pid)).items()
             if v.isdigit()}
        assert p.get("reserved", 0) == 0, f"{pid}: a reservation outlived its order"
        assert p["sold"] == sold[pid]
        assert p["stock"] + p.get("held", 0) == (
            p["initial_stock"] + p["restocked"] - p["sold"] + p["refunded"])

    # each session's numbers are the sum of its attributed lines; ledgers their entries
    for sid in sessions:
        lines = [line for o in orders.values() for line in o["lines"]
                 if line["session"] == sid and line["attribution"] != "none"]
        c = {k.decode(): int(v) for k, v in d.redis.hgetall(d.keys.counters(sid)).items()
             if v.lstrip(b"-").isdigit()}
        assert c.get("gmv", 0) == sum(line["amount"] for line in lines)
        assert c.get("units", 0) == sum(line["qty"] for line in lines)
        assert c.get("commission", 0) == sum(line["commission"] for line in lines)
        assert c.get("orders", 0) == len(
            {o["id"] for o in orders.values() for line in o["lines"] if line["session"] == sid})
    for creator, sid in (("creator1", sessions[0]), ("creator2", sessions[1])):
        entries = [orjson.loads(e) for e in d.redis.lrange(d.keys.ledger(creator), 0, -1)]
        balance = int(d.redis.hget(d.keys.balance(creator), "balance") or 0)
        assert balance == sum(e["amount"] for e in entries)
        assert balance == sum(line["commission"] for o in orders.values()
                              for line in o["lines"] if line["session"] == sid)
        assert len({(e["order"], e["line"]) for e in entries}) == len(entries)
