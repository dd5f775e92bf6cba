"""Per-connection protocol state: identity, codec, joined session, rate and abuse limits.

No I/O happens here except through `sink` (the socket's direct write path), so the
rules (token bucket, error window, join hold-back) are testable without a server.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.auth import ANONYMOUS, Identity
from server.edge.codecs import Codec, frame
from server.errors import CloseCode

_ids = itertools.count(1)


class Sink(Protocol):
    """Where a connection's bytes go: complete WebSocket frames, written without awaiting."""

    @property
    def open(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...

    def close_now(self, code: int, reason: str = "") -> None: ...


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` is False when the bucket is empty."""

    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0 - 1e-9:  # float sums of rate * dt fall a hair short of 1.0
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False


@dataclass(slots=True)
class ErrorWindow:
    """Counts errors in a sliding window; `add()` is True once `limit` fall within `window_s`."""

    limit: int
    window_s: float
    stamps: deque[float] = field(default_factory=deque)

    def add(self, now: float) -> bool:
        self.stamps.append(now)
        while self.stamps and now - self.stamps[0] > self.window_s:
            self.stamps.popleft()
        return len(self.stamps) >= self.limit


HeldEvent = tuple[int, bytes, Any]  # (seq, JSON bytes, decoded object)


class Client:
    """One WebSocket connection as the node sees it."""

    __slots__ = (
        "codec", "errors", "evicted", "hold", "id", "identity", "joining",
        "limiter", "max_buffer", "on_evict", "session", "sink", "viewer_key",
    )

    def __init__(self, sink: Sink, codec: Codec, identity: Identity = ANONYMOUS, *,
                 rate: float = 20.0, burst: int = 40, abuse_errors: int = 20,
                 abuse_window_s: float = 10.0, max_buffer: int = 512 * 1024,
                 on_evict: Callable[[Client, int], None] | None = None) -> None:
        self.id = next(_ids)
        self.sink = sink
        self.codec = codec
        self.identity = identity
        self.session: str | None = None
        self.joining = False
        self.hold: list[HeldEvent] = []
        self.limiter = TokenBucket(rate, burst)
        self.errors = ErrorWindow(abuse_errors, abuse_window_s)
        self.max_buffer = max_buffer
        self.evicted = False
        self.on_evict = on_evict
        self.viewer_key = f"anon:{secrets.token_hex(8)}"  # unique across nodes and restarts

    @property
    def user(self) -> str | None:
        return self.identity.sub

    def send_obj(self, obj: Any) -> None:
        """Encode one document in this client's codec and write it as one frame."""
        self.send_frame(frame(self.codec.opcode, self.codec.encode(obj)))

    def send_frame(self, data: bytes) -> None:
        if self.evicted:
            return
        self.sink.write(data)
        if self.sink.buffered() > self.max_buffer:
            self.evict(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect with since")

    def evict(self, code: int, reason: str) -> None:
        if self.evicted:
            return
        self.evicted = True
        self.sink.close_now(code, reason)
        if self.on_evict is not None:
            self.on_evict(self, code)

    def admit(self, now: float | None = None) -> bool:
        return self.limiter.take(time.monotonic() if now is None else now)

    def note_error(self, now: float | None = None) -> bool:
        """Record an error reply; True when the connection crossed the abuse threshold."""
        return self.errors.add(time.monotonic() if now is None else now)
