"""The servers under test, each with its own trigger (the connection that pins).

`livecart` (N node processes on one Valkey), `ws` (bare websockets broadcast) and `sio`
(python-socketio + AsyncRedisManager on the same Valkey). All on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from loadtest.procs import Proc, http, livecart_bin, python

QUIET_SHOWS = 8  # shows nobody watches, for the Valkey cost of a pin (bench.quiet_pins)
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"
_runs = itertools.count(1)

PRODUCT = {"title": "Cloud Runner sneakers, limited colourway", "price": 8900, "stock": 100000,
           "commission_bps": 1000, "image_url": "https://cdn.example.com/img/sneakers-1.webp"}


class Trigger:
    """The creator's connection: sends `pin` commands and matches replies by id."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.ws: ClientConnection | None = None
        self.ids = itertools.count(2)
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def open(self, url: str, join: str | None = None) -> None:
        self.ws = await connect(url, compression=None, max_size=2**22, open_timeout=10,
                                subprotocols=None)
        if self.dialect == "sio":
            opened = await asyncio.wait_for(self.ws.recv(), 10)
            assert str(opened).startswith("0{"), opened
            await self.ws.send("40")
            ack = await asyncio.wait_for(self.ws.recv(), 10)
            assert str(ack).startswith("40"), ack
        self.reader = asyncio.ensure_future(self._read())
        if join is not None:
            reply = await self.command({"op": "join", "session": join})
            assert reply["ok"], reply

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                text = raw if isinstance(raw, str) else raw.decode()
                if self.dialect == "sio":
                    if text == "2":
                        await self.ws.send("3")
                    elif text.startswith("43"):
                        i = text.index("[")
                        fut = self.waiting.pop(int(text[2:i]), None)
                        if fut is not None and not fut.done():
                            fut.set_result({"ok": True, "result": orjson.loads(text[i:])[0]})
                    continue
                if text.startswith('{"id":'):
                    doc = orjson.loads(text)
                    fut = self.waiting.pop(doc.get("id"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(doc)
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("trigger connection closed"))

    async def command(self, body: dict[str, Any], timeout_s: float = 15.0) -> dict[str, Any]:
        assert self.ws is not None
        rid = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        if self.dialect == "sio":
            op = body.pop("op")
            await self.ws.send(f"42{rid}" + orjson.dumps([op, body]).decode())
        else:
            await self.ws.send(orjson.dumps({"id": rid, **body}).decode())
        return await asyncio.wait_for(fut, timeout_s)  # type: ignore[no-any-return]

    def pin_body(self, product: str, deal: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"op": "pin", "product": product}
        if deal is not None:
            body["deal"] = deal
        return body

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


class Target:
    name = "?"
    dialect = "?"
    path = "/ws"

    def __init__(self, valkey_url: str, log_dir: Path) -> None:
        self.valkey_url = valkey_url
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self.session = ""
        self.product_id = "p"
        self.trigger = Trigger(self.dialect)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(p.host, p.port) for p in self.procs]

    def start(self) -> None:
        raise NotImplementedError

    async def open_trigger(self) -> None:
        host, port = self.endpoints[0]
        await self.trigger.open(f"ws://{host}:{port}{self.path}")

    def viewer_tokens(self, count: int) -> dict[str, str]:
        return {}

    async def stop(self) -> None:
        await self.trigger.close()
        for p in self.procs:
            p.stop()


def _product_json(pid: str) -> bytes:
    return orjson.dumps({"id": pid, "seller": "bench_seller", **PRODUCT, "currency": "USD"})


class WsPeer(Target):
    name = "ws-broadcast"
    dialect = "ws"
    path = "/"

    def start(self) -> None:
        argv = [python(), "-m", "loadtest.peers.ws_broadcast",
                "--product", _product_json("bench_p").decode()]
        self.procs = [Proc("peer-ws", argv, {}, self.log_dir).ready()]
        self.product_id = "bench_p"


class SioPeer(Target):
    name = "socketio-redis"
    dialect = "sio"
    path = "/socket.io/?EIO=4&transport=websocket"

    def start(self) -> None:
        argv = [python(), "-m", "loadtest.peers.sio_redis", "--redis-url", self.valkey_url,
                "--product", _product_json("bench_p").decode()]
        self.procs = [Proc("peer-sio", argv, {}, self.log_dir).ready()]
        self.product_id = "bench_p"


class Livecart(Target):
    dialect = "livecart"
    path = "/ws"

    def __init__(self, valkey_url: str, log_dir: Path, nodes: int = 1,
                 workers: int = 1) -> None:
        super().__init__(valkey_url, log_dir)
        self.nodes = nodes
        self.workers = workers  # `serve --workers N`: one port, N processes
        self.name = "livecart" if nodes == 1 else f"livecart-{nodes}nodes"
        if workers > 1:
            self.name = f"livecart-w{workers}"
        self.prefix = f"bench{int(time.time()) % 100000}r{next(_runs)}"
        self.storm_product = ""
        self.quiet_sessions: list[str] = []
        self.quiet_triggers: list[Trigger] = []

    def token(self, sub: str, role: str) -> str:
        from server.auth import issue_token

        return issue_token(SECRET, sub, role, 6 * 3600)

    def start(self) -> None:
        env = {"LIVECART_REDIS_URL": self.valkey_url, "LIVECART_SECRET": SECRET,
               "LIVECART_KEY_PREFIX": self.prefix, "LIVECART_RATE_PER_S": "100000",
               "LIVECART_RATE_BURST": "100000", "LIVECART_LOG_LEVEL": "warning",
               # the chat storm measures fan-out, not the per-user chat policy
               "LIVECART_CHAT_RATE_PER_S": "100000", "LIVECART_CHAT_RATE_BURST": "100000",
               # no ffmpeg demo stream: its CPU is not the server's (and its one-off VOD
               # encoder exits mid-run)
               "LIVECART_DEMO_STREAM": "0"}
        self.procs = [
            Proc(f"livecart-{i}", [livecart_bin(), "serve", "--demo", "--port", "0",
                                   "--workers", str(self.workers)],
                 {**env, "LIVECART_NODE_ID": f"bench-node-{i}"}, self.log_dir)
            for i in range(self.nodes)
        ]
        for p in self.procs:
            p.ready()
        base = self.base
        seller = self.token("bench_seller", "seller")
        creator = self.token("bench_creator", "creator")
        product = http("POST", base + "/api/products", {"id": f"{self.prefix}_p", **PRODUCT},
                       seller)
        storm = http("POST", base + "/api/products",
                     {"id": f"{self.prefix}_deal", **PRODUCT, "stock": 1000}, seller)
        self.product_id, self.storm_product = product["id"], storm["id"]
        sess = http("POST", base + "/api/sessions",
                    {"kind": "live", "title": "bench", "showcase": [self.product_id,
                                                                    self.storm_product]},
                    creator)
        self.session = sess["id"]
        http("POST", f"{base}/api/sessions/{self.session}/start", {}, creator)
        # live shows nobody watches, each pinned by its own creator connection: Valkey's
        # cost of a pin without its fan-out, with pins arriving together as on a deployment
        for i in range(QUIET_SHOWS):
            quiet = http("POST", base + "/api/sessions",
                         {"kind": "live", "title": f"bench (no viewers) {i}",
                          "showcase": [self.product_id, self.storm_product]}, creator)
            http("POST", f"{base}/api/sessions/{quiet['id']}/start", {}, creator)
            self.quiet_sessions.append(quiet["id"])
        self.creator_token = creator

    @property
    def pids(self) -> list[int]:
        """Every node process (with --workers: the supervisor's children too)."""
        return [pid for p in self.procs for pid in (p.pid, *children(p.pid))]

    @property
    def base(self) -> str:
        host, port = self.endpoints[0]
        return f"http://{host}:{port}"

    async def open_trigger(self) -> None:
        host, port = self.endpoints[0]
        url = f"ws://{host}:{port}/ws?token={self.creator_token}"
        await self.trigger.open(url, join=self.session)
        self.quiet_triggers = [Trigger(self.dialect) for _ in self.quiet_sessions]
        await asyncio.gather(*(t.open(url) for t in self.quiet_triggers))

    async def stop(self) -> None:
        await asyncio.gather(*(t.close() for t in self.quiet_triggers))
        await super().stop()

    def viewer_tokens(self, count: int) -> dict[str, str]:
        return {str(g): self.token(f"buyer{g}", "viewer") for g in range(count)}


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def make_target(name: str, valkey_url: str, log_dir: Path) -> Target:
    if name == "livecart":
        return Livecart(valkey_url, log_dir, 1)
    if name.startswith("livecart-w") and name[len("livecart-w"):].isdigit():
        return Livecart(valkey_url, log_dir, 1, int(name[len("livecart-w"):]))
    if name.startswith("livecart-") and name.endswith("nodes"):
        return Livecart(valkey_url, log_dir, int(name[len("livecart-"):-len("nodes")]))
    if name == "ws-broadcast":
        return WsPeer(valkey_url, log_dir)
    if name == "socketio-redis":
        return SioPeer(valkey_url, log_dir)
    raise SystemExit(f"unknown server {name!r}: livecart, livecart-2nodes, livecart-w2, "
                     "ws-broadcast, socketio-redis")
