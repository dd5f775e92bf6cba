"""The Valkey/Redis connection and the Lua script registry.

Scripts live in `server/lua/*.lua`, each with a `-- KEYS[n]` / `-- ARGV[n]` header. A
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.errors import ApiError, ErrorCode, internal, new_request_id, unavailable

log = logging.getLogger("livecart.store")

LUA_DIR = Path(__file__).parent / "lua"
_INCLUDE = re.compile(r"^--!include (\S+)\s*$", re.MULTILINE)

StoreDown = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
PIPELINE_MAX = 256
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


class Store:
    """Commands, scripts and error mapping over one redis-py asyncio client."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        # A blocking pool: a burst of commands waits (up to the timeout) for one of a
        # bounded set of connections instead of failing or opening thousands.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=128,
            timeout=max(5.0, 5 * timeout_s),  # waiting for a free connection is not an outage
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=0,
            decode_responses=False,
        )
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._scripts: dict[str, Script] = {}
        self.errors = 0
        self._queued: list[tuple[Script, Sequence[str], Sequence[Any], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    def script(self, name: str) -> Script:
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = Script(name)
        return found

    async def load_all(self) -> None:
        """Load every script in LUA_DIR (SCRIPT LOAD is idempotent, so nodes may race)."""
        for path in sorted(LUA_DIR.glob("*.lua")):
            script = self.script(path.name)
            await self.redis.script_load(script.source)

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """Script failures become their ApiError; a store that cannot be reached, `unavailable`."""
        try:
            yield
        except ResponseError as exc:
            raise translate(exc) from exc
        except StoreDown as exc:
            self.errors += 1
            raise unavailable() from exc

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self.script(name)
        with self._mapped():
            try:
                return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.redis.script_load(script.source)
                return await self.redis.evalsha(script.sha, len(keys), *keys, *args)

    async def run_pipelined(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Like `run`, but calls made in the same loop tick share one pipeline (one round
        trip, one connection): a burst of purchases costs a few round trips, not thousands.
        Each call is still its own atomic script with its own result or error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._spawn_flush)
        self._queued.append((self.script(name), keys, args, fut))
        return await fut

    def _spawn_flush(self) -> None:
        task = asyncio.ensure_future(self._flush_queued())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush_queued(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), PIPELINE_MAX):
            await self._execute_chunk(queued[start:start + PIPELINE_MAX])

    async def _execute_chunk(
            self, chunk: list[tuple[Script, Sequence[str], Sequence[Any], asyncio.Future[Any]]],
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for script, keys, args, _ in chunk:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except StoreDown:
            self.errors += 1
            for *_, fut in chunk:
                if not fut.done():
                    fut.set_exception(unavailable())
            return
        except BaseException as exc:
            for *_, fut in chunk:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        for (script, keys, args, fut), result in zip(chunk, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, NoScriptError):  # the server restarted: load and retry once
                try:
                    fut.set_result(await self.run(script.name, keys, args))
                except BaseException as exc:
                    fut.set_exception(exc)
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
            return await self.redis.execute_command(*args)  # type: ignore[no-untyped-call]

    async def batch(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several plain commands in one round trip (not a transaction)."""
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        with self._mapped():
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
