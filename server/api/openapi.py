"""The OpenAPI 3.1 document served at /openapi.json (kept next to the routes it describes).

It says exactly what the server accepts and returns: the limits come from the constants
the validators use (server/validate.py, the domain modules), every status a route can
answer is listed with the error codes of that status, and request bodies forbid fields
the server refuses. tests/test_openapi.py runs schemathesis with every check against a
real server to keep it so. Rules between items that JSON Schema cannot state (timeline
entries sorted and non-overlapping, a product at most once per order or refund) answer
400 and are said in the operation's description.
"""

from __future__ import annotations

from typing import Any

from server import __version__
from server.api.order_routes import MAX_LINES
from server.cart.products import MAX_PRICE, MAX_STOCK
from server.cart.vouchers import MAX_AMOUNT, MAX_PRODUCTS, MAX_USES
from server.errors import CloseCode, ErrorCode
from server.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from server.rooms.chat import MAX_MODERATORS
from server.rooms.sessions import KINDS, MAX_SCHEDULED_AT, MAX_SHOWCASE
from server.rooms.timeline import MAX_ENTRIES, MAX_MS
from server.validate import ID_MAX, ID_PATTERN, MAX_INT, NOT_BLANK
from server.video.streams import MAX_OFFSET_MS, MAX_URL

JSON = "application/json"
HLS = "application/vnd.apple.mpegurl"
ROLES = ["viewer", "creator", "seller", "admin"]
MAX_EXTERNAL_LINES = 100  # server/cart/orders.py check_external_lines
MAX_LINE_QTY = 10_000  # external order and refund lines

# the statuses of the store and of bugs: any route that reads or writes the store
STORE = (500, 503)


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def ident() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": ID_PATTERN}


def text(max_len: int = 200) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": NOT_BLANK}


def integer(lo: int = -MAX_INT, hi: int = MAX_INT) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional argument: the server reads `null` as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


def closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A request object: unknown fields are refused (validate.only)."""
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


def shape(properties: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A response object: these fields are always there (unless `required` says otherwise)."""
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required)}


def _codes(status: int) -> list[str]:
    return [c.value for c in ErrorCode if c.http_status == status and c is not ErrorCode.UNKNOWN_OP]


def _errors(statuses: tuple[int, ...]) -> dict[str, Any]:
    return {str(s): {"description": ", ".join(_codes(s)), "content": {JSON: {"schema": {
        "allOf": [ref("Error")], "properties": {"error": {"properties": {
            "code": {"enum": _codes(s)}}}}}}}} for s in sorted(set(statuses))}


def _op(summary: str, *, body: dict[str, Any] | None = None, ok: str = "200",
        result: dict[str, Any] | None = None, auth: bool = True, errors: tuple[int, ...] = (),
        description: str | None = None, content: dict[str, Any] | None = None,
        store: bool = True, also_ok: str | None = None) -> dict[str, Any]:
    statuses = (*errors, *(STORE if store else (500,)))
    if auth:
        statuses += (401,)
    if body is not None:
        statuses += (400, 413, 415)
    op: dict[str, Any] = {"summary": summary, "responses": {
        ok: {"description": "OK",
             "content": content or {JSON: {"schema": result or {"type": "object"}}}},
        **_errors(statuses),
    }}
    if also_ok:
        op["responses"][also_ok] = {**op["responses"][ok], "description": "OK (again)"}
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    op["security"] = [{"bearer": []}] if auth else []
    return op


def _id_param() -> list[dict[str, Any]]:
    return [{"name": "id", "in": "path", "required": True, "schema": ident(),
             "description": "an id (1-64 of A-Z a-z 0-9 _ - . : @ + |); anything else: 404"}]


def _two_params(second: str, what: str) -> list[dict[str, Any]]:
    return [*_id_param(), {"name": second, "in": "path", "required": True, "schema": ident(),
                           "description": f"the {what} id; an unknown one: 404"}]


def _schemas() -> dict[str, Any]:
    string, int_ = {"type": "string"}, {"type": "integer"}
    opt_int = {"type": ["integer", "null"]}
    product = shape({"id": string, "seller": string, "title": string, "price": int_,
                     "currency": string, "stock": int_, "commission_bps": int_,
                     "image_url": string})
    deal = shape({"price": int_, "stock_left": int_, "per_buyer_limit": int_, "ends_at": int_,
                  "status": {"enum": ["open", "closed"]}})
    pin = shape({"product": ref("Product"), "pinned_at": int_, "stream_ts_ms": opt_int,
                 "deal": {"anyOf": [ref("Deal"), {"type": "null"}]}}, required=("product",))
    session = shape({"id": string, "creator": string, "kind": {"enum": list(KINDS)},
                     "title": string, "status": {"enum": ["scheduled", "live", "ended"]},
                     "showcase": {"type": "array", "items": string},
                     "started_at": opt_int, "ended_at": opt_int, "scheduled_at": opt_int,
                     "stream_url": {"type": ["string", "null"]},
                     "stream_clock_offset_ms": int_})
    stream_url = {"type": "string", "minLength": 1, "maxLength": MAX_URL, "pattern": r"^\S+$",
                  "description": "an HLS media playlist: http(s) on LIVECART_STREAM_ORIGINS "
                                 "(--demo: loopback too, or /demo-stream/...); else 403 "
                                 "stream_origin_refused"}
    offset = integer(-MAX_OFFSET_MS, MAX_OFFSET_MS)
    line = shape({"product": string, "qty": int_, "unit_price": int_, "amount": int_,
                  "discount": int_, "session": {"type": ["string", "null"]},
                  "attribution": {"enum": ["direct", "replay", "indirect", "none"]},
                  "commission": int_, "seller": string},
                 required=("product", "qty", "unit_price", "amount"))
    entry = closed({"at_ms": integer(0, MAX_MS), "product": ident(),
                    "until_ms": nullable(integer(0, MAX_MS))}, ("at_ms", "product"))
    return {
        "Error": shape({"error": {"type": "object", "required": ["code", "message"],
                                  "properties": {
                                      "code": {"enum": [c.value for c in ErrorCode]},
                                      "message": string, "field": string,
                                      "request_id": string}}}),
        "TokenRequest": closed({"sub": ident(), "role": {"enum": ROLES},
                                "name": nullable(text(64))}, ("sub", "role")),
        "Token": shape({"token": string, "sub": string, "role": {"enum": ROLES},
                        "name": {"type": ["string", "null"]}}),
        "NewProduct": closed({
            "id": nullable(ident()), "title": text(), "price": integer(1, MAX_PRICE),
            "stock": integer(0, MAX_STOCK), "commission_bps": integer(0, 10_000),
            "image_url": nullable(text(500))}, ("title", "price", "stock", "commission_bps")),
        "ProductPatch": {**closed({
            "price": nullable(integer(1, MAX_PRICE)), "stock": nullable(integer(0, MAX_STOCK)),
            "commission_bps": nullable(integer(0, 10_000))}),
            "anyOf": [{"required": [name], "properties": {name: {"type": "integer"}}}
                      for name in ("price", "stock", "commission_bps")]},
        "Product": product,
        "Deal": deal,
        "Pin": pin,
        "NewSession": closed({"kind": {"enum": list(KINDS)}, "title": text(),
                              "showcase": {"type": "array", "items": ident(),
                                           "maxItems": MAX_SHOWCASE, "uniqueItems": True},
                              "scheduled_at": nullable(integer(0, MAX_SCHEDULED_AT)),
                              "stream_url": nullable(stream_url),
                              "stream_clock_offset_ms": nullable(offset)},
                             ("kind", "title")),
        "SessionPatch": {**closed({"stream_url": nullable(stream_url),
                                   "stream_clock_offset_ms": nullable(offset)}),
                         "anyOf": [{"required": ["stream_url"]},
                                   {"required": ["stream_clock_offset_ms"],
                                    "properties": {"stream_clock_offset_ms": int_}}]},
        "Session": session,
        "SessionDetail": {"allOf": [ref("Session")], "properties": {
            "pinned": {"anyOf": [ref("Pin"), {"type": "null"}]},
            "timeline": {"type": "array", "items": ref("TimelineEntry")},
            "moderators": {"type": "array", "items": string}},
            "required": ["pinned", "moderators"]},
        "Moderators": {"type": "array", "items": ident(), "maxItems": MAX_MODERATORS},
        "ModeratorsSet": shape({"session": string,
                                "moderators": {"type": "array", "items": string}}),
        "Reminder": shape({"session": string, "reminded": {"type": "boolean"}}),
        "AuditEntry": shape({"by": string, "action": string, "target": string,
                             "value": string, "at": int_}),
        "Sessions": shape({"sessions": {"type": "array", "items": ref("Session")}}),
        "TimelineEntry": entry,
        "Timeline": {"type": "array", "items": ref("TimelineEntry"), "maxItems": MAX_ENTRIES},
        "TimelineSet": shape({"session": string,
                              "timeline": {"type": "array", "items": ref("TimelineEntry")}}),
        "Rates": {"type": "object", "additionalProperties": integer(1, 10_000)},
        "RatesSet": shape({"session": string,
                           "rates": {"type": "object", "additionalProperties": int_}}),
        "Line": line,
        "Order": shape({"id": string, "buyer": string, "currency": string, "total": int_,
                        "lines": {"type": "array", "items": ref("Line")},
                        "created_at": int_, "source": {"enum": ["buy_now", "checkout",
                                                                "external", "auction",
                                                                "giveaway"]},
                        "discount": int_, "voucher": string, "external_id": string},
                       required=("id", "buyer", "currency", "total", "lines", "source")),
        "ExternalOrder": closed({
            "external_id": ident(), "buyer": ident(),
            "lines": {"type": "array", "minItems": 1, "maxItems": MAX_EXTERNAL_LINES,
                      "items": closed({"product": ident(),
                                       "qty": integer(1, MAX_LINE_QTY),
                                       "unit_price": integer(0, MAX_PRICE)},
                                      ("product", "qty", "unit_price"))}},
            ("external_id", "buyer", "lines")),
        "Refund": closed({
            "refund_id": ident(),
            "lines": nullable({"type": "array", "minItems": 1, "maxItems": MAX_LINES,
                               "items": closed(
                {"product": ident(), "qty": integer(1, MAX_LINE_QTY)}, ("product", "qty"))})},
            ("refund_id",)),
        "RefundResult": shape({
            "refund_id": string, "order": string, "amount": int_, "clawback": int_,
            "lines": {"type": "array", "items": shape({
                "product": string, "qty": int_, "amount": int_, "clawback": int_})}}),
        "Ledger": shape({
            "creator": string, "currency": string, "balance": int_,
            "entries": {"type": "array", "items": {"type": "object", "properties": {
                "order": string, "line": int_, "product": string,
                "session": {"type": ["string", "null"]}, "qty": int_, "amount": int_,
                "kind": {"enum": ["credit", "clawback"]}, "status": string,
                "at": int_}}}}),
        "Report": shape({
            "session": string, "viewers": {"type": "object"}, "orders": int_,
            "units": int_, "gmv": int_, "gmv_refunded": int_, "commission": int_,
            "commission_clawed_back": int_, "replay": {"type": "object"},
            "products": {"type": "array", "items": {"type": "object"}},
            "moderation": {"type": "array", "items": ref("AuditEntry")}},
            required=("session", "orders", "units", "gmv", "commission", "moderation")),
        "Auction": shape({
            "id": string, "product": string, "status": {"enum": ["open", "closed"]},
            "top_bid": opt_int, "bidder": {"type": ["string", "null"]}, "ends_at": int_,
            "bids": int_, "start_price": int_, "increment": int_,
            "reserve_met": {"type": "boolean"}, "sudden_death": {"type": "boolean"},
            "outcome": {"enum": ["sold", "unsold", "reserve_not_met", "no_bids", None]},
            "order": {"type": ["string", "null"]}}),
        "Giveaway": shape({
            "id": string, "session": string, "product": string,
            "status": {"enum": ["open", "closed"]}, "ends_at": int_, "winner_count": int_,
            "entries": int_, "keyword": {"type": ["string", "null"]},
            "seed": {"type": ["string", "null"]},
            "entrants": {"type": ["array", "null"], "items": string},
            "entrant_hash": {"type": ["string", "null"]},
            "winners": {"type": "array", "items": shape({
                "entrant": string, "name": string, "order": {"type": ["string", "null"]}})},
            "algorithm": string}),
        "NewVoucher": {**closed({
            "code": ident(), "percent_off": nullable(integer(1, 100)),
            "amount_off": nullable(integer(1, MAX_AMOUNT)),
            "min_spend": nullable(integer(0, MAX_USES * MAX_AMOUNT)),
            "total_uses": integer(1, MAX_USES), "per_buyer": nullable(integer(1, MAX_USES)),
            "starts_at": nullable(integer(0, MAX_INT)), "ends_at": integer(0, MAX_INT),
            "session": nullable(ident()),
            "products": nullable({"type": "array", "items": ident(), "maxItems": MAX_PRODUCTS,
                                  "uniqueItems": True})}, ("code", "total_uses", "ends_at")),
            "oneOf": [{"required": [name], "properties": {name: {"type": "integer"}}}
                      for name in ("percent_off", "amount_off")]},
        "Voucher": shape({
            "code": string, "seller": string, "percent_off": opt_int, "amount_off": opt_int,
            "min_spend": int_, "total_uses": int_, "per_buyer": int_, "starts_at": int_,
            "ends_at": int_, "session": {"type": ["string", "null"]},
            "products": {"type": "array", "items": string}, "used": int_, "held": int_,
            "remaining": int_, "discount_given": int_,
            "uses": {"type": "array", "items": shape({
                "order": string, "buyer": string, "discount": int_, "session": string,
                "at": int_})}},
            required=("code", "seller", "total_uses", "used", "held", "remaining",
                      "discount_given")),
        "Health": shape({"ok": {"const": True}, "node": string}),
        "Ready": shape({"ready": {"type": "boolean"}, "node": string}),
    }


def openapi_document() -> dict[str, Any]:
    ready = ref("Ready")
    return {
        "openapi": "3.1.0",
        "info": {"title": "livecart", "version": __version__,
                 "description": "HTTP API of livecart (WebSocket protocol: docs/protocol.md). "
                                "Errors are {error: {code, message, ...}}; `internal` (500) "
                                "carries a request_id and is not retryable by default; "
                                "`unavailable` (503) means the store is unreachable."},
        "paths": {
            "/api/tokens": {"post": _op(
                "Mint a token (demo mode only; 404 otherwise)", body=ref("TokenRequest"),
                result=ref("Token"), auth=False, errors=(404,))},
            "/api/products": {"post": _op(
                "Create a product (seller/admin)", body=ref("NewProduct"), ok="201",
                result=ref("Product"), errors=(403, 409))},
            "/api/products/{id}": {
                "parameters": _id_param(),
                "get": _op("Get a product", result=ref("Product"), auth=False, errors=(404,)),
                "patch": _op("Change price, stock or commission (its seller/admin)",
                             body=ref("ProductPatch"), result=ref("Product"),
                             errors=(403, 404, 409)),
            },
            "/api/vouchers": {"post": _op(
                "Create a voucher (seller/admin)", body=ref("NewVoucher"), ok="201",
                result=ref("Voucher"), errors=(403, 404, 409),
                description="Exactly one of percent_off and amount_off; per_buyer at most "
                            "total_uses; ends_at after starts_at (default now) and in the "
                            "future, at most 366 days later (else 400). Products must exist "
                            "(404) and be the caller's (403); a session must exist (404).")},
            "/api/vouchers/{id}": {"parameters": _id_param(), "get": _op(
                "A voucher's terms and counters (anyone); its seller/admin also get `uses`",
                result=ref("Voucher"), auth=False, errors=(401, 404))},
            "/api/sessions": {
                "post": _op("Create a session (creator/admin)", body=ref("NewSession"),
                            ok="201", result=ref("Session"), errors=(403, 404)),
                "get": _op("Recent sessions, newest first", result=ref("Sessions"),
                           auth=False),
            },
            "/api/sessions/{id}": {
                "parameters": _id_param(),
                "get": _op("A session with its pin (and timeline for videos and ended shows)",
                           result=ref("SessionDetail"), auth=False, errors=(404,)),
                "patch": _op("Set or remove its stream, or its clock offset (its creator)",
                             body=ref("SessionPatch"), result=ref("Session"),
                             errors=(403, 404),
                             description="`stream_url: null` removes the stream. "
                                         "docs/protocol.md, \"Real video\"."),
            },
            "/api/sessions/{id}/stream.m3u8": {"parameters": _id_param(), "get": _op(
                "The session's HLS playlist with its pins as EXT-X-DATERANGE tags",
                auth=False, errors=(403, 404, 409, 502),
                content={HLS: {"schema": {"type": "string"}}},
                description="CLASS=\"com.livecart.pin\", ID per pin, START-DATE (ISO 8601, "
                            "ms), END-DATE at the unpin, X-PRODUCT, X-DEAL-PRICE; segment "
                            "URIs absolute. 409 no_stream without a stream_url, 403 "
                            "stream_origin_refused, 502 stream_upstream_failed.")},
            "/api/sessions/{id}/start": {"parameters": _id_param(), "post": _op(
                "Go live (its creator)", result=ref("Session"), errors=(403, 404, 409))},
            "/api/sessions/{id}/end": {"parameters": _id_param(), "post": _op(
                "End the live session (its creator)", result=ref("Session"),
                errors=(403, 404, 409))},
            "/api/sessions/{id}/timeline": {"parameters": _id_param(), "put": _op(
                "Set a video session's timed pins (its creator)", body=ref("Timeline"),
                result=ref("TimelineSet"), errors=(403, 404, 409),
                description="Entries sorted by at_ms (strictly), until_ms after at_ms, not "
                            "overlapping the next entry (else 400); products in the "
                            "showcase and only video sessions (else 409).")},
            "/api/sessions/{id}/rates": {"parameters": _id_param(), "put": _op(
                "Live-exclusive commission rates (each product's seller/admin)",
                body=ref("Rates"), result=ref("RatesSet"), errors=(403, 404, 409),
                description="Each product in the session's showcase, each rate above the "
                            "product's own rate (else 409).")},
            "/api/sessions/{id}/report": {"parameters": _id_param(), "get": _op(
                "The session's funnel, GMV, commission, live vs replay (its creator/admin)",
                result=ref("Report"), errors=(403, 404))},
            "/api/sessions/{id}/auctions/{aid}": {"parameters": _two_params(
                "aid", "auction"), "get": _op(
                "An auction: top bid, bidder's display name, bids, end, outcome and order",
                result=ref("Auction"), auth=False, errors=(404,))},
            "/api/sessions/{id}/giveaways/{gid}": {"parameters": _two_params(
                "gid", "giveaway"), "get": _op(
                "A giveaway with what re-running its draw needs",
                result=ref("Giveaway"), auth=False, errors=(404,),
                description="Once drawn: the seed, the frozen entrant ids (sorted), their "
                            "hash, the winners in draw order, and the algorithm "
                            "(docs/protocol.md, Giveaways).")},
            "/api/sessions/{id}/moderators": {"parameters": _id_param(), "put": _op(
                "Name the session's moderators (its creator); replaces the list",
                body=ref("Moderators"), result=ref("ModeratorsSet"), errors=(403, 404),
                description="A moderator may pin and unpin (without a deal) and moderate "
                            "the chat of this session, nothing else. Duplicates count once.")},
            "/api/sessions/{id}/reminder": {
                "parameters": _id_param(),
                "put": _op("Notify me when this scheduled session goes live (signed in)",
                           result=ref("Reminder"), errors=(404, 409),
                           description="409 when the session is live or has ended."),
                "delete": _op("Stop the reminder", result=ref("Reminder"), errors=(404,)),
            },
            "/api/orders": {"post": _op(
                "External checkout webhook, idempotent by external_id (seller)",
                body=ref("ExternalOrder"), ok="201", result=ref("Order"),
                errors=(403, 404, 409), also_ok="200",
                description="A product at most once per order (else 400). The same "
                            "external_id again answers 200 with the first order.")},
            "/api/orders/{id}": {"parameters": _id_param(), "get": _op(
                "An order (its buyer, a seller in it, admin)", result=ref("Order"),
                errors=(403, 404))},
            "/api/orders/{id}/refund": {"parameters": _id_param(), "post": _op(
                "Refund lines/units or the rest of the order, once per refund_id",
                body=ref("Refund"), result=ref("RefundResult"), errors=(403, 404, 409),
                description="A product named in several lines refunds the sum of their "
                            "units; a product not in the order, or more units than remain, "
                            "409.")},
            "/api/creators/{id}/ledger": {"parameters": _id_param(), "get": _op(
                "A creator's commission ledger (JSON, or CSV with Accept: text/csv)",
                errors=(403, 404), content={JSON: {"schema": ref("Ledger")},
                                            "text/csv": {"schema": {"type": "string"}}})},
            "/healthz": {"get": _op("Process up; node id", result=ref("Health"), auth=False,
                                    store=False)},
            "/readyz": {"get": {**_op("Store reachable and not draining", result=ready,
                                      auth=False, errors=(500,)), "responses": {
                "200": {"description": "ready", "content": {JSON: {"schema": ready}}},
                "503": {"description": "not ready", "content": {JSON: {"schema": ready}}},
                **_errors((500,))}}},
            "/metrics": {"get": _op("Prometheus metrics (text exposition format)", auth=False,
                                    store=False, content={METRICS_CONTENT_TYPE: {
                                        "schema": {"type": "string"}}})},
            "/openapi.json": {"get": _op("This document", auth=False, store=False)},
        },
        "x-websocket": _websocket(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT (HS256)"}},
            "schemas": _schemas(),
        },
    }


def _websocket() -> dict[str, Any]:
    """The WebSocket side in brief (docs/protocol.md is the full description): the chat,
    moderation and reminder commands, their events, error and close codes."""
    return {
        "path": "/ws",
        "commands": {
            "chat": "{text} signed in, joined, live: 1-300 characters after trimming, no "
                    "control characters -> {id, cseq}",
            "chat_delete": "{message, session?} creator/moderator -> chat_deleted to the room",
            "mute": "{user, seconds, session?} creator/moderator: chat answers muted",
            "unmute": "{user, session?}", "ban": "{user, session?}: closes 4003 everywhere",
            "unban": "{user, session?}",
            "chat_settings": "{slow_mode_s?, blocked_words?, links_allowed?, session?}",
            "remind": "{session, on?} signed in, scheduled session -> {session, reminded}",
            "join": "{session, since?, epoch?, chat?, chat_since?}",
        },
        "events": {"chat": "{id, user, name, text} with cseq", "chat_deleted": "{id} with cseq",
                   "banned": "{user} with cseq", "live": "{session, title} (private)",
                   "chat_gap": "{after} with cseq: chat events were lost; continue from cseq"},
        "errors": {c.value: c.http_status for c in ErrorCode},
        "close_codes": {c.name.lower(): int(c) for c in CloseCode},
    }
