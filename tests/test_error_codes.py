"""Error codes and close codes (server/errors.py): each error code's HTTP status and its
wire shape, and exactly the documented close codes (docs/protocol.md, "Error codes" and
"Close codes")."""

from __future__ import annotations

from server.errors import ApiError, CloseCode, ErrorCode


def test_close_codes_are_the_documented_ones() -> None:
    assert sorted(int(c) for c in CloseCode) == [1001, 1009, 4001, 4002, 4003, 4008, 4029]


def test_error_codes_map_to_http_statuses() -> None:
    expected = {"bad_request": 400, "unknown_op": 400, "unauthorized": 401, "forbidden": 403,
                "not_found": 404, "not_live": 409, "out_of_stock": 409, "sold_out": 409,
                "limit_exceeded": 409, "deal_ended": 409, "conflict": 409, "ended": 409,
                "voucher_used_up": 409, "voucher_not_applicable": 409,
                "too_large": 413, "muted": 403, "banned": 403, "blocked": 422,
                "method_not_allowed": 405, "unsupported_media_type": 415,
                "rate_limited": 429, "internal": 500, "unavailable": 503,
                "stream_origin_refused": 403, "stream_upstream_failed": 502, "no_stream": 409}
    assert {c.value: c.http_status for c in ErrorCode} == expected
    wire = ApiError(ErrorCode.NOT_FOUND, "gone", product="p").to_wire()
    assert wire == {"code": "not_found", "message": "gone", "product": "p"}
