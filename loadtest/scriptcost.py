"""What the order and pin scripts themselves cost Valkey, beside the reference script, in
one run: `python -m loadtest.scriptcost [--orders 4000] [--rounds 3]`.

On a fresh embedded Valkey (no server, no viewers: only the scripts) it runs, in turns,
the bench's reference script (loadtest/bench.py REFERENCE_LUA), `order_place.lua` with
realistic one-line `buy_now` orders — each a new order and a new buyer, attributed to a
session whose creator earns commission — first one order per call, then
`ORDERS_PER_CALL` per call (what server/cart/order_batches.py sends in a burst), and
`pin.lua` as a creator's pin reading its product (what a pin without a deal runs on one
Valkey), as many pins as orders, over 8 live shows in turn. Every call is
pipelined 100 at a time, as the bench's reference is. Reported per round: Valkey CPU per
call or per order (utime+stime from /proc, 10 ms ticks), the ratio to the reference of
the same round, and the µs spent inside the commands each script calls (INFO
commandstats, EVALSHA itself left out: the rest of a script's cost is its Lua and the
calls' overhead); the medians at the end. Bounded by count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from loadtest.bench import REFERENCE_LUA
from loadtest.procs import cpu_seconds
from server.cart.order_batches import ORDERS_PER_CALL
from server.valkey.embedded import EmbeddedValkey
from server.valkey.keys import Keys, order_bucket
from server.valkey.store import load_source

PIPELINE = 100


def order_call(keys: Keys, tag: str, first: int, count: int) -> list[Any]:
    """EVALSHA arguments (after the sha) of one order_place.lua call of `count` orders."""
    ks: list[Any] = []
    args: list[Any] = [1000, 600_000, "epoch"]
    for i in range(first, first + count):
        oid, buyer = f"ord_{tag}{i:016d}", f"buyer_{tag}{i}"
        plan = {"buyer": buyer, "currency": "USD", "op": "buy_now", "room": "s1",
                "lines": [{"product": "p1", "qty": 1, "seen": None, "session": "s1",
                           "attribution": "direct", "creator": "creator1"}],
                "touch": ["p1", "s1|1"], "sold_out_rooms": {"p1": "s1"}}
        ks += [*keys.room("s1"), keys.counters("s1"), keys.order(oid),
               keys.orders_stream(order_bucket(oid)), keys.product("p1"), keys.deals("p1"),
               keys.rates("p1"), keys.reservations("p1"), keys.holds("p1"),
               keys.user_orders(buyer), keys.cart(buyer), keys.touches(buyer),
               keys.user_channel(buyer), keys.cart_version(buyer), keys.ledger("creator1"),
               keys.balance("creator1")]
        args += [oid, f"fp{i}", orjson.dumps(plan), "deal"]
    return [len(ks), *ks, *args]


PIN_ROOMS = 8


def pin_call(keys: Keys, n: int) -> list[Any]:
    """EVALSHA arguments (after the sha) of the n-th pin: show n % PIN_ROOMS, its product."""
    sid = f"s{n % PIN_ROOMS}"
    ks = [*keys.room(sid), keys.pin_log(sid), keys.counters(sid), keys.moderators(sid),
          keys.product("p1")]
    return [len(ks), *ks, 1000, 600_000, "epoch", "pin", "creator1", "", "", "p1", "", ""]


async def measure(orders: int, rounds: int,
                  report: Callable[[str], None] = print) -> dict[str, Any]:
    valkey = EmbeddedValkey(None, persist=False)
    valkey.start()
    assert valkey.process is not None
    pid = valkey.process.pid
    r = aioredis.from_url(valkey.url)
    keys = Keys("cost")
    try:
        await r.hset("ref:h", mapping={f"f{i}": "x" * 16 for i in range(10)})
        await r.hset(keys.product("p1"), mapping={
            "id": "p1", "price": 1999, "stock": 10**12, "commission_bps": 1000,
            "seller": "seller1", "title": "A product", "currency": "USD", "image_url": ""})
        for room in range(PIN_ROOMS):
            await r.hset(keys.session(f"s{room}"), mapping={
                "creator": "creator1", "status": "live", "started_at": 1, "showcase": '["p1"]'})
            await r.hset(keys.counters(f"s{room}"), mapping={  # as room_tick.lua leaves it
                "viewers": 250, "viewers_until": 2**50})
        ref_sha = await r.script_load(REFERENCE_LUA)
        order_sha = await r.script_load(load_source("order_place.lua"))
        pin_sha = await r.script_load(load_source("pin.lua"))

        async def run(calls: list[list[Any]], sha: str) -> tuple[float, float]:
            """Valkey CPU seconds over the calls, and µs spent inside the commands the
            scripts called (INFO commandstats: everything but EVALSHA itself)."""
            await r.config_resetstat()
            t0 = cpu_seconds(pid)
            for start in range(0, len(calls), PIPELINE):
                pipe = r.pipeline(transaction=False)
                for call in calls[start:start + PIPELINE]:
                    pipe.evalsha(sha, *call)
                for reply in await pipe.execute(raise_on_error=True):
                    assert not isinstance(reply, Exception), reply
            cpu = cpu_seconds(pid) - t0
            stats = await r.info("commandstats")
            inside = sum(v["usec"] for k, v in stats.items()
                         if k not in ("cmdstat_evalsha", "cmdstat_config|resetstat"))
            return cpu, inside

        ref_call = [4, "ref:h", "ref:c", "ref:s", "ref:ch"]
        per_round: list[dict[str, float]] = []
        for n in range(rounds):
            measured = {
                "reference": await run([ref_call] * orders, ref_sha),
                "order_alone": await run([order_call(keys, f"a{n}", i, 1)
                                          for i in range(orders)], order_sha),
                "order_batched": await run([order_call(keys, f"b{n}", i, ORDERS_PER_CALL)
                                            for i in range(0, orders, ORDERS_PER_CALL)],
                                           order_sha),
                "pin": await run([pin_call(keys, i) for i in range(orders)], pin_sha)}
            row = {}
            for name, (cpu, inside) in measured.items():
                row[f"{name}_us"] = cpu * 1e6 / orders
                row[f"{name}_commands_us"] = inside / orders
            ref, one, many, pin = (row[f"{k}_us"] for k in measured)
            base = ref or float("nan")  # below /proc's 10 ms ticks: no ratio
            row |= {"alone_ratio": one / base, "batched_ratio": many / base,
                    "pin_ratio": pin / base}
            per_round.append(row)
            report(f"round {n + 1}: reference {ref:.1f} µs/call; order_place.lua one per call "
                   f"{one:.1f} µs/order ({one / base:.2f}x), {ORDERS_PER_CALL} per call "
                   f"{many:.1f} µs/order ({many / base:.2f}x); pin.lua {pin:.1f} µs/pin "
                   f"({pin / base:.2f}x); inside the commands the scripts call: reference "
                   f"{row['reference_commands_us']:.1f}, order "
                   f"{row['order_alone_commands_us']:.1f} / "
                   f"{row['order_batched_commands_us']:.1f}, pin "
                   f"{row['pin_commands_us']:.1f} µs")
        summary = {k: statistics.median(row[k] for row in per_round) for k in per_round[0]}
        sold = int(await r.hget(keys.product("p1"), "sold") or 0)
        counted = int(await r.hget(keys.counters("s1"), "orders") or 0)
        assert sold == counted == 2 * orders * rounds, (sold, counted)
        pins = sum([int(await r.hget(keys.counters(f"s{room}"), "pins") or 0)
                    for room in range(PIN_ROOMS)])
        assert pins == orders * rounds, pins
        return {"orders": orders, "rounds": rounds, "orders_per_call": ORDERS_PER_CALL,
                "per_round": per_round, "median": summary}
    finally:
        await r.aclose()
        valkey.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.scriptcost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=4000, help="orders per measurement")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    if a.orders < ORDERS_PER_CALL or a.orders % ORDERS_PER_CALL:
        p.error(f"--orders must be a multiple of {ORDERS_PER_CALL}")
    out = asyncio.run(measure(a.orders, a.rounds))
    m = out["median"]
    print(f"median: order_place.lua one per call {m['alone_ratio']:.2f}x the reference, "
          f"{ORDERS_PER_CALL} per call {m['batched_ratio']:.2f}x; pin.lua "
          f"{m['pin_ratio']:.2f}x "
          f"(reference {m['reference_us']:.1f} µs of Valkey CPU per call); outside the "
          f"commands they call (Lua, call overhead, dispatch): reference "
          f"{m['reference_us'] - m['reference_commands_us']:.1f}, order one per call "
          f"{m['order_alone_us'] - m['order_alone_commands_us']:.1f}, {ORDERS_PER_CALL} "
          f"per call {m['order_batched_us'] - m['order_batched_commands_us']:.1f}, pin "
          f"{m['pin_us'] - m['pin_commands_us']:.1f} µs")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
