"""A livecart protocol client for Locust users: `websocket-client` under gevent.

One greenlet per connection reads frames; replies resolve the waiting command by `id`;
events are checked for `seq` order and their fan-out latency (local receive time - the
event's server `ts`, epoch ms) is reported to Locust as request_type "WS", name
"<type> fan-out" (e.g. "pinned fan-out"). Import this only in a Locust process (gevent).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

import gevent
import orjson
import websocket
from gevent.event import AsyncResult

# replies that are normal business outcomes in a flash sale, not failures
EXPECTED_CODES = frozenset({"sold_out", "out_of_stock", "limit_exceeded", "deal_ended"})


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class SeqGap(Exception):
    pass


class LiveConnection:
    def __init__(self, url: str, fire: Callable[..., None],
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.url = url
        self.fire = fire
        self.on_event = on_event
        self.ws: websocket.WebSocket | None = None
        self.ids = itertools.count(1)
        self.waiting: dict[int, AsyncResult] = {}
        self.last_seq: int | None = None
        self.join_id: int | None = None
        self.closing = False
        self.close_code: int | None = None
        self.reader: gevent.Greenlet | None = None

    def connect(self) -> None:
        started = time.perf_counter()
        try:
            self.ws = websocket.create_connection(self.url, timeout=30,
                                                  subprotocols=["livecart.json"],
                                                  enable_multithread=True)
        except Exception as exc:
            self.fire(request_type="WS", name="connect", response_time=_ms(started),
                      response_length=0, exception=exc)
            raise
        self.fire(request_type="WS", name="connect", response_time=_ms(started),
                  response_length=0, exception=None)
        self.reader = gevent.spawn(self._read_loop)

    def command(self, op: str, name: str | None = None, timeout: float = 15.0,
                expected: frozenset[str] = frozenset(), **args: Any) -> Any:
        """Send one command, wait for its reply, report it as a WS request named `op`.
        Error codes in `expected` count as successes (business outcomes)."""
        assert self.ws is not None
        rid = next(self.ids)
        if op == "join":
            self.join_id, self.last_seq = rid, None
        result = AsyncResult()
        self.waiting[rid] = result
        started = time.perf_counter()
        exc: Exception | None = None
        reply: Any = None
        try:
            self.ws.send(orjson.dumps({"id": rid, "op": op, **args}).decode())
            reply = result.get(timeout=timeout)
            if not reply.get("ok"):
                err = reply.get("error") or {}
                if err.get("code") not in expected:
                    exc = CommandError(str(err.get("code")), str(err.get("message")))
        except Exception as e:  # timeout, socket closed
            exc = e
        finally:
            self.waiting.pop(rid, None)
        if not self.closing:
            self.fire(request_type="WS", name=name or op, response_time=_ms(started),
                      response_length=0, exception=exc)
        if exc is not None:
            raise exc
        return reply

    def join(self, session: str, name: str | None = None) -> dict[str, Any]:
        reply = self.command("join", name=name, session=session)
        return reply["result"]  # type: ignore[no-any-return]

    def _read_loop(self) -> None:
        assert self.ws is not None
        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=False)
            except Exception as exc:
                if not self.closing:
                    self.fire(request_type="WS", name="connection lost", response_time=0,
                              response_length=0, exception=exc)
                self._fail_waiting(exc)
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                self.close_code = code
                if not self.closing:
                    self.fire(request_type="WS", name="closed by server", response_time=0,
                              response_length=0, exception=ConnectionError(f"close {code}"))
                self._fail_waiting(ConnectionError(f"closed {code}"))
                return
            now_ms = time.time() * 1000.0
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, list):
                for ev in doc:
                    self._event(ev, now_ms, len(data))
            elif "id" in doc and ("ok" in doc):
                if doc["id"] == self.join_id and doc["ok"]:
                    # set here, not in the user's greenlet: the events right behind the
                    # reply are read before that greenlet runs again
                    self.last_seq = int(doc["result"]["seq"])
                waiter = self.waiting.get(doc["id"])
                if waiter is not None:
                    waiter.set(doc)
            else:
                self._event(doc, now_ms, len(data))

    def _event(self, ev: dict[str, Any], now_ms: float, size: int) -> None:
        seq = ev.get("seq")
        if seq is not None and self.last_seq is not None:
            if seq <= self.last_seq:
                return  # before our snapshot (join race): not ours to count
            if seq != self.last_seq + 1:
                self.fire(request_type="WS", name="seq order", response_time=0,
                          response_length=0,
                          exception=SeqGap(f"expected {self.last_seq + 1}, got {seq}"))
            self.last_seq = seq
        if seq is not None and "ts" in ev:
            self.fire(request_type="WS", name=f"{ev.get('t')} fan-out",
                      response_time=max(0.0, now_ms - float(ev["ts"])), response_length=size,
                      exception=None)
        if self.on_event is not None:
            self.on_event(ev)

    def _fail_waiting(self, exc: Exception) -> None:
        for waiter in list(self.waiting.values()):
            if not waiter.ready():
                waiter.set_exception(exc)

    def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close(timeout=1)
        if self.reader is not None:
            self.reader.kill(block=False)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
