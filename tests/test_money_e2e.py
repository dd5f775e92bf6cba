"""Attribution, commission, refunds, report and ledger end to end (WebSocket + HTTP):
exact at the largest amounts, and refunds only by a seller with lines in the order."""

from __future__ import annotations

import pytest

from tests.helpers import ServerThread, WsClient
from tests.oracle import clawed_back, commission

pytestmark = pytest.mark.anyio


async def test_report_and_ledger_match_hand_computed_numbers(server: ServerThread) -> None:
    seller = server.token("s1", "seller")
    server.product("pA", seller="s1", price=1999, stock=100, commission_bps=1000)
    server.product("pB", seller="s1", price=333, stock=50, commission_bps=750)
    sid = server.session(["pA", "pB"], creator="cr")
    r = server.http("PUT", f"/api/sessions/{sid}/rates", token=seller, json={"pB": 1200})
    assert r.status_code == 200 and r.json()["rates"] == {"pB": 1200}
    assert server.http("PUT", f"/api/sessions/{sid}/rates", token=seller,
                       json={"pA": 500}).status_code == 409  # not above the product rate
    assert server.http("PUT", f"/api/sessions/{sid}/rates", token=server.token("cr", "creator"),
                       json={"pA": 2000}).status_code == 403  # creators cannot set rates

    async def viewer(sub: str) -> WsClient:
        c = await WsClient.connect(server.ws_url, token=server.token(sub, name=sub.upper()))
        await c.ok("join", session=sid)
        return c

    v1, v2, v3, v4 = [await viewer(s) for s in ("v1", "v2", "v3", "v4")]
    creator = await WsClient.connect(server.ws_url, token=server.token("cr", "creator"))
    await creator.ok("join", session=sid)

    # v1 clicks and buys now: direct, 3 x 1999 at 10%
    await v1.ok("click", product="pA")
    o1 = await v1.ok("buy_now", product="pA", qty=3, idempotency_key="o1")
    line = o1["lines"][0]
    assert (line["amount"], line["commission"], line["attribution"], line["session"]) == \
        (5997, 599, "direct", sid)
    # v2 carts pB and checks out in the session: direct at the live-exclusive 12%
    await v2.ok("cart_add", product="pB", qty=7)
    o2 = await v2.ok("checkout", idempotency_key="o2", total=2331)
    assert (o2["lines"][0]["commission"], o2["lines"][0]["attribution"]) == (279, "direct")
    # v3 touches pB in the session, leaves, then checks out: indirect
    await v3.ok("click", product="pB")
    await v3.ok("cart_add", product="pB", qty=2)
    await v3.ok("leave")
    o3 = await v3.ok("checkout", idempotency_key="o3")
    assert (o3["lines"][0]["amount"], o3["lines"][0]["commission"],
            o3["lines"][0]["attribution"]) == (666, 79, "indirect")
    # the creator buys in their own session: none, no commission, not in GMV
    o4 = await creator.ok("buy_now", product="pA", qty=1, idempotency_key="self")
    assert (o4["lines"][0]["attribution"], o4["lines"][0]["commission"],
            o4["lines"][0]["session"]) == ("none", 0, None)
    # v4 clicked pA in the session; the purchase happens on an external checkout
    await v4.ok("click", product="pA")
    ext = {"external_id": "shop-77", "buyer": "v4",
           "lines": [{"product": "pA", "qty": 1, "unit_price": 1500}]}
    r = server.http("POST", "/api/orders", token=seller, json=ext)
    assert r.status_code == 201, r.text
    o5 = r.json()
    assert (o5["lines"][0]["attribution"], o5["lines"][0]["commission"]) == ("indirect", 150)
    again = server.http("POST", "/api/orders", token=seller, json=ext)
    assert again.status_code == 200 and again.json()["id"] == o5["id"]
    assert server.http("POST", "/api/orders", token=seller, json={
        **ext, "lines": [{"product": "pA", "qty": 2, "unit_price": 1500}]}).status_code == 409
    # a buyer with no touch at all: none
    r = server.http("POST", "/api/orders", token=seller, json={
        "external_id": "shop-78", "buyer": "stranger",
        "lines": [{"product": "pB", "qty": 1, "unit_price": 333}]})
    assert r.json()["lines"][0]["attribution"] == "none"

    # partial refund of v1's order: 1 of 3 units claws back floor(599 * 1 / 3) = 199
    refund = {"refund_id": "rf1", "lines": [{"product": "pA", "qty": 1}]}
    r = server.http("POST", f"/api/orders/{o1['id']}/refund", token=seller, json=refund)
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["clawback"]) == (1999, 199)
    r2 = server.http("POST", f"/api/orders/{o1['id']}/refund", token=seller, json=refund)
    assert r2.json() == r.json()  # same refund_id: the original result, nothing changes
    over = server.http("POST", f"/api/orders/{o1['id']}/refund", token=seller,
                       json={"refund_id": "rf2", "lines": [{"product": "pA", "qty": 3}]})
    assert over.status_code == 409 and over.json()["error"]["code"] == "conflict"
    assert server.http("POST", f"/api/orders/{o1['id']}/refund",
                       token=server.token("other", "seller"), json={
                           "refund_id": "rf3"}).status_code == 403
    assert server.http("POST", f"/api/orders/{o1['id']}/refund", token=server.token("v1"),
                       json={"refund_id": "rf4"}).status_code == 403

    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("cr", "creator")).json()
    assert report["orders"] == 4
    assert report["units"] == 3 + 7 + 2 + 1
    assert report["gmv"] == 5997 + 2331 + 666 + 1500
    assert report["commission"] == 599 + 279 + 79 + 150
    assert report["gmv_refunded"] == 1999
    assert report["commission_clawed_back"] == 199
    assert report["replay"] == {"orders": 0, "units": 0, "gmv": 0, "commission": 0}
    assert report["clicks"] == 3 and report["adds"] == 2
    assert report["viewers"]["unique"] == 4  # the buyers; the creator's console is not a viewer
    by_product = {p["product"]: p for p in report["products"]}
    assert by_product["pA"]["gmv"] == 5997 + 1500 and by_product["pB"]["commission"] == 279 + 79
    assert server.http("GET", f"/api/sessions/{sid}/report",
                       token=server.token("v1")).status_code == 403

    ledger = server.http("GET", "/api/creators/cr/ledger", token=server.token("cr", "creator"))
    body = ledger.json()
    amounts = sorted(e["amount"] for e in body["entries"])
    assert amounts == sorted([599, 279, 79, 150, -199])
    assert body["balance"] == sum(amounts) == 908
    assert all(e["status"] == "pending" for e in body["entries"])
    csv = server.http("GET", "/api/creators/cr/ledger", token=server.token("admin1", "admin"),
                      headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("order,product,session,qty,amount,kind")
    assert len(csv.text.splitlines()) == 6
    assert server.http("GET", "/api/creators/cr/ledger",
                       token=server.token("v1")).status_code == 403

    assert server.http("GET", "/api/products/pA").json()["stock"] == 100 - 3 - 1 + 1
    assert server.http("GET", "/api/products/pB").json()["stock"] == 50 - 7 - 2
    got = server.http("GET", f"/api/orders/{o2['id']}", token=server.token("v2"))
    assert got.status_code == 200 and got.json()["id"] == o2["id"]
    assert server.http("GET", f"/api/orders/{o2['id']}",
                       token=server.token("v3")).status_code == 403
    stats = await creator.wait_event(
        lambda e: e["t"] == "stats" and e["d"]["commission_clawed_back"] == 199, timeout=5)
    assert stats["d"]["gmv"] == 10494 and stats["d"]["gmv_refunded"] == 1999
    assert stats["d"]["commission"] == 1107 and stats["d"]["commission_clawed_back"] == 199
    assert not any(e["t"] == "stats" for e in v1.events)  # creator only
    for c in (v1, v2, v3, v4, creator):
        await c.close()


async def test_commission_and_clawback_exact_at_extreme_values(server: ServerThread) -> None:
    seller = server.token("s1", "seller")
    server.product("big", seller="s1", price=99_999_999, stock=1, commission_bps=9999)
    sid = server.session(["big"])
    v = await WsClient.connect(server.ws_url, token=server.token("whale"))
    await v.ok("join", session=sid)
    await v.ok("click", product="big")
    r = server.http("POST", "/api/orders", token=seller, json={
        "external_id": "huge", "buyer": "whale",
        "lines": [{"product": "big", "qty": 9999, "unit_price": 99_999_999}]})
    line = r.json()["lines"][0]
    amount = 9999 * 99_999_999
    assert line["amount"] == amount
    assert line["commission"] == commission(amount, 9999) == 999_800_000_001
    refund = server.http("POST", f"/api/orders/{r.json()['id']}/refund", token=seller,
                         json={"refund_id": "r1", "lines": [{"product": "big", "qty": 3333}]})
    assert refund.json()["clawback"] == clawed_back(line["commission"], 3333, 9999)
    rest = server.http("POST", f"/api/orders/{r.json()['id']}/refund", token=seller,
                       json={"refund_id": "r2"})
    assert refund.json()["clawback"] + rest.json()["clawback"] == line["commission"]
    await v.close()


async def test_refund_of_an_order_with_none_of_your_lines_is_forbidden(
        server: ServerThread) -> None:
    server.product("p1", seller="s1")
    sid = server.session(["p1"])
    v = await WsClient.connect(server.ws_url, token=server.token("b"))
    await v.ok("join", session=sid)
    order = await v.ok("buy_now", product="p1", qty=1, idempotency_key="k")
    r = server.http("POST", f"/api/orders/{order['id']}/refund",
                    token=server.token("s2", "seller"), json={"refund_id": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    await v.close()
