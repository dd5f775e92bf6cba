"""The Valkey/Redis connection (one server or a Redis/Valkey Cluster) and the Lua scripts.

On a cluster (`LIVECART_REDIS_CLUSTER=1`, or detected from `INFO cluster`) the client is
redis-py's `RedisCluster`: each command and each script call goes to the shard owning its
keys' slot, which is why every script call passes keys of one hash tag only (keys.py).
Scripts live in `server/valkey/lua/*.lua`, each with a `-- KEYS[n]` / `-- ARGV[n]` header. A
line `--!include lib/name.lua` pastes a shared library file in place (at load time, so
each script is still one atomic EVALSHA). Scripts are loaded once and run by SHA; a
`NOSCRIPT` reply (the server restarted) reloads and retries once.

A script reports a domain failure as an error reply `LC <code> <message>`; `run()`
turns it into `ApiError`. Connection failures become `unavailable`; any other error reply
(a command or script the store rejected) is a bug and becomes `internal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.errors import ApiError, ErrorCode, internal, new_request_id, unavailable
from server.observe.metrics import Reading

log = logging.getLogger("livecart.store")

LUA_DIR = Path(__file__).parent / "lua"
_INCLUDE = re.compile(r"^--!include (\S+)\s*$", re.MULTILINE)

# What "the store is unreachable" looks like: a connection or timeout error, or a cluster
# whose slot has no reachable master right now.
StoreDown = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError,
             ClusterDownError, TryAgainError, SlotNotCoveredError)
PIPELINE_MAX = 256
CLUSTER_FORMING_S = 30.0  # how long open() waits for a cluster's slots to be assigned
PIPELINE_TIMEOUTS = 3  # a shared pipeline gets this many store timeouts to answer
# redis-py's cluster client fails (and drops in-use connections) when a node runs out of
# connections instead of waiting for one, so on a cluster at most this many commands or
# pipelines are in flight at once (each takes one connection per node it touches).
CLUSTER_IN_FLIGHT = 96
CLUSTER_MAX_CONNECTIONS = 128


def _broken_connection(exc: BaseException) -> bool:
    """redis-py's asyncio cluster client, while a master is down, can fail a command with
    AttributeError/RuntimeError from a connection that another task's error handling just
    closed. Raised from inside redis-py's connection code, those mean "unreachable"."""
    if not isinstance(exc, AttributeError | RuntimeError):
        return False
    tb = exc.__traceback__  # from redis-py's code, even when the last frame is uvloop's
    while tb is not None:
        if "/redis/" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


# Error replies that mean "the store cannot serve this now" (out of memory, a replica
# after failover, a long script): an outage, retryable, not our bug. redis-py turns some
# into their own classes (and drops the prefix), the others keep it in the text.
STORE_BUSY_ERRORS = (OutOfMemoryError, ReadOnlyError, MasterDownError, TryAgainError,
                     ClusterDownError)
STORE_BUSY = frozenset({"BUSY", "NOREPLICAS", "MISCONF"})


def load_source(name: str, included: frozenset[str] = frozenset()) -> str:
    """A script's text with its `--!include` lines replaced (recursively, each file once)."""
    text = (LUA_DIR / name).read_text()

    def include(match: re.Match[str]) -> str:
        lib = match.group(1)
        return "" if lib in included else load_source(lib, included | {lib, name})

    return _INCLUDE.sub(include, text)


class Script:
    """One Lua file, run by EVALSHA."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = load_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


# a queued pipeline entry: the command, (script, keys, args) for a script, its future
_Queued = tuple[Sequence[Any], "tuple[Script, Sequence[str], Sequence[Any]] | None",
                "asyncio.Future[Any]"]


class Store:
    """Commands, scripts and error mapping over one redis-py asyncio client."""

    def __init__(self, url: str, timeout_s: float = 2.0, cluster: bool | None = False,
                 decode: bool = False) -> None:
        """`cluster`: True for a Redis/Valkey Cluster, False for one server, None to ask
        the server (`INFO cluster`) in `open()`. `decode`: replies as str (tools), not
        bytes (the node)."""
        self.url = url
        self.decode = decode
        self.timeout_s = timeout_s
        self.cluster = bool(cluster)
        self._detect = cluster is None
        self.redis: aioredis.Redis = self._standalone() if not cluster else self._cluster()
        self._scripts: dict[str, Script] = {}
        self.errors = 0
        self._queued: list[_Queued] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._in_flight: asyncio.Semaphore | None = None


    def readings(self) -> list[Reading]:
        return [Reading("counter", "livecart_store_errors", "store calls that failed",
                        lambda: self.errors)]

    def _slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A place among the commands in flight (a cluster only; a single server's blocking
        pool already waits for a free connection)."""
        if not self.cluster:
            return contextlib.nullcontext()
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(CLUSTER_IN_FLIGHT)
        return self._in_flight

    def _standalone(self) -> aioredis.Redis:
        # A blocking pool: a burst of commands waits (up to the timeout) for one of a
        # bounded set of connections instead of failing or opening thousands.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=128,
            timeout=max(5.0, 5 * self.timeout_s),  # waiting for a connection is not an outage
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            health_check_interval=0,
            decode_responses=self.decode,
        )
        return aioredis.Redis(connection_pool=pool)

    def _cluster(self) -> aioredis.Redis:
        client = RedisCluster.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
            max_connections=CLUSTER_MAX_CONNECTIONS, decode_responses=self.decode)
        return client  # type: ignore[return-value]  # the same command API

    async def open(self) -> None:
        """Connect; with `cluster=None`, switch to the cluster client if the server is a
        cluster node."""
        if self._detect and not self.url.startswith("unix://"):
            self._detect = False
            with self._mapped():
                info = await self.redis.info("cluster")
            if int(info.get("cluster_enabled", 0)):
                await self.redis.aclose()
                self.cluster = True
                self.redis = self._cluster()
        if self.cluster:
            # a cluster still forming (masters up, slots not all assigned yet — a node
            # started right after `livecart valkey --cluster`) is waited for, not fatal
            deadline = time.monotonic() + CLUSTER_FORMING_S
            while True:
                try:
                    with self._mapped():
                        await self.redis.initialize()
                    return
                except RedisClusterException:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.25)

    def script(self, name: str) -> Script:
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = Script(name)
        return found

    async def load_all(self) -> None:
        """Load every script in LUA_DIR (SCRIPT LOAD is idempotent, so nodes may race; on
        a cluster redis-py sends it to every master)."""
        for path in sorted(LUA_DIR.glob("*.lua")):
            script = self.script(path.name)
            await self.redis.script_load(script.source)

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """Script failures become their ApiError; a store that cannot be reached, `unavailable`."""
        try:
            yield
        except StoreDown as exc:  # before ResponseError: CLUSTERDOWN is a ResponseError too
            self.errors += 1
            raise unavailable() from exc
        except ResponseError as exc:
            raise translate(exc) from exc
        except (AttributeError, RuntimeError) as exc:
            if not self.cluster or not _broken_connection(exc):
                raise
            self.errors += 1
            raise unavailable() from exc

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self.script(name)
        with self._mapped():
            async with self._slot():
                try:
                    return await self.redis.execute_command(  # type: ignore[no-untyped-call]
                        "EVALSHA", script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    await self.redis.script_load(script.source)
                    return await self.redis.execute_command(  # type: ignore[no-untyped-call]
                        "EVALSHA", script.sha, len(keys), *keys, *args)

    async def run_pipelined(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Like `run`, but calls made in the same loop tick share one pipeline (one round
        trip, one connection): a burst of purchases costs a few round trips, not thousands.
        Each call is still its own atomic script with its own result or error."""
        script = self.script(name)
        return await self._enqueue(
            ("EVALSHA", script.sha, len(keys), *keys, *args), (script, keys, args))

    def call_pipelined(self, *args: Any) -> asyncio.Future[Any]:
        """One plain command in the loop tick's shared pipeline (see `run_pipelined`): a
        burst of cheap reads — a storm's sold-out answers — costs a few round trips. The
        reply's future, to await (no task per call)."""
        return self._enqueue(args, None)

    def _enqueue(self, command: Sequence[Any],
                 script: tuple[Script, Sequence[str], Sequence[Any]] | None,
                 ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._queued:  # its first step runs after this tick's callbacks: it takes
            self._spawn_flush()  # every command they queue
        self._queued.append((command, script, fut))
        return fut

    def _spawn_flush(self) -> None:
        task = asyncio.ensure_future(self._flush_queued())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush_queued(self) -> None:
        """Send what the tick queued: chunks of PIPELINE_MAX, all in flight at once (each on
        its own connection); the commands of one tick were issued concurrently, so no
        caller depends on their order."""
        queued, self._queued = self._queued, []
        await asyncio.gather(*(self._execute_chunk(queued[start:start + PIPELINE_MAX])
                               for start in range(0, len(queued), PIPELINE_MAX)))

    async def _execute_chunk(self, chunk: list[_Queued]) -> None:
        """Run one pipeline and settle every future of the chunk, whatever happens: a
        pipeline that has not answered within a few store timeouts (redis-py's cluster
        client can wait on a connection to a master that died) counts as unreachable."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for command, _, _ in chunk:
                pipe.execute_command(*command)
            async with self._slot():
                results = await asyncio.wait_for(pipe.execute(raise_on_error=False),
                                                 PIPELINE_TIMEOUTS * self.timeout_s)
        except (*StoreDown, TimeoutError):
            self.errors += 1
            for *_, fut in chunk:
                if not fut.done():
                    fut.set_exception(unavailable())
            return
        except BaseException as exc:
            broken = (isinstance(exc, AttributeError | RuntimeError) and self.cluster
                      and _broken_connection(exc))
            if broken:
                self.errors += 1
            for *_, fut in chunk:  # every caller gets its answer, never a hang
                if not fut.done():
                    fut.set_exception(unavailable() if broken else exc)
            if broken or isinstance(exc, Exception):
                return  # the callers have it (a bug surfaces there, as `internal`)
            raise
        for (_, script, fut), result in zip(chunk, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, NoScriptError) and script is not None:
                try:  # the server restarted: load and retry once
                    fut.set_result(await self.run(script[0].name, script[1], script[2]))
                except BaseException as exc:
                    fut.set_exception(exc)
            elif isinstance(result, StoreDown):
                self.errors += 1
                fut.set_exception(unavailable())
            elif isinstance(result, ResponseError):
                fut.set_exception(translate(result))
            elif isinstance(result, Exception):
                fut.set_exception(unavailable())
            else:
                fut.set_result(result)

    async def run_many(self, name: str,
                       calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """The same script for several key sets, in the loop tick's shared pipeline."""
        return list(await asyncio.gather(
            *(self.run_pipelined(name, keys, args) for keys, args in calls)))

    async def call(self, *args: Any) -> Any:
        """One plain command with the same error mapping as `run`."""
        with self._mapped():
            async with self._slot():
                return await self.redis.execute_command(*args)  # type: ignore[no-untyped-call]

    async def batch(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several plain commands in one round trip (not a transaction)."""
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        with self._mapped():
            async with self._slot():
                return list(await pipe.execute())

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except StoreDown:
            return False

    async def close(self) -> None:
        await self.redis.aclose()


def translate(exc: ResponseError) -> ApiError:
    text = str(exc)
    if text.startswith("LC "):
        _, code, *rest = text.split(" ", 2)
        message = rest[0] if rest else code
        details: dict[str, Any] = {}
        if message.startswith("{"):
            try:
                details = dict(orjson.loads(message))
            except orjson.JSONDecodeError:
                details = {}
            message = str(details.pop("message", code))
        try:
            return ApiError(ErrorCode(code), message, **details)
        except ValueError:
            pass
    if isinstance(exc, STORE_BUSY_ERRORS) or text.split(" ", 1)[0] in STORE_BUSY:
        log.warning("store cannot serve now: %s", text)
        return unavailable()
    request_id = new_request_id()  # a reply we did not expect is our bug, not an outage
    log.error("store error (request_id %s): %s", request_id, text,
              extra={"request_id": request_id})
    return internal(request_id)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def as_dict(flat: Any) -> dict[str, str]:
    """A HGETALL reply (dict of bytes or flat list) as a str → str dict."""
    if isinstance(flat, dict):
        return {text(k): text(v) for k, v in flat.items()}
    it = iter(flat or [])
    return {text(k): text(v) for k, v in zip(it, it, strict=True)}
