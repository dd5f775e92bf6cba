"""The precise fan-out benchmark: `python -m loadtest.bench --viewers 5000 ...`.

For each server (livecart, a bare `websockets` broadcast() server, python-socketio with
its Redis manager; optionally livecart with 2 node processes) and each round, with the
same generator (loadtest/gen.py worker processes) and the same ~250-byte `pinned` event:

1. join spike: N viewers connect and join within S seconds; each must get its snapshot.
   Server RSS growth ÷ joined viewers = memory per idle connection.
2. single pins: one pin at a time; latency = viewer receive time - time the trigger sent
   the pin (p50/p99/max over all viewers); livecart's own fan-out time (pub/sub receipt →
   last frame handed to the kernel) from the `livecart_fanout_seconds` sum diff per pin.
3. sustained stream: pins at a fixed rate; delivered msgs/s (only events each client
   parsed and seq-checked), server CPU µs per delivered message (/proc utime+stime),
   Valkey CPU per published event, latency over time (receive - event `ts`).
4. flash-sale storm (livecart, when `buy_now` and deals exist): B buyers hit `buy_now` on
   a 100-unit deal at once → exactly 100 orders expected.
5. chat storm (livecart, `--chatters M` > 0): loadtest/chatstorm.py — chat viewers,
   pins-only viewers, M chatters at `--chat-rate` msgs/s; delivered chat msgs/s and pin
   latency before vs during the storm.

Everything is on loopback, every loop bounded in count and time; every process started
is stopped in `finally`. Results: JSON + Markdown + PNG plots in --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from loadtest import report
from loadtest.gen import raise_nofile, worker_main
from loadtest.procs import cpu_seconds, rss_bytes, scrape
from loadtest.targets import Livecart, Target, Trigger, make_target

ALL = ["ws-broadcast", "socketio-redis", "livecart"]


class Progress:
    """A one-line progress bar on stderr (plain text, no dependency)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.label = ""
        self.limit = 1.0
        self.started = time.monotonic()
        self.pids: list[int] = []
        self._cpu: tuple[float, float] | None = None
        self._task: asyncio.Task[None] | None = None
        self.extra = ""

    def phase(self, label: str, limit_s: float, pids: list[int]) -> None:
        self.label, self.limit, self.started, self.pids = label, max(limit_s, 0.1), \
            time.monotonic(), pids
        self._cpu = None
        self.extra = ""
        if not self.enabled:
            print(f"[bench] {label}", file=sys.stderr, flush=True)

    def _draw(self) -> None:
        elapsed = time.monotonic() - self.started
        frac = min(elapsed / self.limit, 1.0)
        cpu = sum(_safe_cpu(p) for p in self.pids)
        pct = ""
        if self._cpu is not None and elapsed > self._cpu[0]:
            pct = f" server cpu {100 * (cpu - self._cpu[1]) / (elapsed - self._cpu[0]):3.0f}%"
        self._cpu = (elapsed, cpu)
        bar = "#" * int(frac * 24) + "." * (24 - int(frac * 24))
        sys.stderr.write(f"\r{self.label:<34} [{bar}] {elapsed:5.1f}/{self.limit:.0f}s"
                         f"{pct} {self.extra}\x1b[K")
        sys.stderr.flush()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.enabled:
                with contextlib.suppress(Exception):
                    self._draw()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self.enabled:
            sys.stderr.write("\n")


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return values[k]


class Workers:
    """The generator processes, driven over pipes; `call()` sends one command to all."""

    def __init__(self, count: int, cfg: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        for i in range(count):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=({**cfg, "index": i, "workers": count}, child),
                            daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)

    async def call(self, msg: dict[str, Any], timeout_s: float = 120.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        futs = []
        for conn in self.conns:
            conn.send(msg)
            fut: asyncio.Future[Any] = loop.create_future()

            def on_ready(c: Connection = conn, f: asyncio.Future[Any] = fut) -> None:
                loop.remove_reader(c.fileno())
                os.set_blocking(c.fileno(), True)  # uvloop made it non-blocking
                try:
                    f.set_result(c.recv())
                except Exception as exc:  # the worker died
                    f.set_exception(exc)

            loop.add_reader(conn.fileno(), on_ready)
            futs.append(fut)
        return list(await asyncio.wait_for(asyncio.gather(*futs), timeout_s))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call({"cmd": "close"}, 10)
        for p in self.procs:
            p.join(3)
            if p.is_alive():
                p.kill()
                p.join(2)


async def run_target(target: Target, args: argparse.Namespace, valkey_pid: int,
                     progress: Progress, vk: Any = None) -> dict[str, Any]:
    res: dict[str, Any] = {"server": target.name, "viewers": args.viewers}
    progress.phase(f"{target.name}: starting", 10, [])
    await asyncio.to_thread(target.start)
    await target.open_trigger()
    pids = target.pids
    storm_on = False
    buyers = min(args.storm_buyers, args.viewers)
    if isinstance(target, Livecart):
        if buyers <= 0:
            res["storm"] = {"skipped": "--storm-buyers 0"}
        else:
            storm_on = await probe_storm(target)
            if not storm_on:
                res["storm"] = {"skipped": "this build has no buy_now/deals"}
    # every livecart viewer connects with its own token (verification is part of a join)
    tokens = target.viewer_tokens(args.viewers)
    nworkers = args.workers or max(2, math.ceil(args.viewers / 2500))
    workers = Workers(nworkers, {"dialect": target.dialect, "session": target.session,
                                 "targets": target.endpoints, "path": target.path})
    try:
        await asyncio.sleep(0.5)
        rss0 = sum(rss_bytes(p) for p in pids)
        # 1. join spike ---------------------------------------------------------------
        progress.phase(f"{target.name}: join {args.viewers} in {args.spread}s",
                       args.spread, pids)
        t0 = time.time() + 0.3
        cpu_j0 = sum(cpu_seconds(p) for p in pids)
        joins = await workers.call(
            {"cmd": "connect", "total": args.viewers, "spread_s": args.spread, "t0": t0,
             "timeout_s": args.join_timeout, "tokens": tokens, "window": args.join_window},
            args.spread + args.join_timeout + 30)
        joined = sum(j["joined"] for j in joins)
        failed: dict[str, int] = {}
        for j in joins:
            for k, v in j["failed"].items():
                failed[k] = failed.get(k, 0) + v
        last = max((j["last_join"] for j in joins), default=t0)
        join_lat = sorted(x for j in joins for x in j["join_latency"])
        res["join"] = {"joined": joined, "errors": sum(failed.values()), "failed": failed,
                       "all_done_s": round(last - t0, 3) if joined else None,
                       "joins_per_s": joined / max(last - t0, 1e-9) if joined else None,
                       "spread_s": args.spread, "latency_p50_ms": 1000 * pct(join_lat, 0.5),
                       "latency_p99_ms": 1000 * pct(join_lat, 0.99),
                       "server_cpu_ms_per_join": 1000 * (sum(cpu_seconds(p) for p in pids)
                                                         - cpu_j0) / max(joined, 1)}
        progress.phase(f"{target.name}: settle", args.settle, pids)
        vidle0, tidle0 = cpu_seconds(valkey_pid), time.monotonic()
        await asyncio.sleep(args.settle)
        valkey_idle_per_s = (cpu_seconds(valkey_pid) - vidle0) / (time.monotonic() - tidle0)
        rss1 = sum(rss_bytes(p) for p in pids)
        res["rss_per_conn_bytes"] = (rss1 - rss0) / max(joined, 1)
        res["rss_total_mb"] = rss1 / 2**20
        if joined == 0:
            res["error"] = "no viewer joined"
            return res

        # 2. single pins --------------------------------------------------------------
        singles: list[dict[str, Any]] = []
        pooled: list[float] = []
        for i in range(args.pins):
            progress.phase(f"{target.name}: single pin {i + 1}/{args.pins}", 5, pids)
            await workers.call({"cmd": "reset", "exact": True})
            before = scrape(target.base) if isinstance(target, Livecart) else {}
            sent = time.time()
            reply = await target.trigger.command(target.trigger.pin_body(target.product_id))
            seq = int(reply["result"]["seq"])
            waits = await workers.call({"cmd": "wait_seq", "seq": seq, "timeout_s": 20})
            stats = await workers.call({"cmd": "collect"})
            lat = sorted(t - sent for s in stats for t in s["exact_times"].get(seq, []))
            after = scrape(target.base) if isinstance(target, Livecart) else {}
            one = {"seq": seq, "received": len(lat), "behind": sum(w["behind"] for w in waits),
                   "p50_ms": 1000 * pct(lat, 0.5), "p99_ms": 1000 * pct(lat, 0.99),
                   "max_ms": 1000 * (lat[-1] if lat else float("nan")),
                   "order_errors": sum(s["order_errors"] for s in stats)}
            if before:
                dsum = after.get("livecart_fanout_seconds_sum", 0) - before.get(
                    "livecart_fanout_seconds_sum", 0)
                dcount = after.get("livecart_fanout_seconds_count", 0) - before.get(
                    "livecart_fanout_seconds_count", 0)
                one["server_fanout_ms"] = 1000 * dsum / max(dcount, 1)
                one["server_fanout_flushes"] = dcount
            singles.append(one)
            pooled.extend(lat)
            await asyncio.sleep(args.pin_gap)
        pooled.sort()
        res["single_pin"] = {
            "pins": singles, "p50_ms": 1000 * pct(pooled, 0.5), "p99_ms": 1000 * pct(pooled, 0.99),
            "max_ms": 1000 * (pooled[-1] if pooled else float("nan")),
            "server_fanout_ms_max": max((p.get("server_fanout_ms", float("nan")) for p in singles),
                                        default=float("nan")),
            "server_fanout_ms_median": statistics.median(
                [p.get("server_fanout_ms", float("nan")) for p in singles]) if singles else None,
            "cdf_ms": [round(1000 * x, 3) for x in pooled[:: max(1, len(pooled) // 2000)]],
        }

        # 3. sustained stream -----------------------------------------------------------
        progress.phase(f"{target.name}: stream {args.rate}/s x {args.duration}s",
                       args.duration, pids)
        await workers.call({"cmd": "reset", "exact": False})
        metrics0 = scrape(target.base) if isinstance(target, Livecart) else {}
        cpu0 = {p: cpu_seconds(p) for p in pids}
        vcpu0 = cpu_seconds(valkey_pid)
        cmd0 = await commandstats(vk)
        gcpu0 = sum(_safe_cpu(p) for p in workers.pids)
        start = time.time()
        published, last_seq, send_errors = await stream(target, args.rate, args.duration,
                                                      args.burst)
        progress.phase(f"{target.name}: drain", args.drain_timeout, pids)
        waits = await workers.call({"cmd": "wait_seq", "seq": last_seq,
                                    "timeout_s": args.drain_timeout}, args.drain_timeout + 30)
        end = time.time()
        cpu1 = {p: cpu_seconds(p) for p in pids}
        vcpu1 = cpu_seconds(valkey_pid)
        cmd1 = await commandstats(vk)
        gcpu1 = sum(_safe_cpu(p) for p in workers.pids)
        stats = await workers.call({"cmd": "collect"})
        metrics1 = scrape(target.base) if isinstance(target, Livecart) else {}
        delivered = sum(s["delivered"] for s in stats)
        hist: dict[int, int] = {}
        per_sec: dict[int, dict[int, int]] = {}
        for s in stats:
            for k, v in s["hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
            for sec, h in s["per_sec"].items():
                dst = per_sec.setdefault(int(sec), {})
                for k, v in h.items():
                    dst[int(k)] = dst.get(int(k), 0) + v
        server_cpu = sum(cpu1[p] - cpu0[p] for p in pids)
        res["stream"] = {
            "rate": args.rate, "duration_s": args.duration, "published": published,
            "send_errors": send_errors, "delivered": delivered,
            "expected": published * joined, "behind_at_end": sum(w["behind"] for w in waits),
            "order_errors": sum(s["order_errors"] for s in stats),
            "closed": _merge([w["closed"] for w in waits]),
            "elapsed_s": end - start, "msgs_per_s": delivered / max(end - start, 1e-9),
            "server_cpu_s": server_cpu,
            "server_cpu_per_node_s": [cpu1[p] - cpu0[p] for p in pids],
            "cpu_us_per_msg": 1e6 * server_cpu / max(delivered, 1),
            "generator_cpu_us_per_msg": 1e6 * (gcpu1 - gcpu0) / max(delivered, 1),
            "valkey_cpu_us_per_event": 1e6 * (vcpu1 - vcpu0) / max(published, 1),
            # minus what Valkey burns with no events (presence ticks, its own cron), as
            # measured over the settle phase; /proc counts in 10 ms ticks: rough
            "valkey_cpu_us_per_event_net": 1e6 * max(
                0.0, (vcpu1 - vcpu0) - valkey_idle_per_s * (end - start)) / max(published, 1),
            "valkey_idle_cpu_pct": 100 * valkey_idle_per_s,
            "valkey_commandstats": stats_delta(cmd0, cmd1),
            "valkey_usec_per_event": usec_total(cmd0, cmd1) / max(published, 1),
            "latency_p50_ms": hist_pct(hist, 0.5), "latency_p99_ms": hist_pct(hist, 0.99),
            "latency_max_ms": max(hist) if hist else None,
            "per_sec": {str(s - int(start)): {"count": sum(h.values()),
                                              "p50": hist_pct(h, 0.5), "p99": hist_pct(h, 0.99),
                                              "max": max(h)}
                        for s, h in sorted(per_sec.items())},
        }
        if metrics0:
            d = {k: metrics1.get(k, 0) - metrics0.get(k, 0) for k in metrics1}
            res["stream"]["server_delivered"] = d.get("livecart_events_delivered", 0)
            res["stream"]["server_flushes"] = d.get("livecart_fanout_seconds_count", 0)
            flushes = max(d.get("livecart_fanout_seconds_count", 0), 1)
            res["stream"]["server_fanout_ms_mean"] = 1000 * d.get(
                "livecart_fanout_seconds_sum", 0) / flushes
            res["stream"]["evictions"] = d.get("livecart_slow_consumer_evictions", 0)

        # 4. a ping burst, then the flash-sale storm, on the same connections; then an
        # order burst (every order succeeds) -------------------------------------------
        if storm_on and isinstance(target, Livecart):
            progress.phase(f"{target.name}: ping burst {buyers}", 20, pids)
            res["ping_burst"] = await burst(workers, buyers, '{"op":"ping"}')
            progress.phase(f"{target.name}: storm {buyers} buyers", 20, pids)
            async with Valkey(valkey_pid, vk, valkey_idle_per_s) as cost:
                res["storm"] = await storm(target, workers, buyers)
            res["storm"]["valkey"] = cost.per(buyers)
            orders = min(args.order_buyers, buyers)
            progress.phase(f"{target.name}: {orders} orders", 20, pids)
            key = f"order-{target.prefix}-{{g}}"
            body = ('{"op":"buy_now","product":"' + target.product_id
                    + '","qty":1,"idempotency_key":"' + key + '"}')
            async with Valkey(valkey_pid, vk, valkey_idle_per_s) as cost:
                res["orders"] = await burst(workers, orders, body)
            res["orders"]["valkey"] = cost.per(res["orders"]["replies"].get("ok", 0))
        if isinstance(target, Livecart) and args.quiet_pins > 0:
            progress.phase(f"{target.name}: {args.quiet_pins} pins, no viewers", 30, pids)
            async with Valkey(valkey_pid, vk, valkey_idle_per_s) as cost:
                res["quiet_pins"] = await quiet_pins(target, args.quiet_pins)
            res["quiet_pins"]["valkey"] = cost.per(res["quiet_pins"]["ok"])
        if args.chatters > 0 and isinstance(target, Livecart):
            from loadtest.chatstorm import chat_storm

            progress.phase(f"{target.name}: chat storm {args.chatters} x {args.chat_rate}/s",
                           args.chat_duration * 2 + 5, pids)
            res["chat_storm"] = await chat_storm(
                target, args.chat_viewers, args.chat_pins_only, args.chatters, args.chat_rate,
                args.chat_duration)
    finally:
        progress.phase(f"{target.name}: stopping", 5, [])
        await workers.close()
        await target.stop()
    return res


def _merge(dicts: list[dict[Any, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[str(k)] = out.get(str(k), 0) + v
    return out


def hist_pct(hist: dict[int, int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    want, seen = q * total, 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= want:
            return float(k)
    return float(max(hist))


async def stream(target: Target, rate: float, duration: float,
                 burst: int = 1) -> tuple[int, int, int]:
    """Pins at `rate`/s for `duration` s, sent `burst` at a time back to back (at most 64
    in flight); returns (sent, last seq, errors)."""
    window = asyncio.Semaphore(64)
    last = 0
    errors = 0
    count = int(rate * duration)
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        nonlocal last, errors
        try:
            reply = await target.trigger.command(target.trigger.pin_body(target.product_id), 30)
            if reply.get("ok"):
                last = max(last, int(reply["result"]["seq"]))
            else:
                errors += 1
        except Exception:
            errors += 1
        finally:
            window.release()

    t0 = time.monotonic()
    for i in range(count):
        delay = t0 + (i - i % burst) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() - t0 > duration * 3:
            break  # never run away if the server cannot keep up
        await window.acquire()
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    return len(tasks), last, errors


async def probe_storm(target: Livecart) -> bool:
    """True when this livecart build has `buy_now` and flash deals."""
    reply = await target.trigger.command({"op": "buy_now", "product": "nope", "qty": 1,
                                          "idempotency_key": "probe"})
    code = (reply.get("error") or {}).get("code")
    return bool(reply.get("ok")) or code not in ("unknown_op", None)


async def storm(target: Livecart, workers: Workers, buyers: int) -> dict[str, Any]:
    deal = {"price": 8000, "stock": 100, "per_buyer_limit": 1,
            "ends_at": int(time.time() * 1000) + 120_000}
    reply = await target.trigger.command(target.trigger.pin_body(target.storm_product, deal))
    if not reply.get("ok"):
        return {"skipped": f"deal pin refused: {reply.get('error')}"}
    await asyncio.sleep(0.3)
    key = f"storm-{target.prefix}-{{g}}"
    body = ('{"op":"buy_now","product":"' + target.storm_product
            + '","qty":1,"idempotency_key":"' + key + '"}')
    got = await burst(workers, buyers, body)
    return {"buyers": got["sent"], "replies": got["replies"],
            "orders": got["replies"].get("ok", 0), "expected_orders": 100,
            "p50_ms": got["p50_ms"], "p99_ms": got["p99_ms"], "max_ms": got["max_ms"]}


async def quiet_pins(target: Livecart, count: int) -> dict[str, Any]:
    """`count` pins (alternating two products) in the shows nobody watches, each show
    pinned one at a time by its own creator connection, all of them at once (as the many
    shows of a deployment pin): enough pins for /proc's 10 ms ticks to measure Valkey's
    CPU per pin."""
    products = [target.product_id, target.storm_product]
    shows = list(zip(target.quiet_sessions, target.quiet_triggers, strict=True))

    async def pin_in(i: int, sid: str, trigger: Trigger) -> int:
        ok = 0
        for n in range(i, count, len(shows)):
            reply = await trigger.command({"op": "pin", "session": sid,
                                           "product": products[(n // len(shows)) % 2]})
            ok += 1 if reply.get("ok") else 0
        return ok

    done = await asyncio.gather(*(pin_in(i, sid, t) for i, (sid, t) in enumerate(shows)))
    return {"sent": count, "ok": sum(done), "shows": len(shows)}


async def burst(workers: Workers, count: int, body: str) -> dict[str, Any]:
    """The first `count` viewers each send `body` at the same moment; replies by code and
    reply latency percentiles."""
    results = await workers.call({"cmd": "storm", "buyers": count, "body": body,
                                  "timeout_s": 30}, 60)
    lat = sorted(x for r in results for x in r["latency"])
    return {"sent": sum(r["sent"] for r in results),
            "replies": _merge([r["replies"] for r in results]),
            "p50_ms": 1000 * pct(lat, 0.5), "p99_ms": 1000 * pct(lat, 0.99),
            "max_ms": 1000 * (lat[-1] if lat else float("nan"))}


async def commandstats(vk: Any) -> dict[str, tuple[int, int]]:
    """`INFO commandstats` of the bench's Valkey: command → (calls, usec)."""
    if vk is None:
        return {}
    info = await vk.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in info.items()}


def stats_delta(a: dict[str, tuple[int, int]],
                b: dict[str, tuple[int, int]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, (calls, usec) in b.items():
        c0, u0 = a.get(name, (0, 0))
        if calls - c0 > 0 and name not in ("info",):
            out[name] = {"calls": calls - c0, "usec": usec - u0,
                         "usec_per_call": (usec - u0) / (calls - c0)}
    return out


SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def usec_total(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]) -> float:
    """µs Valkey spent running scripts (commandstats counts the commands a script calls
    both in the script's own line and in theirs, so only script lines are summed)."""
    return float(sum(v["usec"] for k, v in stats_delta(a, b).items() if k in SCRIPT_COMMANDS))


class Valkey:
    """Valkey's cost over a block: process CPU (net of its idle burn) and the commandstats
    delta (the time Valkey spent inside commands; scripts count in EVALSHA/FCALL)."""

    def __init__(self, pid: int, vk: Any, idle_per_s: float) -> None:
        self.pid, self.vk, self.idle_per_s = pid, vk, idle_per_s

    async def __aenter__(self) -> Valkey:
        self.cpu0, self.t0 = cpu_seconds(self.pid), time.monotonic()
        self.cmd0 = await commandstats(self.vk)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cpu1, self.t1 = cpu_seconds(self.pid), time.monotonic()
        self.cmd1 = await commandstats(self.vk)

    def per(self, count: int) -> dict[str, Any]:
        net = max(0.0, (self.cpu1 - self.cpu0) - self.idle_per_s * (self.t1 - self.t0))
        return {"count": count, "cpu_us_per": 1e6 * net / max(count, 1),
                "usec_per": usec_total(self.cmd0, self.cmd1) / max(count, 1),
                "commandstats": stats_delta(self.cmd0, self.cmd1)}


REFERENCE_LUA = """
local h = redis.call('HGETALL', KEYS[1])
for i = 1, 10 do redis.call('HINCRBY', KEYS[2], 'f' .. i, 1) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'k', 'v')
redis.call('PUBLISH', KEYS[4], 'x')
return #h
"""


# Floors: only the writes a pin / an order must make under the design's rules (every key
# in KEYS, the event in the room's history and on its channel, the order in its record and
# stream, the buyer's list and private event, the counters, the creator's ledger), with
# payloads of their real size — what no script doing that job can go below.
FLOOR_PIN_LUA = """
local s = redis.call('HMGET', KEYS[1], 'creator', 'status', 'showcase', 'seq')
local seq = (tonumber(s[4]) or 0) + 1
redis.call('HSET', KEYS[1], 'pin', ARGV[1], 'seq', seq)
redis.call('XADD', KEYS[2], 'MAXLEN', '=', 1000, seq .. '-0', 'e', ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'pins', 1)
return seq
"""
FLOOR_ORDER_LUA = """
local st = redis.call('HMGET', KEYS[1], 'status', 'req_hash')
local p = redis.call('HMGET', KEYS[3], 'price', 'stock')
redis.call('HINCRBY', KEYS[3], 'stock', -1)
redis.call('HINCRBY', KEYS[3], 'sold', 1)
redis.call('HSET', KEYS[1], 'status', 'committed', 'json', ARGV[2], 'buyer', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'order', ARGV[1], 'json', ARGV[2])
redis.call('LPUSH', KEYS[4], ARGV[1])
redis.call('PUBLISH', KEYS[5], ARGV[2])
for _, f in ipairs({'orders', 'units', 'gmv', 'commission'}) do
  redis.call('HINCRBY', KEYS[6], f, 1)
end
redis.call('RPUSH', KEYS[7], ARGV[3])
redis.call('HINCRBY', KEYS[8], 'balance', 100)
return 1
"""
PIN_EVENT = ('{"t":"pinned","seq":1,"ts":1764650000000,"d":{"product":{"id":"bench_p",'
             '"seller":"bench_seller","title":"Bench product","price":1999,"currency":"USD",'
             '"stock":100000,"commission_bps":1000,"image_url":""},"pinned_at":1764650000000,'
             '"stream_ts_ms":1000,"deal":null}}')
ORDER_JSON = ('{"id":"ord_0123456789abcdef0123","buyer":"v1","currency":"USD","total":1999,'
              '"discount":0,"lines":[{"product":"bench_p","qty":1,"unit_price":1999,'
              '"amount":1999,"discount":0,"session":"sess_0123456789ab","attribution":"direct",'
              '"commission":199,"seller":"bench_seller"}],"created_at":1764650000000,'
              '"source":"buy_now"}')


async def reference(calls: int = 5000) -> dict[str, Any]:
    """The yardstick for Valkey cost: HGETALL of a 10-field hash, 10 HINCRBY, one XADD, one
    PUBLISH in one script, `calls` times (pipelines of 100) on a fresh Valkey. Beside it,
    on the same Valkey, the floors of a pin and an order (`floors`)."""
    import redis.asyncio as aioredis

    from server.valkey.embedded import EmbeddedValkey

    fresh = EmbeddedValkey(None, persist=False)
    fresh.start()
    assert fresh.process is not None
    r = aioredis.from_url(fresh.url)
    try:
        await r.hset("ref:h", mapping={f"f{i}": "x" * 16 for i in range(10)})
        await r.hset("floor:product", mapping={"price": 1999, "stock": 10**9})
        runs = {name: (await r.script_load(source), keys, args) for name, source, keys, args in (
            ("reference", REFERENCE_LUA, ["ref:h", "ref:c", "ref:s", "ref:ch"], []),
            ("pin", FLOOR_PIN_LUA, [f"floor:{k}" for k in ("session", "history", "events",
                                                            "pins", "counters")],
             [PIN_EVENT, '{"op":"pin","at":1000,"product":"bench_p"}']),
            ("order", FLOOR_ORDER_LUA, [f"floor:{k}" for k in (
                "order", "orders", "product", "buyer_orders", "buyer_channel", "counters",
                "ledger", "balance")], ["ord_0123456789abcdef0123", ORDER_JSON,
                                        '{"order":"ord_0123456789abcdef0123","amount":199}']))}
        await asyncio.sleep(0.5)
        idle0, t0 = cpu_seconds(fresh.process.pid), time.monotonic()
        await asyncio.sleep(1.0)
        idle = (cpu_seconds(fresh.process.pid) - idle0) / (time.monotonic() - t0)
        measured: dict[str, Any] = {}
        for name, (sha, keys, args) in runs.items():
            cost = Valkey(fresh.process.pid, r, idle)
            async with cost:
                for start in range(0, calls, 100):
                    pipe = r.pipeline(transaction=False)
                    for _ in range(min(100, calls - start)):
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    await pipe.execute()
            measured[name] = cost.per(calls)
        ref = measured.pop("reference")
        ref["floors"] = measured
        # the same reference, each call's reply awaited before the next: Valkey idles
        # between calls (cold caches, a read and a write per call), as it does between
        # commands that arrive few at a time
        sha, keys, args = runs["reference"]
        async with Valkey(fresh.process.pid, r, idle) as cost:
            for _ in range(calls // 4):
                await r.evalsha(sha, len(keys), *keys, *args)
        ref["one_at_a_time"] = cost.per(calls // 4)
        return ref
    finally:
        await r.aclose()
        fresh.stop()


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform()}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from server.valkey.embedded import EmbeddedValkey

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    progress = Progress(args.progress)
    progress.start()
    import redis.asyncio as aioredis

    progress.phase("reference script on a fresh Valkey", 5, [])
    ref = await reference()
    valkey = EmbeddedValkey(None, persist=False)
    valkey.start()
    assert valkey.process is not None
    vk = aioredis.from_url(valkey.url)
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = args.servers[r % len(args.servers):] + args.servers[:r % len(args.servers)]
            this: dict[str, Any] = {}
            for name in order:
                target = make_target(name, valkey.url, logs)
                try:
                    this[name] = await run_target(target, args, valkey.process.pid, progress,
                                                  vk)
                except Exception as exc:  # report and go on with the other servers
                    this[name] = {"server": name, "error": f"{type(exc).__name__}: {exc}"}
                    print(f"\n[bench] {name} failed: {exc!r}", file=sys.stderr)
                await asyncio.sleep(1.0)
            rounds.append(this)
            print(f"\n[bench] round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        await progress.stop()
        await vk.aclose()
        valkey.stop()
    result = {"machine": machine(), "args": vars(args), "reference": ref, "rounds": rounds,
              "summary": report.summarize(rounds, ref)}
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(ALL),
                   help="comma list: livecart, livecart-2nodes, ws-broadcast, socketio-redis")
    p.add_argument("--viewers", type=int, default=1000)
    p.add_argument("--spread", type=float, default=0.0,
                   help="join spike: seconds to spread the connects over (0: all at once)")
    p.add_argument("--join-timeout", type=float, default=30.0)
    p.add_argument("--join-window", type=int, default=64,
                   help="with --spread 0: joins in flight per generator process")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--pins", type=int, default=5, help="single pins, one at a time")
    p.add_argument("--pin-gap", type=float, default=0.5)
    p.add_argument("--rate", type=float, default=10.0, help="stream: pins per second")
    p.add_argument("--duration", type=float, default=10.0, help="stream: seconds")
    p.add_argument("--burst", type=int, default=1,
                   help="stream: pins sent back to back per group (a flash-sale burst)")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--storm-buyers", type=int, default=5000,
                   help="flash-sale storm buyers (livecart; capped at --viewers; 0 skips it); "
                        "a ping burst of the same size runs first on the same connections")
    p.add_argument("--quiet-pins", type=int, default=1000,
                   help="after the bursts: this many pins in a show with no viewers "
                        "(Valkey cost per pin, without the fan-out)")
    p.add_argument("--order-buyers", type=int, default=1000,
                   help="after the storm: this many buy_now of an in-stock product at once "
                        "(Valkey cost per successful order)")
    p.add_argument("--workers", type=int, default=0, help="generator processes (default N/2500)")
    p.add_argument("--chatters", type=int, default=0,
                   help="chat storm (phase 5): chatters; 0 skips it")
    p.add_argument("--chat-viewers", type=int, default=100)
    p.add_argument("--chat-pins-only", type=int, default=50)
    p.add_argument("--chat-rate", type=float, default=100.0, help="chat messages/s in total")
    p.add_argument("--chat-duration", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", default="bench-out")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    return main_args(parse(argv))


def main_args(args: argparse.Namespace) -> int:
    raise_nofile()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    policy = asyncio.get_event_loop_policy()
    try:
        result = asyncio.run(main_async(args))
    finally:
        asyncio.set_event_loop_policy(policy)
    out = Path(args.out)
    (out / "result.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2
                                                   | orjson.OPT_NON_STR_KEYS))
    md = report.markdown(result)
    (out / "result.md").write_text(md)
    if args.plots:
        report.plots(result, out)
    print(md)
    print(f"[bench] results: {(out / 'result.json').resolve()} (raw), "
          f"{(out / 'result.md').resolve()} (tables), plots and server logs in "
          f"{out.resolve()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
