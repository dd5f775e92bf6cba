"""Structured logs: one JSON object per line, carrying the node id (and session ids when
the caller passes `extra={"session": ...}`)."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

_EXTRA_FIELDS = ("session", "user", "op", "code", "order", "deal", "product", "total",
                 "currency", "units", "url", "store", "data_dir", "request_id")
_TOKEN = re.compile(r"(token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Strip `token=...` from every record (uvicorn logs WebSocket paths with the query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = _TOKEN.sub(r"\1[redacted]", message), ()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "node": self.node_id,
            "msg": record.getMessage(),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure(node_id: str, level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node_id))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s {node_id} %(name)s %(message)s"))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def announce(message: str, **fields: Any) -> None:
    """Write one INFO record through the configured handlers whatever the level: the
    ready line, which scripts and tests wait for, is never filtered out."""
    record = logging.LogRecord("livecart", logging.INFO, __file__, 0, message, None, None)
    for name, value in fields.items():
        setattr(record, name, value)
    for handler in logging.getLogger().handlers:
        handler.handle(record)
