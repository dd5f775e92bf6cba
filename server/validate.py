"""Argument checks shared by WebSocket commands and HTTP bodies; each raises `bad_request`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from server.errors import bad_request

ID_RE = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}\Z")  # \Z: `$` would allow a trailing newline


def obj(value: Any, what: str = "body") -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be an object")
    return value


def integer(args: Mapping[str, Any], name: str, *, lo: int | None = None, hi: int | None = None,
            default: int | None = None, required: bool = True) -> int | None:
    value = args.get(name)
    if value is None:
        if required and default is None:
            raise bad_request(f"`{name}` is required", field=name)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"`{name}` must be an integer", field=name)
    if lo is not None and value < lo:
        raise bad_request(f"`{name}` must be ≥ {lo}", field=name)
    if hi is not None and value > hi:
        raise bad_request(f"`{name}` must be ≤ {hi}", field=name)
    return value


def req_int(args: Mapping[str, Any], name: str, *, lo: int | None = None,
            hi: int | None = None) -> int:
    value = integer(args, name, lo=lo, hi=hi)
    assert value is not None
    return value


def string(args: Mapping[str, Any], name: str, *, max_len: int = 200, required: bool = True,
           pattern: re.Pattern[str] | None = None) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise bad_request(f"`{name}` is required", field=name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"`{name}` must be a non-empty string", field=name)
    if len(value) > max_len:
        raise bad_request(f"`{name}` must be at most {max_len} characters", field=name)
    if pattern is not None and not pattern.match(value):
        raise bad_request(f"`{name}` has invalid characters", field=name)
    return value


def req_str(args: Mapping[str, Any], name: str, *, max_len: int = 200) -> str:
    value = string(args, name, max_len=max_len)
    assert value is not None
    return value


def ident(args: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    return string(args, name, max_len=64, required=required, pattern=ID_RE)


def req_ident(args: Mapping[str, Any], name: str) -> str:
    value = ident(args, name)
    assert value is not None
    return value


def only(args: Mapping[str, Any], allowed: set[str], what: str = "body") -> None:
    unknown = set(args) - allowed
    if unknown:
        raise bad_request(f"unknown field(s) in {what}: {', '.join(sorted(unknown))}")
