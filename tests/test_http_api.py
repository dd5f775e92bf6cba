"""The HTTP API (docs/protocol.md, "HTTP API"): products, sessions, tokens, health, errors,
content types and allowed methods."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from server.auth import verify_token
from tests.helpers import SECRET, ServerThread

ERROR_STATUS = {"bad_request": 400, "unknown_op": 400, "unauthorized": 401, "forbidden": 403,
                "not_found": 404, "not_live": 409, "conflict": 409, "too_large": 413,
                "method_not_allowed": 405, "unsupported_media_type": 415, "internal": 500,
                "unavailable": 503}


def error_of(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert ERROR_STATUS[code] == status
    return dict(body["error"])


# products ---------------------------------------------------------------------------------


def test_product_create_get_patch(server: ServerThread) -> None:
    seller = server.token("s1", "seller")
    r = server.http("POST", "/api/products", token=seller, json={
        "id": "prod-1", "title": "Lamp", "price": 2599, "stock": 7, "commission_bps": 1500,
        "image_url": "https://img.example/lamp.jpg"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created == {"id": "prod-1", "seller": "s1", "title": "Lamp", "price": 2599,
                       "currency": "USD", "stock": 7, "commission_bps": 1500,
                       "image_url": "https://img.example/lamp.jpg"}
    assert server.http("GET", "/api/products/prod-1").json() == created
    r = server.http("PATCH", "/api/products/prod-1", token=seller,
                    json={"price": 1999, "stock": 9})
    assert r.status_code == 200, r.text
    assert r.json() | {} == created | {"price": 1999, "stock": 9}
    r = server.http("PATCH", "/api/products/prod-1", token=seller, json={"commission_bps": 0})
    assert r.json()["commission_bps"] == 0
    assert server.http("GET", "/api/products/prod-1").json()["price"] == 1999


def test_product_without_id_gets_one(server: ServerThread) -> None:
    r = server.http("POST", "/api/products", token=server.token("s1", "seller"),
                    json={"title": "T", "price": 1, "stock": 0, "commission_bps": 0})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert re.fullmatch(r"[A-Za-z0-9_\-.:]{1,64}", pid)
    assert r.json()["image_url"] == ""
    assert server.http("GET", f"/api/products/{pid}").status_code == 200


def test_admin_may_create_and_patch_any_product(server: ServerThread) -> None:
    server.product("pa", seller="s1")
    admin = server.token("root", "admin")
    r = server.http("PATCH", "/api/products/pa", token=admin, json={"stock": 1})
    assert r.status_code == 200 and r.json()["stock"] == 1 and r.json()["seller"] == "s1"
    r = server.http("POST", "/api/products", token=admin,
                    json={"id": "pb", "title": "T", "price": 5, "stock": 1, "commission_bps": 1})
    assert r.status_code == 201 and r.json()["seller"] == "root"


@pytest.mark.parametrize("body", [
    {"title": "T", "price": 0, "stock": 1, "commission_bps": 0},
    {"title": "T", "price": -5, "stock": 1, "commission_bps": 0},
    {"title": "T", "price": 1.5, "stock": 1, "commission_bps": 0},
    {"title": "T", "price": "100", "stock": 1, "commission_bps": 0},
    {"title": "T", "price": True, "stock": 1, "commission_bps": 0},
    {"title": "T", "price": 100, "stock": -1, "commission_bps": 0},
    {"title": "T", "price": 100, "stock": 1, "commission_bps": 10_001},
    {"title": "T", "price": 100, "stock": 1, "commission_bps": -1},
    {"title": "", "price": 100, "stock": 1, "commission_bps": 0},
    {"title": "   ", "price": 100, "stock": 1, "commission_bps": 0},
    {"price": 100, "stock": 1, "commission_bps": 0},
    {"title": "T", "stock": 1, "commission_bps": 0},
    {"title": "T", "price": 100, "stock": 1, "commission_bps": 0, "color": "red"},
    {"id": "bad id!", "title": "T", "price": 100, "stock": 1, "commission_bps": 0},
    {"id": 7, "title": "T", "price": 100, "stock": 1, "commission_bps": 0},
    {"id": "p1\n", "title": "T", "price": 100, "stock": 1, "commission_bps": 0},
    {"title": "x" * 201, "price": 100, "stock": 1, "commission_bps": 0},
    [1, 2], "text", 5, None,
])
def test_product_validation_errors_are_400(server: ServerThread, body: Any) -> None:
    r = server.http("POST", "/api/products", token=server.token("s1", "seller"), json=body)
    error_of(r, 400, "bad_request")


def test_product_bad_bodies(server: ServerThread) -> None:
    seller = server.token("s1", "seller")
    for content in (b"", b"{", b"\xff\xfe", b"nul"):
        r = server.http("POST", "/api/products", token=seller, content=content,
                        headers={"Content-Type": "application/json"})
        error_of(r, 400, "bad_request")
    r = server.http("POST", "/api/products", token=seller, content=b'{"title":"' + b"x" * 70_000
                    + b'"}', headers={"Content-Type": "application/json"})
    error_of(r, 413, "too_large")


def test_product_auth_and_roles(server: ServerThread) -> None:
    body = {"title": "T", "price": 100, "stock": 1, "commission_bps": 0}
    error_of(server.http("POST", "/api/products", json=body), 401, "unauthorized")
    error_of(server.http("POST", "/api/products", json=body,
                         headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    error_of(server.http("POST", "/api/products", json=body, token="forged.token.x"), 401,
             "unauthorized")
    for role in ("viewer", "creator"):
        error_of(server.http("POST", "/api/products", json=body,
                             token=server.token("u1", role)), 403, "forbidden")
    server.product("pp", seller="s1")
    error_of(server.http("PATCH", "/api/products/pp", json={"price": 5}), 401, "unauthorized")
    error_of(server.http("PATCH", "/api/products/pp", json={"price": 5},
                         token=server.token("c1", "creator")), 403, "forbidden")
    error_of(server.http("PATCH", "/api/products/pp", json={"price": 5},
                         token=server.token("s2", "seller")), 403, "forbidden")
    assert server.http("GET", "/api/products/pp").json()["price"] == 1000


def test_product_duplicate_id_is_409(server: ServerThread) -> None:
    server.product("dup", seller="s1", price=1000)
    for seller in ("s1", "s2"):
        r = server.http("POST", "/api/products", token=server.token(seller, "seller"), json={
            "id": "dup", "title": "again", "price": 1, "stock": 1, "commission_bps": 0})
        error_of(r, 409, "conflict")
    got = server.http("GET", "/api/products/dup").json()
    assert got["price"] == 1000 and got["seller"] == "s1"


def test_product_patch_validation_and_missing(server: ServerThread) -> None:
    seller = server.token("s1", "seller")
    server.product("pq", seller="s1")
    for body in ({}, {"price": 0}, {"stock": -1}, {"title": "no"}, {"price": "1"}, [1]):
        error_of(server.http("PATCH", "/api/products/pq", token=seller, json=body), 400,
                 "bad_request")
    error_of(server.http("PATCH", "/api/products/nope", token=seller, json={"price": 5}), 404,
             "not_found")
    error_of(server.http("GET", "/api/products/nope"), 404, "not_found")
    error_of(server.http("GET", "/api/products/bad%20id"), 404, "not_found")


# sessions ---------------------------------------------------------------------------------


def test_session_create_get_start_end(server: ServerThread) -> None:
    server.product("p1")
    server.product("p2")
    creator = server.token("c1", "creator")
    r = server.http("POST", "/api/sessions", token=creator,
                    json={"kind": "live", "title": "Friday show", "showcase": ["p2", "p1"]})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["id"].startswith("sess_")
    assert {"id", "creator", "kind", "title", "status", "showcase", "started_at"} <= set(s)
    assert (s["creator"], s["kind"], s["title"], s["status"], s["showcase"],
            s["started_at"]) == ("c1", "live", "Friday show", "scheduled", ["p2", "p1"], None)
    sid = s["id"]
    got = server.http("GET", f"/api/sessions/{sid}").json()
    assert got["status"] == "scheduled" and got["showcase"] == ["p2", "p1"]
    assert got["pinned"] is None
    error_of(server.http("POST", f"/api/sessions/{sid}/end", token=creator), 409, "not_live")
    r = server.http("POST", f"/api/sessions/{sid}/start", token=creator)
    assert r.status_code == 200 and r.json()["status"] == "live"
    assert isinstance(r.json()["started_at"], int)
    error_of(server.http("POST", f"/api/sessions/{sid}/start", token=creator), 409, "conflict")
    r = server.http("POST", f"/api/sessions/{sid}/end", token=creator)
    assert r.status_code == 200 and r.json()["status"] == "ended"
    error_of(server.http("POST", f"/api/sessions/{sid}/end", token=creator), 409, "conflict")
    assert server.http("GET", f"/api/sessions/{sid}").json()["status"] == "ended"


def test_video_session_and_empty_showcase(server: ServerThread) -> None:
    creator = server.token("c1", "creator")
    r = server.http("POST", "/api/sessions", token=creator,
                    json={"kind": "video", "title": "clip", "showcase": []})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "video" and r.json()["showcase"] == []


def test_session_errors(server: ServerThread) -> None:
    server.product("p1")
    creator = server.token("c1", "creator")
    body = {"kind": "live", "title": "t", "showcase": ["p1"]}
    error_of(server.http("POST", "/api/sessions", json=body), 401, "unauthorized")
    for role in ("viewer", "seller"):
        error_of(server.http("POST", "/api/sessions", json=body, token=server.token("u", role)),
                 403, "forbidden")
    r = server.http("POST", "/api/sessions", token=creator,
                    json={"kind": "live", "title": "t", "showcase": ["p1", "ghost"]})
    err = error_of(r, 404, "not_found")
    assert "ghost" in err["message"]
    for bad in ({"kind": "radio", "title": "t", "showcase": []},
                {"kind": "live", "showcase": []},
                {"kind": "live", "title": "t", "showcase": "p1"},
                {"kind": "live", "title": "t", "showcase": [1]},
                {"kind": "live", "title": "t", "showcase": ["p1", "p1"]},
                {"kind": "live", "title": "t", "showcase": ["p"] * 101},
                {"kind": "live", "title": "t", "showcase": [], "extra": 1}, []):
        error_of(server.http("POST", "/api/sessions", token=creator, json=bad), 400,
                 "bad_request")
    sid = server.session(["p1"], creator="c1", start=False)
    for other in (server.token("c2", "creator"), server.token("v", "viewer")):
        error_of(server.http("POST", f"/api/sessions/{sid}/start", token=other), 403,
                 "forbidden")
    error_of(server.http("POST", f"/api/sessions/{sid}/start"), 401, "unauthorized")
    error_of(server.http("POST", "/api/sessions/sess_nope/start", token=creator), 404,
             "not_found")
    error_of(server.http("GET", "/api/sessions/sess_nope"), 404, "not_found")
    assert server.http("GET", f"/api/sessions/{sid}").json()["status"] == "scheduled"


# tokens -----------------------------------------------------------------------------------


def test_demo_token_endpoint(server: ServerThread) -> None:
    r = server.http("POST", "/api/tokens", json={"sub": "ana", "role": "viewer", "name": "Ana"})
    assert r.status_code == 200, r.text
    ident = verify_token(SECRET, r.json()["token"])
    assert (ident.sub, ident.role, ident.name) == ("ana", "viewer", "Ana")
    for bad in ({"sub": "ana", "role": "king"}, {"role": "viewer"},
                {"sub": "a b", "role": "viewer"}, {"sub": "ana", "role": "viewer", "x": 1}):
        error_of(server.http("POST", "/api/tokens", json=bad), 400, "bad_request")


def test_token_endpoint_is_404_without_demo(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo=False)
    r = server.http("POST", "/api/tokens", json={"sub": "ana", "role": "admin"})
    error_of(r, 404, "not_found")


# health, metrics, openapi, unknown routes ---------------------------------------------------


def test_healthz_readyz(server: ServerThread) -> None:
    r = server.http("GET", "/healthz")
    assert r.status_code == 200
    assert r.json()["node"] == server.settings.node_id and r.json()["ok"] is True
    r = server.http("GET", "/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True


def test_readyz_is_503_when_store_is_unreachable(
        make_server: Callable[..., ServerThread], tmp_path: Any) -> None:
    from server.valkey.embedded import EmbeddedValkey

    own = EmbeddedValkey(None, persist=False)
    own.start()
    try:
        server = make_server(store_url=own.url)
        assert server.http("GET", "/readyz").status_code == 200
        own.stop()
        r = server.http("GET", "/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert server.http("GET", "/healthz").status_code == 200
        r = server.http("POST", "/api/products", token=server.token("s", "seller"),
                        json={"title": "T", "price": 1, "stock": 1, "commission_bps": 0})
        error_of_503 = r.json()
        assert r.status_code == 503 and error_of_503["error"]["code"] == "unavailable"
    finally:
        own.stop()


def test_openapi_document(server: ServerThread) -> None:
    r = server.http("GET", "/openapi.json")
    assert r.status_code == 200
    doc = orjson.loads(r.content)
    assert doc["openapi"].startswith("3.")
    assert "/api/products" in doc["paths"] and "/api/sessions" in doc["paths"]
    assert any("{id}" in p for p in doc["paths"])


def test_openapi_describes_every_route(server: ServerThread) -> None:
    from starlette.routing import Route

    doc = server.http("GET", "/openapi.json").json()
    for route in server.app.routes:
        if isinstance(route, Route) and route.path.startswith(("/api", "/healthz", "/readyz",
                                                               "/metrics", "/openapi")):
            assert route.path in doc["paths"], route.path
            for method in route.methods or ():
                if method != "HEAD":
                    assert method.lower() in doc["paths"][route.path], (route.path, method)


def test_metrics_are_prometheus_text(server: ServerThread) -> None:
    server.http("GET", "/healthz")
    r = server.http("GET", "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE livecart_connections gauge" in text
    sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? -?[0-9.e+\-]+(Inf|NaN)?$")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert sample.match(line) or line.split()[-1] in ("+Inf", "NaN"), line


def test_unknown_routes_and_methods_are_json(server: ServerThread) -> None:
    error_of(server.http("GET", "/api/nope"), 404, "not_found")
    error_of(server.http("GET", "/definitely/not/here"), 404, "not_found")
    r = server.http("DELETE", "/api/products")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonx", "multipart/form-data"])
def test_json_bodies_need_a_json_content_type(server: ServerThread,
                                              content_type: str | None) -> None:
    body = orjson.dumps({"title": "T", "price": 100, "stock": 1, "commission_bps": 0})
    headers = {"Content-Type": content_type} if content_type else {}
    r = server.http("POST", "/api/products", token=server.token("s1", "seller"), content=body,
                    headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"


def test_json_content_type_may_carry_parameters(server: ServerThread) -> None:
    body = orjson.dumps({"title": "T", "price": 100, "stock": 1, "commission_bps": 0})
    r = server.http("POST", "/api/products", token=server.token("s1", "seller"), content=body,
                    headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 201, r.text


def test_method_not_allowed_lists_every_method_of_the_path(server: ServerThread) -> None:
    r = server.http("DELETE", "/api/products/p1")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "PATCH"}
