"""The OpenAPI 3.1 document served at /openapi.json (kept next to the routes it describes)."""

from __future__ import annotations

from typing import Any

from server import __version__
from server.errors import ErrorCode

_ERROR = {"$ref": "#/components/schemas/Error"}


def _op(summary: str, *, body: str | None = None, ok: str = "200", result: str | None = None,
        auth: bool = True, errors: tuple[int, ...] = (400, 401, 403, 404)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        ok: {"description": "OK", "content": {"application/json": {"schema": (
            {"$ref": f"#/components/schemas/{result}"} if result else {"type": "object"})}}},
        **{str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
           for s in errors},
    }}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if auth:
        op["security"] = [{"bearer": []}]
    return op


def _id_param() -> list[dict[str, Any]]:
    return [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def openapi_document() -> dict[str, Any]:
    integer = {"type": "integer"}
    string = {"type": "string"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "livecart", "version": __version__,
                 "description": "HTTP API of livecart (WebSocket protocol: docs/protocol.md)."},
        "paths": {
            "/api/tokens": {"post": _op("Mint a token (demo mode only)", body="TokenRequest",
                                        auth=False, errors=(400, 404))},
            "/api/products": {"post": _op("Create a product (seller/admin)", body="NewProduct",
                                          ok="201", result="Product", errors=(400, 401, 403, 409))},
            "/api/products/{id}": {
                "parameters": _id_param(),
                "get": _op("Get a product", result="Product", auth=False, errors=(404,)),
                "patch": _op("Change price, stock or commission (its seller/admin)",
                             body="ProductPatch", result="Product"),
            },
            "/api/sessions": {
                "post": _op("Create a session (creator)", body="NewSession", ok="201",
                            result="Session"),
                "get": _op("Recent sessions", auth=False, errors=()),
            },
            "/api/sessions/{id}": {"parameters": _id_param(),
                                   "get": _op("Get a session", result="Session", auth=False,
                                              errors=(404,))},
            "/api/sessions/{id}/start": {"parameters": _id_param(), "post": _op(
                "Go live (its creator)", result="Session", errors=(401, 403, 404, 409))},
            "/api/sessions/{id}/end": {"parameters": _id_param(), "post": _op(
                "End the live session (its creator)", result="Session",
                errors=(401, 403, 404, 409))},
            "/api/sessions/{id}/timeline": {"parameters": _id_param(), "put": _op(
                "Set a video session's timed pins (its creator)", body="Timeline")},
            "/api/sessions/{id}/rates": {"parameters": _id_param(), "put": _op(
                "Live-exclusive commission rates (each product's seller/admin)", body="Rates")},
            "/api/sessions/{id}/report": {"parameters": _id_param(), "get": _op(
                "The session's funnel, GMV, commission, live vs replay (its creator/admin)",
                result="Report")},
            "/api/orders": {"post": _op(
                "External checkout webhook, idempotent by external_id (seller)",
                body="ExternalOrder", ok="201", result="Order",
                errors=(400, 401, 403, 404, 409))},
            "/api/orders/{id}": {"parameters": _id_param(), "get": _op(
                "An order (its buyer, a seller in it, admin)", result="Order")},
            "/api/orders/{id}/refund": {"parameters": _id_param(), "post": _op(
                "Refund lines/units or the rest of the order, once per refund_id",
                body="Refund", result="RefundResult", errors=(400, 401, 403, 404, 409))},
            "/api/creators/{id}/ledger": {"parameters": _id_param(), "get": _op(
                "A creator's commission ledger (JSON, or CSV with Accept: text/csv)",
                result="Ledger", errors=(401, 403))},
            "/healthz": {"get": _op("Process up; node id", auth=False, errors=())},
            "/readyz": {"get": _op("Store reachable and not draining", auth=False, errors=(503,))},
            "/metrics": {"get": _op("Prometheus metrics (text)", auth=False, errors=())},
            "/openapi.json": {"get": _op("This document", auth=False, errors=())},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT (HS256)"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "properties": {
                        "code": {"enum": [c.value for c in ErrorCode]}, "message": string}}}},
                "TokenRequest": {"type": "object", "required": ["sub", "role"], "properties": {
                    "sub": string, "role": {"enum": ["viewer", "creator", "seller", "admin"]},
                    "name": string}},
                "NewProduct": {"type": "object", "required": ["title", "price", "stock",
                                                              "commission_bps"],
                               "properties": {"id": string, "title": string,
                                              "price": {"type": "integer", "minimum": 1},
                                              "stock": {"type": "integer", "minimum": 0},
                                              "commission_bps": {"type": "integer", "minimum": 0,
                                                                 "maximum": 10000},
                                              "image_url": string}},
                "ProductPatch": {"type": "object", "properties": {
                    "price": integer, "stock": integer, "commission_bps": integer}},
                "Product": {"type": "object", "properties": {
                    "id": string, "seller": string, "title": string, "price": integer,
                    "currency": string, "stock": integer, "commission_bps": integer,
                    "image_url": string}},
                "NewSession": {"type": "object", "required": ["kind", "title"], "properties": {
                    "kind": {"enum": ["live", "video"]}, "title": string,
                    "showcase": {"type": "array", "items": string}}},
                "Timeline": {"type": "array", "items": {
                    "type": "object", "required": ["at_ms", "product"], "properties": {
                        "at_ms": integer, "product": string, "until_ms": integer}}},
                "Rates": {"type": "object", "additionalProperties": {
                    "type": "integer", "minimum": 1, "maximum": 10000}},
                "Line": {"type": "object", "properties": {
                    "product": string, "qty": integer, "unit_price": integer, "amount": integer,
                    "session": {"type": ["string", "null"]},
                    "attribution": {"enum": ["direct", "replay", "indirect", "none"]},
                    "commission": integer, "seller": string}},
                "Order": {"type": "object", "properties": {
                    "id": string, "buyer": string, "currency": string, "total": integer,
                    "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
                    "created_at": integer, "source": string, "external_id": string}},
                "ExternalOrder": {"type": "object", "required": ["external_id", "buyer", "lines"],
                                  "properties": {"external_id": string, "buyer": string,
                                                 "lines": {"type": "array", "items": {
                                                     "type": "object", "properties": {
                                                         "product": string, "qty": integer,
                                                         "unit_price": integer}}}}},
                "Refund": {"type": "object", "required": ["refund_id"], "properties": {
                    "refund_id": string, "lines": {"type": "array", "items": {
                        "type": "object", "properties": {"product": string, "qty": integer}}}}},
                "RefundResult": {"type": "object", "properties": {
                    "refund_id": string, "order": string, "amount": integer,
                    "clawback": integer, "lines": {"type": "array", "items": {
                        "type": "object", "properties": {"product": string, "qty": integer,
                                                         "amount": integer,
                                                         "clawback": integer}}}}},
                "Ledger": {"type": "object", "properties": {
                    "creator": string, "currency": string, "balance": integer,
                    "entries": {"type": "array", "items": {"type": "object", "properties": {
                        "order": string, "line": integer, "product": string, "session": string,
                        "qty": integer, "amount": integer,
                        "kind": {"enum": ["credit", "clawback"]}, "status": string,
                        "at": integer}}}}},
                "Report": {"type": "object", "properties": {
                    "session": string, "viewers": {"type": "object"}, "orders": integer,
                    "units": integer, "gmv": integer, "gmv_refunded": integer,
                    "commission": integer, "commission_clawed_back": integer,
                    "replay": {"type": "object"}, "products": {"type": "array"}}},
                "Session": {"type": "object", "properties": {
                    "id": string, "creator": string, "kind": string, "title": string,
                    "status": {"enum": ["scheduled", "live", "ended"]},
                    "showcase": {"type": "array", "items": string},
                    "started_at": {"type": ["integer", "null"]},
                    "ended_at": {"type": ["integer", "null"]}}},
            },
        },
    }
