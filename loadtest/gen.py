"""The load generator's worker process: thousands of minimal WebSocket viewers on one loop.

Cheap per message on purpose (the generator shares the box with the server): a raw
asyncio Protocol, hand-rolled RFC 6455 framing (client frames masked with a zero key),
no JSON decoding of events. Each event is found by its `"seq":` marker (a batch frame
is a JSON array: every marker is one event), its `seq` is checked against the
connection's last one (gap-free, in order) and its `"ts":` read for latency. Only
events that pass that check are counted as delivered.

Three dialects share the code: `livecart` and `ws` (the bare websockets peer) speak
`{"id","op",...}` commands; `sio` speaks Engine.IO 4 / Socket.IO 5 text packets.

The worker is driven by the bench process over a multiprocessing Pipe: every command
is a dict with "cmd", every reply a dict. Every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections import Counter, defaultdict
from multiprocessing.connection import Connection
from typing import Any

import orjson

SEQ = b'"seq":'
TS = b',"ts":'


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame with an all-zero mask key (payload bytes unchanged)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class Stats:
    """What one worker saw since the last reset. Latencies are counted in one flat
    dict keyed `second * 100_000 + latency_ms` (one C-level increment per event)."""

    def __init__(self) -> None:
        self.delivered = 0
        self.order_errors = 0
        self.exact = False
        self.exact_times: dict[int, list[float]] = defaultdict(list)
        self.keyed: defaultdict[int, int] = defaultdict(int)

    def snapshot(self) -> dict[str, Any]:
        hist: Counter[int] = Counter()
        per_sec: dict[int, Counter[int]] = defaultdict(Counter)
        for key, n in self.keyed.items():
            sec, lat = divmod(key, 100_000)
            hist[lat] += n
            per_sec[sec][lat] += n
        return {
            "delivered": self.delivered, "order_errors": self.order_errors,
            "exact_times": dict(self.exact_times), "hist": dict(hist),
            "per_sec": {s: dict(c) for s, c in per_sec.items()},
        }


class Viewer(asyncio.Protocol):
    """One viewer connection. All state is plain attributes: no per-message allocation
    beyond the payload slices."""

    def __init__(self, worker: Worker, index: int, path: str, host: str, port: int,
                 token: str | None) -> None:
        self.w = worker
        self.index = index
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            + ("Sec-WebSocket-Protocol: livecart.json\r\n" if worker.dialect == "livecart" else "")
            + "\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.snap_seq: int | None = None
        self.last = 0
        self.early: list[int] = []
        self.started = 0.0
        self.joined_at = 0.0
        self.closed_code: int | None = None
        self.lost = False
        self.next_id = 2
        self.pending: dict[int, float] = {}  # command id -> sent at (buy_now)
        self.token = token
        self.sio = worker.dialect == "sio"
        self.in_window = False

    # connection ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.w.on_lost(self)

    def send_text(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(payload))

    # frames ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.w.on_failed(self, "handshake " + data[:40].decode(errors="replace"))
                if self.transport is not None:
                    self.transport.close()
                return
            self.upgraded = True
            self.on_open()
            data = data[end + 4:]
        now = time.time()
        n = len(data)
        if n >= 2 and data[0] == 0x81:
            b1 = data[1]
            if b1 < 126 and n == b1 + 2:  # one complete small text frame: the common case
                self.on_message(data[2:], now)
                return
            if b1 == 126 and n >= 4 and n == int.from_bytes(data[2:4], "big") + 4:
                self.on_message(data[4:], now)
                return
        pos = 0
        while n - pos >= 2:
            b1 = data[pos + 1] & 0x7F
            if b1 < 126:
                start = pos + 2
            elif b1 == 126:
                if n - pos < 4:
                    break
                start = pos + 4
                b1 = int.from_bytes(data[pos + 2:pos + 4], "big")
            else:
                if n - pos < 10:
                    break
                start = pos + 10
                b1 = int.from_bytes(data[pos + 2:pos + 10], "big")
            end = start + b1
            if end > n:
                break
            opcode = data[pos] & 0x0F
            if opcode == 1 or opcode == 2:
                self.on_message(data[start:end], now)
            elif opcode == 9:
                if self.transport is not None:
                    self.transport.write(client_frame(data[start:end], 0xA))
            elif opcode == 8:
                self.closed_code = int.from_bytes(data[start:start + 2], "big") if b1 >= 2 else 1005
                self.w.on_closed(self)
                if self.transport is not None:
                    self.transport.write(client_frame(data[start:start + 2], 0x8))
                    self.transport.close()
                return
            pos = end
        if pos < n:
            self.buf = data[pos:]

    # dialects -------------------------------------------------------------------

    def on_open(self) -> None:
        d = self.w.dialect
        if d == "sio":
            return  # wait for the Engine.IO open packet
        if d == "livecart":
            self.send_text(b'{"id":1,"op":"join","session":"' + self.w.session.encode() + b'"}')
        else:
            self.send_text(b'{"id":1,"op":"join"}')

    def on_message(self, p: bytes, now: float) -> None:
        if self.sio:
            head = p[:2]
            if head == b"42":
                self.on_events(p, now)
            elif head == b"43":
                self.on_reply(p, now)
            elif p == b"2":
                self.send_text(b"3")
            elif head == b"0{":
                self.send_text(b"40")
            elif head == b"40":
                self.send_text(b'421["join"]')
            elif head == b"44":
                self.w.on_failed(self, "sio connect_error")
            return
        if p[:6] == b'{"id":':
            self.on_reply(p, now)
        elif p[:15] != b'{"t":"counters"':
            self.on_events(p, now)

    def on_reply(self, p: bytes, now: float) -> None:
        if self.w.dialect == "sio":
            # 43<id>[{...}]
            i = p.find(b"[")
            rid = int(p[2:i])
            body = orjson.loads(p[i:])[0]
            ok, result = True, body
        else:
            doc = orjson.loads(p)
            rid, ok = doc.get("id"), doc.get("ok")
            result = doc.get("result") if ok else doc.get("error")
        if rid == 1:
            if not ok:
                self.w.on_failed(self, f"join: {result.get('code')}")
                return
            self.snap_seq = int(result["seq"])
            self.last = self.snap_seq
            self.joined_at = now
            early, self.early = self.early, []
            for seq in early:
                self.check(seq)
            self.w.on_joined(self)
        else:
            sent = self.pending.pop(rid, None)
            if sent is not None:
                code = "ok" if ok else str(result.get("code"))
                self.w.on_command_reply(code, now - sent)

    def on_events(self, p: bytes, now: float) -> None:
        stats = self.w.stats
        find = p.find
        pos = find(SEQ)
        while pos >= 0:
            comma = find(b",", pos + 6)
            seq = int(p[pos + 6:comma])
            if p.startswith(TS, comma):
                tend = find(b",", comma + 6)
                ts = int(p[comma + 6:tend])
            else:
                tend, ts = comma, 0
            if self.snap_seq is None:
                self.early.append(seq)
            elif seq > self.snap_seq:
                if seq == self.last + 1:
                    stats.delivered += 1
                    if stats.exact:
                        stats.exact_times[seq].append(now)
                    else:
                        lat = int(now * 1000.0 - ts)
                        lat = lat if 0 <= lat < 99_999 else 99_999
                        stats.keyed[int(now) * 100_000 + lat] += 1
                else:
                    stats.order_errors += 1
                self.last = seq
            pos = find(SEQ, tend)

    def check(self, seq: int) -> None:
        if self.snap_seq is not None and seq > self.snap_seq:
            if seq == self.last + 1:
                self.w.stats.delivered += 1
            else:
                self.w.stats.order_errors += 1
            self.last = seq

    def command(self, body: bytes) -> None:
        """Send a command with a fresh id; its reply is counted by code and latency."""
        rid = self.next_id
        self.next_id += 1
        self.pending[rid] = time.time()
        if self.w.dialect == "sio":
            self.send_text(b"42" + str(rid).encode() + body)
        else:
            self.send_text(b'{"id":' + str(rid).encode() + b"," + body[1:])


class Worker:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.index: int = cfg["index"]
        self.workers: int = cfg["workers"]
        self.dialect: str = cfg["dialect"]
        self.session: str = cfg.get("session", "")
        self.targets: list[tuple[str, int]] = [tuple(t) for t in cfg["targets"]]  # type: ignore[misc]
        self.path: str = cfg["path"]
        self.tokens: dict[int, str] = {}
        self.viewers: list[Viewer] = []
        self.stats = Stats()
        self.joined = 0
        self.failed: Counter[str] = Counter()
        self.closed: Counter[int] = Counter()
        self.lost_count = 0
        self.join_latency: list[float] = []
        self.last_join = 0.0
        self.replies: Counter[str] = Counter()
        self.reply_latency: list[float] = []
        self._wakeup = asyncio.Event()
        self.window: asyncio.Semaphore | None = None

    # callbacks from viewers -------------------------------------------------------

    def _settled(self, v: Viewer) -> None:
        """v's join attempt ended (joined, failed or lost): free its window slot."""
        if v.in_window and self.window is not None:
            v.in_window = False
            self.window.release()

    def on_joined(self, v: Viewer) -> None:
        self._settled(v)
        self.joined += 1
        self.join_latency.append(v.joined_at - v.started)
        self.last_join = max(self.last_join, v.joined_at)
        self._wakeup.set()

    def on_failed(self, v: Viewer, why: str) -> None:
        self._settled(v)
        self.failed[why[:60]] += 1
        self._wakeup.set()

    def on_closed(self, v: Viewer) -> None:
        self.closed[v.closed_code or 0] += 1

    def on_lost(self, v: Viewer) -> None:
        self._settled(v)
        self.lost_count += 1
        self._wakeup.set()

    def on_command_reply(self, code: str, seconds: float) -> None:
        self.replies[code] += 1
        self.reply_latency.append(seconds)
        self._wakeup.set()

    # commands -------------------------------------------------------------------

    async def connect(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Open this worker's share of `total` viewers, spread evenly over `spread_s`
        starting at wall time `t0`; return once all joined or `timeout_s` passed. With
        `spread_s` 0 they connect as fast as they can: at most `window` joins in flight
        per worker (a new one starts as soon as one gets its snapshot), so the server's
        join rate is measured rather than its listen queue overflowing."""
        total, spread, t0 = msg["total"], msg["spread_s"], msg["t0"]
        window = int(msg.get("window") or 0)
        self.window = asyncio.Semaphore(window) if spread <= 0 and window > 0 else None
        tokens: dict[str, str] = msg.get("tokens", {})
        loop = asyncio.get_running_loop()
        mine = list(range(self.index, total, self.workers))
        deadline = time.monotonic() + spread + msg["timeout_s"]
        pending: set[asyncio.Task[Any]] = set()

        async def open_one(g: int) -> None:
            host, port = self.targets[g % len(self.targets)]
            token = tokens.get(str(g))
            path = self.path + (("&" if "?" in self.path else "?") + "token=" + token
                                if token else "")
            v = Viewer(self, g, path, host, port, token)
            if self.window is not None:
                await self.window.acquire()
                v.in_window = True
            v.started = time.time()
            self.viewers.append(v)
            try:
                await asyncio.wait_for(loop.create_connection(lambda: v, host, port), 10)
            except (OSError, TimeoutError) as exc:
                self._settled(v)
                self.failed[f"connect: {type(exc).__name__}"] += 1
                self._wakeup.set()

        for k, g in enumerate(mine):
            at = t0 + spread * g / max(total, 1)
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(open_one(g))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if k % 50 == 0 and time.monotonic() > deadline:
                break
        while time.monotonic() < deadline:
            if self.joined + sum(self.failed.values()) >= len(mine):
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 0.25)
        lat = sorted(self.join_latency)
        return {"wanted": len(mine), "joined": self.joined, "failed": dict(self.failed),
                "closed": dict(self.closed), "last_join": self.last_join, "join_latency": lat}

    async def wait_seq(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Wait until every joined viewer has seen `seq` (or the timeout); report laggards."""
        target, deadline = msg["seq"], time.monotonic() + msg["timeout_s"]
        while time.monotonic() < deadline:
            behind = sum(1 for v in self.viewers
                         if v.snap_seq is not None and not v.lost and v.last < target)
            if behind == 0:
                break
            await asyncio.sleep(0.02)
        behind = sum(1 for v in self.viewers
                     if v.snap_seq is not None and not v.lost and v.last < target)
        return {"behind": behind, "lost": self.lost_count, "closed": dict(self.closed)}

    async def storm(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The first `buyers` viewers (global index) each send one command at once."""
        body: str = msg["body"]
        buyers = [v for v in self.viewers if v.index < msg["buyers"] and v.snap_seq is not None]
        self.replies.clear()
        self.reply_latency = []
        for v in buyers:
            v.command(body.replace("{g}", str(v.index)).encode())
        deadline = time.monotonic() + msg["timeout_s"]
        while time.monotonic() < deadline and sum(self.replies.values()) < len(buyers):
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 0.25)
        return {"sent": len(buyers), "replies": dict(self.replies),
                "latency": sorted(self.reply_latency)}

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd = msg["cmd"]
        if cmd == "connect":
            return await self.connect(msg)
        if cmd == "reset":
            self.stats = Stats()
            self.stats.exact = bool(msg.get("exact"))
            return {}
        if cmd == "collect":
            return self.stats.snapshot()
        if cmd == "wait_seq":
            return await self.wait_seq(msg)
        if cmd == "storm":
            return await self.storm(msg)
        if cmd == "close":
            for v in self.viewers:
                if v.transport is not None:
                    v.transport.abort()
            await asyncio.sleep(0.05)
            return {}
        raise ValueError(cmd)


def worker_main(cfg: dict[str, Any], conn: Connection) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    raise_nofile()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    parent = os.getppid()

    async def main() -> None:
        worker = Worker(cfg)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def on_command() -> None:
            os.set_blocking(conn.fileno(), True)  # uvloop's add_reader made it non-blocking
            inbox.put_nowait(conn.recv())

        loop.add_reader(conn.fileno(), on_command)
        while True:
            try:
                msg = await asyncio.wait_for(inbox.get(), 5.0)
            except TimeoutError:
                if os.getppid() != parent:
                    return  # the bench died: never linger
                continue
            if msg is None:
                return
            result = await worker.handle(msg)
            os.set_blocking(conn.fileno(), True)
            conn.send(result)
            if msg["cmd"] == "close":
                return

    with contextlib.suppress(KeyboardInterrupt, EOFError, BrokenPipeError):
        asyncio.run(main())
