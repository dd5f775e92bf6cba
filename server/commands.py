"""The command envelope: parse a frame, check limits, run the op, write exactly one reply.

`{"id": <int>, "op": <string>, ...args}` → `{"id", "ok": true, "result"}` or
`{"id", "ok": false, "error": {"code", "message", ...}}`. A frame that cannot be parsed
(or has no integer id) gets `id: null` and `bad_request`. Every error reply but
`unavailable` (the store's fault, not the client's) counts toward the connection's abuse
window; crossing it closes the connection with 4029.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from server.client import Client
from server.codecs import DecodeError
from server.errors import ApiError, CloseCode, ErrorCode, bad_request

log = logging.getLogger("livecart.commands")


@dataclass(frozen=True, slots=True)
class Then:
    """A handler's result plus work to do right after the reply is written (synchronously)."""

    result: Any
    after: Callable[[], None]


Handler = Callable[[Client, Mapping[str, Any]], Awaitable[Any]]
MERGED_OPS = frozenset({"like"})  # over the rate limit these are merged, not refused


class Dispatcher:
    def __init__(self, handlers: dict[str, Handler],
                 observe: Callable[[str, float, str | None], None] | None = None) -> None:
        self.handlers = handlers
        self.observe = observe or (lambda op, seconds, error: None)

    async def handle(self, client: Client, data: str | bytes) -> None:
        started = time.perf_counter()
        msg_id: int | None = None
        op = "?"
        try:
            try:
                msg = client.codec.decode(data)
            except DecodeError as exc:
                raise bad_request(str(exc)) from exc
            if not isinstance(msg, dict):
                raise bad_request("a command must be an object")
            raw_id = msg.get("id")
            if isinstance(raw_id, bool) or not isinstance(raw_id, int) or not (
                    -(2**53) < raw_id < 2**53):
                raise bad_request("`id` must be an integer")
            msg_id = raw_id
            raw_op = msg.get("op")
            if not isinstance(raw_op, str):
                raise bad_request("`op` must be a string")
            handler = self.handlers.get(raw_op)
            if handler is None:
                raise ApiError(ErrorCode.UNKNOWN_OP, f"unknown op {raw_op[:40]!r}")
            op = raw_op
            if not client.admit():
                if op not in MERGED_OPS:
                    raise ApiError(ErrorCode.RATE_LIMITED, "too many commands; slow down")
                if client.note_error():
                    client.evict(CloseCode.ABUSE, "sustained rate over the limit")
                    return
            result = await handler(client, msg)
        except ApiError as exc:
            self._error(client, msg_id, exc)
            self.observe(op, time.perf_counter() - started, exc.code.value)
            return
        except Exception:
            log.exception("op %s failed", op)
            self._error(client, msg_id, ApiError(ErrorCode.UNAVAILABLE, "internal error; retry"))
            self.observe(op, time.perf_counter() - started, "internal")
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
        if exc.code is not ErrorCode.UNAVAILABLE and client.note_error():
            client.evict(CloseCode.ABUSE, "too many errors")
