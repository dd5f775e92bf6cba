"""Argument validation (server/validate.py): integers bounded to what JSON, JavaScript and
Lua hold exactly, strings and ids, objects and unknown fields; every refusal is a
`bad_request` naming its field (docs/protocol.md, "Commands and replies")."""

from __future__ import annotations

from typing import Any

import pytest

from server import validate as v
from server.errors import ApiError, ErrorCode


def bad(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    assert info.value.code is ErrorCode.BAD_REQUEST
    return info.value.to_wire()


def test_validate_integer() -> None:
    assert v.integer({"n": 5}, "n", lo=0, hi=5) == 5
    assert v.integer({}, "n", required=False) is None
    assert v.integer({}, "n", default=3) == 3
    assert v.integer({"n": None}, "n", required=False, default=7) == 7
    for value in (True, 1.5, "1", [1], {"a": 1}):
        assert bad(v.integer, {"n": value}, "n")["field"] == "n"
    assert bad(v.integer, {"n": 1.0}, "n")["field"] == "n"  # a float, even integral: no
    bad(v.integer, {"n": -1}, "n", lo=0)
    bad(v.integer, {"n": 6}, "n", hi=5)
    bad(v.integer, {}, "n")
    assert v.req_int({"n": 0}, "n", lo=0) == 0


def test_validate_strings_and_ids() -> None:
    assert v.string({"s": "hi"}, "s") == "hi"
    assert v.string({}, "s", required=False) is None
    for value in ("", "   ", 5, None, ["a"]):
        bad(v.req_str, {"s": value}, "s")
    bad(v.string, {"s": "x" * 11}, "s", max_len=10)
    assert v.req_ident({"i": "sess_ab-c.d:e"}, "i") == "sess_ab-c.d:e"
    for value in ("a b", "x" * 65, "é", "a/b", "{a}", "a\n"):
        bad(v.req_ident, {"i": value}, "i")


def test_validate_obj_and_only() -> None:
    assert v.obj({"a": 1}) == {"a": 1}
    for value in ([], "x", 1, None):
        bad(v.obj, value)
    v.only({"a": 1}, {"a", "b"})
    assert "c" in bad(v.only, {"a": 1, "c": 2}, {"a"})["message"]


def test_integers_are_bounded_to_what_json_javascript_and_lua_hold_exactly() -> None:
    assert v.integer({"n": v.MAX_INT}, "n") == 2**53 - 1
    assert v.integer({"n": -v.MAX_INT}, "n") == -(2**53 - 1)
    for n in (2**53, 2**64 - 1, -(2**53), -(2**63)):
        assert bad(v.integer, {"n": n}, "n")["field"] == "n"
    assert bad(v.integer, {"n": 2**60}, "n", hi=2**62)["message"] == f"`n` must be ≤ {v.MAX_INT}"


def test_only_names_non_string_keys_without_failing() -> None:
    assert "1" in bad(v.only, {"a": 1, 1: 2, "z": 3}, {"a"})["message"]


def test_an_integral_float_is_not_an_integer() -> None:
    """Money and counts are integers as sent (docs/protocol.md, numbers): 5.0 is refused
    like 5.5."""
    for value in (5.0, 5.5, float(2**53), "5", True, float("inf"), float("nan")):
        bad(v.integer, {"n": value}, "n")
