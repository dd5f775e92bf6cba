"""What every peer shares: the pinned event shape and the command line."""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson


class Room:
    """A sequenced room: `pin()` builds the next `pinned` event like livecart's."""

    def __init__(self, product: dict[str, Any]) -> None:
        self.product = product
        self.seq = 0
        self.started = int(time.time() * 1000)

    def pin(self) -> dict[str, Any]:
        self.seq += 1
        now = int(time.time() * 1000)
        return {"t": "pinned", "seq": self.seq, "ts": now,
                "d": {"product": self.product, "pinned_at": now,
                      "stream_ts_ms": now - self.started, "deal": None}}


def parse_args(extra: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--product", required=True, help="product JSON, as livecart pins it")
    p.add_argument("--redis-url", default="")
    args = p.parse_args()
    args.product = orjson.loads(args.product)
    return args
