"""The chat-storm phase: does chat slow the room? `python -m loadtest.chatstorm` or
`python -m loadtest.bench --chatters M ...` (phase 5 on livecart targets).

N chat viewers and Q pins-only viewers (`join {chat: false}`) watch one live session;
M signed-in chatters send R chat messages per second in total for D seconds; meanwhile the
creator pins every `pin_every` seconds. Pins are also measured before the storm (same
connections, same pin rate, no chat), so the pin latency during the storm is a ratio
measured side by side in one run. Reported: chat messages sent / accepted / refused,
delivered chat messages per second (chat events parsed by the chat viewers), what the
pins-only viewers received of the chat (must be 0), and pin latency p50/p99/max (viewer
receive time minus the time the creator sent the pin) for chat and pins-only viewers,
quiet and during the storm.

Loopback only; every loop is bounded in count and time; every connection is closed in
`finally`. The generator runs in this process (asyncio + websockets), so keep N·R small
enough for one core (the defaults are).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from loadtest.targets import Livecart


@dataclass
class Viewer:
    ws: ClientConnection
    chat: bool
    chats: int = 0
    pins: dict[int, float] = field(default_factory=dict)  # seq -> receive time
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for data in self.ws:
                now = time.time()
                doc = orjson.loads(data)
                for ev in doc if isinstance(doc, list) else [doc]:
                    t = ev.get("t")
                    if t == "chat":
                        self.chats += 1
                    elif t == "pinned":
                        self.pins[int(ev["seq"])] = now


async def _join(url: str, session: str, chat: bool, token: str | None = None) -> ClientConnection:
    ws = await connect(url + (f"?token={token}" if token else ""), compression=None,
                       max_size=2**24, open_timeout=20)
    await ws.send(orjson.dumps({"id": 1, "op": "join", "session": session, "chat": chat}))
    reply = orjson.loads(await asyncio.wait_for(ws.recv(), 20))
    assert reply.get("ok"), reply
    return ws


async def _chatter(ws: ClientConnection, rate: float, until: float, sent: list[int],
                   replies: dict[str, int], name: str) -> None:
    """Send at `rate` msgs/s until `until`, counting replies by outcome."""
    ids = itertools.count(2)
    interval = 1.0 / rate
    next_at = time.monotonic()

    async def read() -> None:
        with contextlib.suppress(Exception):
            async for data in ws:
                doc = orjson.loads(data)
                for item in doc if isinstance(doc, list) else [doc]:
                    if "ok" in item:
                        key = "ok" if item["ok"] else item["error"]["code"]
                        replies[key] = replies.get(key, 0) + 1

    reader = asyncio.ensure_future(read())
    try:
        n = 0
        while time.monotonic() < until:
            await ws.send(orjson.dumps({"id": next(ids), "op": "chat",
                                        "text": f"{name} says hi #{n}"}))
            sent[0] += 1
            n += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.5)  # the last replies
    finally:
        reader.cancel()


def _lat(viewers: list[Viewer], sent: dict[int, float]) -> dict[str, Any]:
    lat = sorted(1000 * (v.pins[s] - t) for v in viewers for s, t in sent.items() if s in v.pins)
    expected = len(viewers) * len(sent)
    if not lat:
        return {"received": 0, "expected": expected}
    return {"received": len(lat), "expected": expected,
            "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
            "max_ms": round(lat[-1], 2)}


async def _pins(target: Livecart, count: int, every_s: float) -> dict[int, float]:
    sent: dict[int, float] = {}
    for _ in range(count):
        t = time.time()
        reply = await target.trigger.command(target.trigger.pin_body(target.product_id))
        sent[int(reply["result"]["seq"])] = t
        await asyncio.sleep(every_s)
    return sent


async def chat_storm(target: Livecart, viewers: int, quiet: int, chatters: int, rate: float,
                     duration: float, pin_every: float = 0.5) -> dict[str, Any]:
    """Run the phase against a started livecart target (its trigger open and joined)."""
    host, port = target.endpoints[0]
    url = f"ws://{host}:{port}/ws"
    watchers: list[Viewer] = []
    talkers: list[ClientConnection] = []
    try:
        for i in range(viewers + quiet):
            chat = i < viewers
            ws = await _join(url, target.session, chat,
                             target.token(f"storm_viewer{i}", "viewer") if i % 2 else None)
            v = Viewer(ws, chat)
            v.task = asyncio.ensure_future(v.read())
            watchers.append(v)
        for i in range(chatters):
            talkers.append(await _join(url, target.session, True,
                                       target.token(f"storm_chatter{i}", "viewer")))
        pins = max(1, int(duration / pin_every))
        quiet_sent = await _pins(target, pins, pin_every)
        await asyncio.sleep(1.0)
        before = sum(v.chats for v in watchers if v.chat)
        sent = [0]
        replies: dict[str, int] = {}
        start = time.monotonic()
        until = start + duration
        storm = asyncio.gather(*(_chatter(ws, rate / chatters, until, sent, replies, f"c{i}")
                                 for i, ws in enumerate(talkers)))
        storm_sent = await _pins(target, pins, pin_every)
        await storm
        elapsed = time.monotonic() - start
        await asyncio.sleep(1.0)  # the last deliveries
        chat_viewers = [v for v in watchers if v.chat]
        quiet_viewers = [v for v in watchers if not v.chat]
        delivered = sum(v.chats for v in chat_viewers) - before
        accepted = replies.get("ok", 0)
        return {
            "viewers": viewers, "pins_only_viewers": quiet, "chatters": chatters,
            "rate_per_s": rate, "duration_s": duration, "pin_every_s": pin_every,
            "chat_sent": sent[0], "chat_replies": replies,
            "chat_delivered": delivered, "chat_expected": accepted * viewers,
            "chat_delivered_per_s": round(delivered / elapsed, 1),
            "pins_only_chat_received": sum(v.chats for v in quiet_viewers),
            "pin_quiet": {"chat_viewers": _lat(chat_viewers, quiet_sent),
                          "pins_only": _lat(quiet_viewers, quiet_sent)},
            "pin_storm": {"chat_viewers": _lat(chat_viewers, storm_sent),
                          "pins_only": _lat(quiet_viewers, storm_sent)},
        }
    finally:
        for v in watchers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(v.ws.close(), 2)
            if v.task is not None:
                v.task.cancel()
        for ws in talkers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from server.valkey.embedded import EmbeddedValkey

    valkey = EmbeddedValkey(None, persist=False)
    valkey.start()
    logs = Path(args.out)
    logs.mkdir(parents=True, exist_ok=True)
    target = Livecart(valkey.url, logs, args.nodes)
    try:
        await asyncio.to_thread(target.start)
        await target.open_trigger()
        result = await chat_storm(target, args.viewers, args.pins_only, args.chatters,
                                  args.rate, args.duration, args.pin_every)
    finally:
        await target.stop()
        valkey.stop()
    return {"server": target.name, **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.chatstorm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=100, help="chat viewers")
    p.add_argument("--pins-only", type=int, default=50, help="viewers with chat: false")
    p.add_argument("--chatters", type=int, default=20)
    p.add_argument("--rate", type=float, default=100.0, help="chat messages/s in total")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--pin-every", type=float, default=0.5)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--out", default="bench-out/chatstorm")
    args = p.parse_args(argv)
    if args.chatters <= 0 or args.rate <= 0 or args.duration <= 0 or args.duration > 600:
        p.error("--chatters and --rate must be positive, --duration in (0, 600]")
    result = asyncio.run(main_async(args))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
