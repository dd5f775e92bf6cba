"""The command envelope: parse a frame, check limits, run the op, write exactly one reply.

`{"id": <int>, "op": <string>, ...args}` → `{"id", "ok": true, "result"}` or
`{"id", "ok": false, "error": {"code", "message", ...}}`. A frame that cannot be parsed
(or has no integer id) gets `id: null` and `bad_request`; so does any malformed shape
(a msgpack map with a non-string key, an integer out of range), before any rights check.
Every error reply but the server's own faults (`internal`, `unavailable`) counts toward
the connection's abuse window; crossing it closes the connection with 4029.

An exception that is not an `ApiError` is a bug: it is logged with a fresh request id
and answered `internal` carrying that `request_id`, never `unavailable`.

`like` is merged at any rate: it neither draws from the connection's command budget nor
ever counts toward abuse (a tap storm is normal use), and a valid like costs the server a
counter increment, no store call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from server.edge.client import Client
from server.edge.codecs import DecodeError
from server.errors import (
    SERVER_FAULTS,
    ApiError,
    CloseCode,
    ErrorCode,
    bad_request,
    internal,
    new_request_id,
)
from server.validate import is_integer

log = logging.getLogger("livecart.commands")


@dataclass(frozen=True, slots=True)
class Then:
    """A handler's result plus work to do right after the reply is written (synchronously)."""

    result: Any
    after: Callable[[], None]


Handler = Callable[[Client, Mapping[str, Any]], Awaitable[Any]]
MERGED_OPS = frozenset({"like"})  # merged at any rate: outside the rate limit and abuse window


def command_id(doc: Any) -> int | None:
    """The command's `id` when the document is an object with an integer id in range."""
    raw_id = doc.get("id") if isinstance(doc, dict) else None
    return raw_id if is_integer(raw_id) else None


class Dispatcher:
    def __init__(self, handlers: dict[str, Handler],
                 observe: Callable[[str, float, str | None], None] | None = None) -> None:
        self.handlers = handlers
        self.observe = observe or (lambda op, seconds, error: None)
        self.received = 0  # commands so far (server/observe/gc_timing.py asks how busy we are)
        self.in_flight = 0  # commands not answered yet (a storm: thousands)

    async def handle(self, client: Client, data: str | bytes) -> None:
        self.received += 1
        self.in_flight += 1
        try:
            await self._handle(client, data)
        finally:
            self.in_flight -= 1

    async def _handle(self, client: Client, data: str | bytes) -> None:
        started = time.perf_counter()
        msg_id: int | None = None
        op = "?"
        try:
            try:
                msg = client.codec.decode(data)
            except DecodeError as exc:
                msg_id = command_id(exc.document)
                raise bad_request(str(exc)) from exc
            msg_id = command_id(msg)
            if not isinstance(msg, dict):
                raise bad_request("a command must be an object")
            if msg_id is None:
                raise bad_request("`id` must be an integer")
            raw_op = msg.get("op")
            if not isinstance(raw_op, str):
                raise bad_request("`op` must be a string")
            handler = self.handlers.get(raw_op)
            if handler is None:
                raise ApiError(ErrorCode.UNKNOWN_OP, f"unknown op {raw_op[:40]!r}")
            op = raw_op
            if op not in MERGED_OPS and not client.admit():
                raise ApiError(ErrorCode.RATE_LIMITED, "too many commands; slow down")
            result = await handler(client, msg)
        except ApiError as exc:
            self._error(client, msg_id, exc)
            self.observe(op, time.perf_counter() - started, exc.code.value)
            return
        except Exception:
            request_id = new_request_id()
            log.exception("op %s failed (request_id %s)", op, request_id,
                          extra={"op": op, "request_id": request_id, "session": client.session,
                                 "user": client.user})
            self._error(client, msg_id, internal(request_id))
            self.observe(op, time.perf_counter() - started, ErrorCode.INTERNAL.value)
            return
        after = None
        if isinstance(result, Then):
            result, after = result.result, result.after
        client.send_obj({"id": msg_id, "ok": True, "result": result})
        if after is not None:
            after()
        self.observe(op, time.perf_counter() - started, None)

    def _error(self, client: Client, msg_id: int | None, exc: ApiError) -> None:
        client.send_obj({"id": msg_id, "ok": False, "error": exc.to_wire()})
        if exc.code not in SERVER_FAULTS and client.note_error():
            client.evict(CloseCode.ABUSE, "too many errors")
