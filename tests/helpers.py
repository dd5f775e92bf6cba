"""Test helpers: an in-thread livecart server, a protocol-speaking WebSocket client, and a
parser of the frames a server sends."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import msgpack
import orjson
import uvicorn
import websockets
from websockets.frames import Frame
from websockets.streams import StreamReader

from server.app import create_app
from server.auth import issue_token
from server.runtime.cli import uvicorn_config
from server.settings import Settings

SECRET = "test-secret-0123456789abcdef-0123456789"
TOO_BIG = 18446744073709551615  # 2^64 - 1: fits msgpack and orjson, not Valkey or Lua
_prefixes = itertools.count(1)


def unique_prefix() -> str:
    return f"t{int(time.time() * 1000) % 10_000_000}x{next(_prefixes)}"


class ServerThread:
    """A real uvicorn + livecart server on a free port, in a background thread."""

    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings = settings
        self.app = create_app(settings, store_url)
        self.server = uvicorn.Server(uvicorn_config(
            self.app, settings, host="127.0.0.1", port=0, log_level="warning",
            timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def node(self) -> Any:
        return self.app.state.node

    async def on_loop(self, coro: Any) -> Any:
        """Await `coro` on the server's own loop (its store client belongs to that loop)."""
        loop = self.node.loop
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def store(self, *cmd: Any) -> Any:
        """One store command on the server's own loop."""
        return await self.on_loop(self.node.store.call(*cmd))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def token(self, sub: str, role: str = "viewer", name: str | None = None,
              ttl: int = 3600) -> str:
        return issue_token(SECRET, sub, role, ttl, name)

    def http(self, method: str, path: str, *, token: str | None = None, json: Any = None,
             **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, self.base + path, json=json, headers=headers, timeout=10,
                             **kwargs)

    def product(self, pid: str, *, seller: str = "seller1", price: int = 1000, stock: int = 100,
                commission_bps: int = 1000, title: str | None = None) -> dict[str, Any]:
        r = self.http("POST", "/api/products", token=self.token(seller, "seller"), json={
            "id": pid, "title": title or pid, "price": price, "stock": stock,
            "commission_bps": commission_bps})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def session(self, showcase: list[str], *, creator: str = "creator1", kind: str = "live",
                start: bool = True) -> str:
        tok = self.token(creator, "creator")
        r = self.http("POST", "/api/sessions", token=tok,
                      json={"kind": kind, "title": "show", "showcase": showcase})
        assert r.status_code == 201, r.text
        sid = str(r.json()["id"])
        if start:
            r = self.http("POST", f"/api/sessions/{sid}/start", token=tok)
            assert r.status_code == 200, r.text
        return sid


@dataclass
class WsClient:
    """Speaks the livecart protocol; keeps every event it receives, in order."""

    ws: Any
    msgpack: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[Any, dict[str, Any]] = field(default_factory=dict)
    frames: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    @classmethod
    async def connect(cls, url: str, *, token: str | None = None, use_msgpack: bool = False,
                      **kwargs: Any) -> WsClient:
        if token:
            url = f"{url}?token={token}"
        protocols = ["livecart.msgpack"] if use_msgpack else ["livecart.json"]
        ws = await websockets.connect(url, subprotocols=protocols, max_size=2**24,
                                      compression=None, **kwargs)
        return cls(ws, use_msgpack)

    def encode(self, obj: Any) -> str | bytes:
        return msgpack.packb(obj) if self.msgpack else orjson.dumps(obj).decode()

    def decode(self, data: str | bytes) -> Any:
        return msgpack.unpackb(data) if self.msgpack else orjson.loads(data)

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def _read_one(self, timeout: float) -> None:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        self.frames += 1
        doc = self.decode(data)
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            if "t" in item:
                self.events.append(item)
            else:
                self.replies[item.get("id")] = item

    async def reply(self, msg_id: Any, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            await self._read_one(max(0.01, deadline - time.monotonic()))
        return self.replies.pop(msg_id)

    async def request(self, op: str, _timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        await self.ws.send(self.encode({"id": msg_id, "op": op, **args}))
        return await self.reply(msg_id, _timeout)

    async def ok(self, op: str, **args: Any) -> Any:
        r = await self.request(op, **args)
        assert r["ok"], r
        return r["result"]

    async def err(self, op: str, **args: Any) -> dict[str, Any]:
        r = await self.request(op, **args)
        assert not r["ok"], r
        return dict(r["error"])

    async def wait_event(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The first received event (old or new) that matches `pred` (a type name or callable)."""
        match = (lambda e: e["t"] == pred) if isinstance(pred, str) else pred
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if match(e):
                    return e
            seen = len(self.events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no event matching {pred!r}; got {self.events[-5:]}")
            await self._read_one(remaining)

    async def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                await self._read_one(remaining)
            except TimeoutError:
                return

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events if "seq" in e]

    async def close(self) -> None:
        await self.ws.close()


async def close_code(client: WsClient, timeout: float = 5.0) -> int | None:
    """Read (and keep) whatever arrives until the server closes; the close code it sent."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client._read_one(max(0.01, deadline - time.monotonic()))
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


async def joined_viewer(server: ServerThread, sub: str, sid: str, **connect: Any) -> WsClient:
    """A viewer `sub` (display name: `sub` titled) connected to `server` and joined to
    session `sid`; `connect` goes to `WsClient.connect` (e.g. `use_msgpack=True`)."""
    c = await WsClient.connect(server.ws_url, token=server.token(sub, name=sub.title()),
                               **connect)
    await c.ok("join", session=sid)
    return c


def parse_frames(data: bytes) -> list[Frame]:
    """Parse server (unmasked) frames with the websockets library's own parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen: Generator[None, None, Frame] = Frame.parse(reader.read_exact, mask=False,
                                                        max_size=None)
        try:
            next(gen)
        except StopIteration as stop:
            frames.append(stop.value)
        else:  # pragma: no cover
            raise AssertionError("incomplete frame")
    return frames


class FakeSink:
    """What a `Client` writes to in place of a socket: keeps the frames written and the closes."""

    def __init__(self, backlog: int = 0) -> None:
        self.written: list[bytes] = []
        self.closed: list[tuple[int, str]] = []
        self.backlog = backlog

    @property
    def open(self) -> bool:
        return not self.closed

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def buffered(self) -> int:
        return self.backlog + sum(map(len, self.written))

    def close_now(self, code: int, reason: str = "") -> None:
        self.closed.append((code, reason))
