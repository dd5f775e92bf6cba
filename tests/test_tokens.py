"""Tokens (server/auth.py): HS256 exactly as PyJWT signs and reads it; every way a token can
be bad, forged or early is `unauthorized`; roles; display names that never leak ids; `sub`
is an id (the one definition a path's ids use too) and NumericDate claims are numbers —
in the functions and through the real server: HTTP 401, a WebSocket close with 4001
(docs/protocol.md, "Ids and token claims")."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from server import validate as v
from server.auth import (
    ANONYMOUS,
    Identity,
    issue_token,
    mask_id,
    require_role,
    require_user,
    verify_token,
)
from server.errors import ApiError, ErrorCode
from tests.helpers import SECRET, ServerThread, WsClient, close_code

pytestmark = pytest.mark.anyio


# the functions ------------------------------------------------------------------------------


def test_token_round_trip() -> None:
    tok = issue_token(SECRET, "ana", "creator", 60, name="Ana")
    ident = verify_token(SECRET, tok)
    assert (ident.sub, ident.role, ident.name) == ("ana", "creator", "Ana")
    assert ident.exp is not None and ident.exp > time.time()
    assert not ident.expired() and not ident.anonymous
    assert ident.display_name() == "Ana"


@pytest.mark.parametrize("make", [
    lambda: issue_token(SECRET, "ana", "viewer", 60, now=time.time() - 120),
    lambda: issue_token("wrong-secret-0123456789abcdef-01234567", "ana", "viewer", 60),
    lambda: "x.y.z",
    lambda: "",
    lambda: jwt.encode({"sub": "ana", "role": "viewer"}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": "ana", "role": "god", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": 5, "role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": "", "role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "name": "n" * 65}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) + 60}, None,
                       algorithm="none"),
    lambda: jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS512"),
    # RFC 7519 NumericDate: a number, never a (numeric) string or a boolean
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": str(int(time.time()) + 60)},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "iat": str(int(time.time()))}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "nbf": str(int(time.time()) - 5)}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": True}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": 2**64}, SECRET, algorithm="HS256"),
    # `sub` must be an id (the definition of server/validate.py)
    lambda: jwt.encode({"sub": "ana smith", "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "x" * 65, "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a{b}", "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "a/b", "role": "viewer", "exp": int(time.time()) + 60},
                       SECRET, algorithm="HS256"),
])
def test_bad_tokens_are_unauthorized(make: Any) -> None:
    with pytest.raises(ApiError) as info:
        verify_token(SECRET, make())
    assert info.value.code is ErrorCode.UNAUTHORIZED


def test_tokens_interoperate_with_pyjwt() -> None:
    """Our HS256 is the standard one: PyJWT reads what we sign and we read what it signs."""
    ours = issue_token(SECRET, "ana", "creator", 60, name="Ana")
    assert jwt.decode(ours, SECRET, algorithms=["HS256"])["sub"] == "ana"
    theirs = jwt.encode({"sub": "bo", "role": "viewer", "exp": int(time.time()) + 60,
                         "nbf": int(time.time()) - 1, "iat": time.time()}, SECRET,
                        algorithm="HS256")
    ident = verify_token(SECRET, theirs)
    assert (ident.sub, ident.role) == ("bo", "viewer")


@pytest.mark.parametrize("make", [
    # not yet valid, tampered payload, padding or extra parts, a header without HS256
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60,
                        "nbf": int(time.time()) + 30}, SECRET, algorithm="HS256"),
    lambda: _swap_payload(issue_token(SECRET, "a", "viewer", 60),
                          issue_token(SECRET, "a", "admin", 60)),
    lambda: issue_token(SECRET, "a", "viewer", 60) + "=",
    lambda: issue_token(SECRET, "a", "viewer", 60) + ".x",
    lambda: jwt.encode({"sub": "a", "role": "viewer", "exp": int(time.time()) + 60}, SECRET,
                       algorithm="HS256", headers={"alg": "HS384"}),
    lambda: "e30." + issue_token(SECRET, "a", "viewer", 60).split(".", 1)[1],
])
def test_forged_or_early_tokens_are_unauthorized(make: Any) -> None:
    with pytest.raises(ApiError) as info:
        verify_token(SECRET, make())
    assert info.value.code is ErrorCode.UNAUTHORIZED


def _swap_payload(token: str, other: str) -> str:
    head, _, sig = token.split(".")
    return ".".join((head, other.split(".")[1], sig))


def test_issue_token_rejects_unknown_roles() -> None:
    with pytest.raises(ApiError) as info:
        issue_token(SECRET, "a", "king", 60)
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_require_user_and_role() -> None:
    with pytest.raises(ApiError) as info:
        require_user(ANONYMOUS)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    expired = Identity("a", "viewer", exp=int(time.time()) - 1)
    with pytest.raises(ApiError) as info:
        require_user(expired)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert require_role(Identity("s", "seller", exp=None), "seller") == "s"
    assert require_role(Identity("r", "admin"), "seller") == "r"
    with pytest.raises(ApiError) as info:
        require_role(Identity("v", "viewer"), "seller")
    assert info.value.code is ErrorCode.FORBIDDEN


def test_display_names_never_leak_ids() -> None:
    assert Identity("user-12345", "viewer").display_name() != "user-12345"
    assert "12345" not in mask_id("user-12345")
    assert ANONYMOUS.display_name() == "someone"


@pytest.mark.parametrize("sub", ["ana@example.com", "auth0|5f1c", "ana+live@shop.example",
                                 "u:1.2-3_4", "x" * 64])
def test_every_id_is_a_token_sub_and_back(sub: str) -> None:
    """One definition of an id: what a token may name is exactly what a path may name."""
    assert v.is_id(sub)
    ident = verify_token(SECRET, issue_token(SECRET, sub, "creator", 60))
    assert ident.sub == sub


@pytest.mark.parametrize("sub", ["ana smith", "a/b", "x" * 65, "", "a{b}", "ana\n", "é"])
def test_a_non_id_sub_is_refused_at_issue(sub: str) -> None:
    assert not v.is_id(sub)
    with pytest.raises(ApiError) as info:
        issue_token(SECRET, sub, "viewer", 60)
    assert info.value.code is ErrorCode.BAD_REQUEST and info.value.details == {"field": "sub"}


def test_numeric_dates_may_be_floats() -> None:
    now = time.time()
    tok = jwt.encode({"sub": "a", "role": "viewer", "exp": now + 60.5, "iat": now,
                      "nbf": now - 1.25}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, tok).exp == int(now + 60.5)


# through the real server -----------------------------------------------------------------


async def test_an_email_sub_is_credited_and_reaches_its_ledger(server: ServerThread) -> None:
    creator = "ana@example.com"
    server.product("p1", price=1000, commission_bps=1000)
    sid = server.session(["p1"], creator=creator)
    buyer = await WsClient.connect(server.ws_url, token=server.token("bob+1@example.com"))
    await buyer.ok("join", session=sid)
    order = await buyer.ok("buy_now", product="p1", qty=1, idempotency_key="k1")
    assert order["buyer"] == "bob+1@example.com" and order["lines"][0]["commission"] == 100
    await buyer.close()
    for path in (f"/api/creators/{creator}/ledger", "/api/creators/ana%40example.com/ledger"):
        r = server.http("GET", path, token=server.token(creator, "creator"))
        assert r.status_code == 200, r.text
        assert r.json()["creator"] == creator and r.json()["balance"] == 100
    r = server.http("GET", f"/api/orders/{order['id']}", token=server.token("bob+1@example.com"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("sub", ["ana smith", "a/b", "x" * 65, "ana{x}", "é"])
async def test_a_sub_that_is_not_an_id_is_refused_at_issue_and_verify(
        server: ServerThread, sub: str) -> None:
    r = server.http("POST", "/api/tokens", json={"sub": sub, "role": "creator"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "sub", r.text
    forged = jwt.encode({"sub": sub, "role": "creator", "exp": int(time.time()) + 60},
                        SECRET, algorithm="HS256")
    r = server.http("GET", "/api/creators/anyone/ledger", token=forged)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    assert "must be an id" in r.json()["error"]["message"]
    c = await WsClient.connect(server.ws_url, token=forged)
    assert await close_code(c) == 4001
    anon = await WsClient.connect(server.ws_url)
    assert (await anon.err("auth", token=forged))["code"] == "unauthorized"
    await anon.close()


@pytest.mark.parametrize("claims", [
    {"exp": "9999999999"}, {"exp": 9999999999, "iat": "1"}, {"exp": 9999999999, "nbf": "1"},
])
async def test_time_claims_as_strings_are_refused(server: ServerThread,
                                                  claims: dict[str, Any]) -> None:
    tok = jwt.encode({"sub": "ana", "role": "viewer", **claims}, SECRET, algorithm="HS256")
    c = await WsClient.connect(server.ws_url, token=tok)
    assert await close_code(c) == 4001
    r = server.http("GET", "/api/creators/ana/ledger", token=tok)
    assert r.status_code == 401 and "must be a number" in r.json()["error"]["message"], r.text
    numeric = jwt.encode({"sub": "ana", "role": "viewer", "exp": 9999999999}, SECRET,
                         algorithm="HS256")
    assert server.http("GET", "/api/creators/ana/ledger", token=numeric).status_code == 200
