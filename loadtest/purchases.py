"""Attributed purchases per second on one node: `python -m loadtest.purchases`.

Starts a livecart node (embedded Valkey in a temp dir) and B buyer connections in this
process; every buyer joins one live session, clicks the product once, then places M
`buy_now` orders one after another (unique idempotency keys, qty 1, a product with ample
stock). Reports orders/s over the buying window, server CPU per order, and checks every
order came back `direct`-attributed with the right commission and the session report
agrees (counted once each). Loopback only; bounded by count and a timeout.
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

import orjson
import websockets

from loadtest.procs import Proc, cpu_seconds, http, livecart_bin
from server.auth import issue_token

PRICE, RATE_BPS = 1999, 1000


async def buyer(url: str, token: str, sid: str, orders: int, out: list[dict[str, object]]) -> None:
    async with websockets.connect(f"{url}?token={token}", compression=None) as ws:
        async def call(msg_id: int, op: str, **args: object) -> dict[str, object]:
            await ws.send(orjson.dumps({"id": msg_id, "op": op, **args}).decode())
            while True:
                doc = orjson.loads(await ws.recv())
                if isinstance(doc, dict) and doc.get("id") == msg_id:
                    return doc

        assert (await call(1, "join", session=sid))["ok"]
        assert (await call(2, "click", product="bulk"))["ok"]
        for i in range(orders):
            reply = await call(10 + i, "buy_now", product="bulk", qty=1,
                               idempotency_key=f"k{i}")
            if not reply["ok"]:
                raise RuntimeError(f"buy_now failed: {reply}")
            out.append(reply["result"])  # type: ignore[arg-type]


async def run(buyers: int, orders: int, timeout_s: float) -> dict[str, float]:
    secret = secrets.token_hex(32)
    log_dir = Path(tempfile.mkdtemp(prefix="lc-purchases-"))
    env = {"LIVECART_SECRET": secret, "LIVECART_LOG_LEVEL": "warning",
           "LIVECART_RATE_PER_S": "1000", "LIVECART_RATE_BURST": "2000"}
    node = Proc("livecart", [livecart_bin(), "serve", "--ephemeral", "--port", "0"], env,
                log_dir).ready()
    try:
        base = f"http://{node.host}:{node.port}"
        seller = issue_token(secret, "seller", "seller", 3600)
        creator = issue_token(secret, "creator", "creator", 3600)
        http("POST", base + "/api/products", {"id": "bulk", "title": "Bulk", "price": PRICE,
                                              "stock": buyers * orders + 10,
                                              "commission_bps": RATE_BPS}, seller)
        sid = http("POST", base + "/api/sessions", {"kind": "live", "title": "bench",
                                                    "showcase": ["bulk"]}, creator)["id"]
        http("POST", base + f"/api/sessions/{sid}/start", None, creator)
        placed: list[dict[str, object]] = []
        tokens = [issue_token(secret, f"b{i}", "viewer", 3600) for i in range(buyers)]
        cpu0, t0 = cpu_seconds(node.pid), time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(
            buyer(f"ws://{node.host}:{node.port}/ws", t, sid, orders, placed) for t in tokens)),
            timeout_s)
        wall, cpu = time.perf_counter() - t0, cpu_seconds(node.pid) - cpu0
        lines = [o["lines"][0] for o in placed]  # type: ignore[index]
        assert len({o["id"] for o in placed}) == buyers * orders
        assert all(line["attribution"] == "direct" for line in lines)  # type: ignore[index]
        assert all(line["commission"] == PRICE * RATE_BPS // 10_000 for line in lines)  # type: ignore[index]
        report = http("GET", base + f"/api/sessions/{sid}/report", None, creator)
        assert report["orders"] == buyers * orders and report["gmv"] == buyers * orders * PRICE
        return {"buyers": buyers, "orders": len(placed), "seconds": round(wall, 2),
                "orders_per_s": round(len(placed) / wall), "server_cpu_s": round(cpu, 2),
                "server_cpu_ms_per_order": round(cpu * 1000 / len(placed), 3)}
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.purchases", description=__doc__)
    parser.add_argument("--buyers", type=int, default=200)
    parser.add_argument("--orders", type=int, default=25, help="orders per buyer")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if os.name != "posix":
        sys.exit("needs /proc (Linux)")
    result = asyncio.run(run(args.buyers, args.orders, args.timeout))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
