"""schemathesis hooks (SCHEMATHESIS_HOOKS) for tests/test_openapi.py.

The OpenAPI document states each rule JSON Schema can: these hooks apply, to generated
*valid* requests only, the rules between items that it cannot (each is in the operation's
description): a product at most once per external order; timeline entries strictly
sorted by `at_ms`, with `until_ms` after `at_ms` and not past the next entry. Invalid
(negative) requests are left as generated.
"""

from __future__ import annotations

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


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    path, method, body = case.operation.path, case.method.upper(), case.body
    if (method, path) == ("POST", "/api/orders") and isinstance(body, dict) \
            and isinstance(body.get("lines"), list):
        body["lines"] = _unique_products(body["lines"])
    elif (method, path) == ("PUT", "/api/sessions/{id}/timeline") and isinstance(body, list):
        case.body = _timeline(body)
    if path in SESSION_PATHS and case.path_parameters:
        # random ids are all 404: name the seeded demo session (a video) as well
        case.path_parameters["id"] = "sess_demo_video"
    return case


SESSION_PATHS = ("/api/sessions/{id}/stream.m3u8", "/api/sessions/{id}/timeline")
