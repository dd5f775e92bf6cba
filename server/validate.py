"""Argument checks shared by WebSocket commands and HTTP bodies; each raises `bad_request`.

The definitions here are the server's only ones, and the OpenAPI document is built from
them:

- an **id** (of a user, i.e. a token's `sub`, of a product, session, order, refund,
  idempotency key...) is 1-64 characters of `A-Z a-z 0-9 _ - . : @ + |`, so an e-mail
  address such as `ana@example.com` or a provider id such as `auth0|5f1c` is an id, and
  every id can stand in a URL path (percent-encoded or not) and in a Valkey key;
- an **integer** argument (every amount of money, quantity, count, rate, duration and
  timestamp) is an integer as the client's document spells it — a JSON number written
  without a fraction or exponent (`5`), a msgpack int — within ±(2^53 - 1): exact in
  JSON, JavaScript and Lua (whose numbers are doubles). Anything else is `bad_request`
  naming the field: a boolean, a string, and every float, integral or not (`5.0`, `1e3`,
  a msgpack float32/float64): a client that sends money as a float has already lost
  exactness, so it is told, never rounded. `integer` is the only check; no other module
  reads a number from input by itself;
- a **text** argument is a string with at least one character other than ASCII
  whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from server.errors import bad_request

# the highest price, amount or discount in minor units anywhere (1,000,000.00 in a 2-decimal
# currency): one limit for products, deals, bids, vouchers and external lines
MAX_PRICE = 100_000_000

ID_CHARS = "A-Za-z0-9_.:@+|-"  # a regex character class body (`-` last: a literal)
ID_MAX = 64
ID_RE = re.compile(rf"^[{ID_CHARS}]{{1,{ID_MAX}}}\Z")  # \Z: `$` would allow a trailing newline
ID_PATTERN = f"^[{ID_CHARS}]{{1,{ID_MAX}}}$"  # the same, as an ECMA-262 (OpenAPI) pattern
MAX_INT = 2**53 - 1
NOT_BLANK = "[^\t\n\v\f\r ]"  # Python and ECMA-262 alike: "has a non-blank character"
_NOT_BLANK_RE = re.compile(NOT_BLANK)


def is_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None


def is_integer(value: object) -> bool:
    """Is `value` an integer argument (see the module's docstring), in ±(2^53 - 1)?"""
    return type(value) is int and -MAX_INT <= value <= MAX_INT


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
    if type(value) is not int:  # not bool (an int subclass), not float: not 5.0 either
        raise bad_request(f"`{name}` must be an integer (no fraction, not a float or a "
                          "boolean)", field=name)
    lo = -MAX_INT if lo is None else max(lo, -MAX_INT)
    hi = MAX_INT if hi is None else min(hi, MAX_INT)
    if value < lo:
        raise bad_request(f"`{name}` must be ≥ {lo}", field=name)
    if value > hi:
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
    if not isinstance(value, str) or not _NOT_BLANK_RE.search(value):
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
        names = ", ".join(sorted(repr(k) if not isinstance(k, str) else k for k in unknown))
        raise bad_request(f"unknown field(s) in {what}: {names}")
