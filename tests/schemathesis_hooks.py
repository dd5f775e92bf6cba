"""schemathesis hooks (SCHEMATHESIS_HOOKS) for tests/test_openapi.py.

The OpenAPI document states each rule JSON Schema can: these hooks apply, to generated
*valid* requests only, the rules that it cannot (each is in the operation's description
or docs/protocol.md): an integer is sent as an integer — JSON Schema counts `5.0` as the
integer 5, livecart refuses it (issue 26: money is never a float), so a valid request's
integral floats are sent as integers; a product at most once per external order;
timeline entries strictly sorted by `at_ms`, with `until_ms` after `at_ms` and not past
the next entry; a new voucher's window ending in the future and `per_buyer` within
`total_uses`. Invalid
(negative) requests are left as generated. Valid reads of an auction or a giveaway name
the ones tests/test_openapi.py created (LC_ST_* in the environment).
"""

from __future__ import annotations

import os
import time
from typing import Any

import schemathesis


def _unique_products(lines: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for line in lines:
        product = line.get("product") if isinstance(line, dict) else None
        if product not in seen:
            seen.add(product)
            out.append(line)
    return out


def _timeline(entries: list[Any]) -> list[Any]:
    by_at: dict[int, Any] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("at_ms"), int | float):
            by_at.setdefault(int(entry["at_ms"]), entry)
    ordered = [by_at[at] for at in sorted(by_at)]
    for i, entry in enumerate(ordered):
        until = entry.get("until_ms")
        end = ordered[i + 1]["at_ms"] if i + 1 < len(ordered) else None
        if until is not None and (until <= entry["at_ms"] or (end is not None and until > end)):
            entry.pop("until_ms")
    return ordered


_SEEDED = {"/api/sessions/{id}/auctions/{aid}": ("aid", "LC_ST_AUCTION"),
           "/api/sessions/{id}/giveaways/{gid}": ("gid", "LC_ST_GIVEAWAY")}


def _integers(value: Any) -> Any:
    """`value` with every float that JSON Schema counts as an integer sent as one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integers(item) for item in value]
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    return value


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    if isinstance(case.body, dict | list):
        case.body = _integers(case.body)
    path, method, body = case.operation.path, case.method.upper(), case.body
    if (method, path) == ("POST", "/api/orders") and isinstance(body, dict) \
            and isinstance(body.get("lines"), list):
        body["lines"] = _unique_products(body["lines"])
    elif (method, path) == ("PUT", "/api/sessions/{id}/timeline") and isinstance(body, list):
        case.body = _timeline(body)
    elif path in _SEEDED and "LC_ST_SESSION" in os.environ:
        name, var = _SEEDED[path]
        case.path_parameters = {"id": os.environ["LC_ST_SESSION"], name: os.environ[var]}
    elif (method, path) == ("POST", "/api/vouchers") and isinstance(body, dict):
        now = int(time.time() * 1000)
        body["starts_at"], body["ends_at"] = None, now + 3_600_000
        if isinstance(body.get("per_buyer"), int) and isinstance(body.get("total_uses"), int):
            body["per_buyer"] = min(body["per_buyer"], body["total_uses"])
    if path in SESSION_PATHS and case.path_parameters:
        # random ids are all 404: name the seeded demo session (a video) as well
        case.path_parameters["id"] = "sess_demo_video"
    return case


SESSION_PATHS = ("/api/sessions/{id}/stream.m3u8", "/api/sessions/{id}/timeline")
