"""Vouchers: creation, the voucher card, checkout/buy_now discounts, commission on the paid
amount, refunds on it, exact use counting under a 500-buyer race, retries, aborts, and the
saga sweep finishing or undoing a use after a crash. The arithmetic's property test is here
too (server/cart/discounts.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.cart.discounts import Terms, distribute, line_discounts, order_discount
from server.errors import ApiError
from server.node import Node
from tests.helpers import ServerThread, WsClient, joined_viewer

pytestmark = pytest.mark.anyio


def _voucher(server: ServerThread, code: str, *, seller: str = "s1", status: int = 201,
             **fields: Any) -> dict[str, Any]:
    body = {"code": code, "total_uses": 10, "ends_at": int(time.time() * 1000) + 3_600_000,
            **fields}
    if "amount_off" not in body and "percent_off" not in body:
        body["percent_off"] = 10
    body = {k: val for k, val in body.items() if val is not None}
    r = server.http("POST", "/api/vouchers", token=server.token(seller, "seller"), json=body)
    assert r.status_code == status, r.text
    return dict(r.json())


def test_voucher_creation_is_validated_precisely(server: ServerThread) -> None:
    server.product("vp1", seller="s1")
    server.product("vp2", seller="s2")
    sid = server.session(["vp1"])
    ends = int(time.time() * 1000) + 60_000
    url, seller = "/api/vouchers", server.token("s1", "seller")
    assert server.http("POST", url, json={"code": "x"}).status_code == 401
    assert server.http("POST", url, token=server.token("v", "viewer"),
                       json={"code": "x"}).status_code == 403

    def field(body: dict[str, Any]) -> Any:
        r = server.http("POST", url, token=seller, json=body)
        assert r.status_code == 400, r.text
        return r.json()["error"].get("field")

    base = {"code": "V1", "total_uses": 5, "ends_at": ends}
    assert field(base) == "percent_off"  # neither
    assert field({**base, "percent_off": 10, "amount_off": 100}) == "amount_off"  # both
    assert field({**base, "percent_off": 0}) == "percent_off"
    assert field({**base, "percent_off": 101}) == "percent_off"
    assert field({**base, "percent_off": 5.5}) == "percent_off"
    assert field({**base, "amount_off": -1}) == "amount_off"
    assert field({**base, "percent_off": 10, "total_uses": 0}) == "total_uses"
    assert field({**base, "percent_off": 10, "per_buyer": 6}) == "per_buyer"
    assert field({**base, "percent_off": 10, "min_spend": -1}) == "min_spend"
    assert field({**base, "percent_off": 10, "ends_at": ends - 120_000}) == "ends_at"
    assert field({**base, "percent_off": 10, "starts_at": ends + 1}) == "ends_at"
    assert field({**base, "percent_off": 10, "products": "vp1"}) == "products"
    assert field({**base, "percent_off": 10, "products": ["vp1", "vp1"]}) == "products"
    assert field({**base, "code": "bad code", "percent_off": 10}) == "code"
    r = server.http("POST", url, token=seller, json={**base, "percent_off": 10, "extra": 1})
    assert r.status_code == 400
    r = server.http("POST", url, token=seller, json={**base, "percent_off": 10,
                                                      "products": ["nope"]})
    assert r.status_code == 404 and r.json()["error"]["product"] == "nope"
    r = server.http("POST", url, token=seller, json={**base, "percent_off": 10,
                                                      "products": ["vp2"]})
    assert r.status_code == 403
    r = server.http("POST", url, token=seller, json={**base, "percent_off": 10,
                                                      "session": "sess_none"})
    assert r.status_code == 404
    made = _voucher(server, "V1", percent_off=10, total_uses=5, products=["vp1"], session=sid)
    assert made["code"] == "V1" and made["seller"] == "s1" and made["remaining"] == 5
    assert made["percent_off"] == 10 and made["amount_off"] is None and made["per_buyer"] == 1
    again = server.http("POST", url, token=seller, json={**base, "percent_off": 10})
    assert again.status_code == 409
    card = server.http("GET", "/api/vouchers/V1").json()
    assert card["used"] == 0 and "uses" not in card
    assert server.http("GET", "/api/vouchers/V1", token=seller).json()["uses"] == []
    assert server.http("GET", "/api/vouchers/nope").status_code == 404


async def test_checkout_discount_commission_refund_and_report(server: ServerThread) -> None:
    server.product("pA", seller="s1", price=1999, stock=100, commission_bps=1000)
    server.product("pB", seller="s1", price=333, stock=50, commission_bps=750)
    server.product("pC", seller="s2", price=500, stock=50, commission_bps=1000)
    sid = server.session(["pA", "pB", "pC"], creator="cr")
    _voucher(server, "SAVE15", percent_off=15, min_spend=1000, total_uses=3)
    creator = await WsClient.connect(server.ws_url, token=server.token("cr", "creator"))
    await creator.ok("join", session=sid)
    buyer = await joined_viewer(server, "ann", sid)
    shown = await creator.ok("voucher", code="SAVE15")
    assert shown["voucher"]["code"] == "SAVE15" and shown["voucher"]["remaining"] == 3
    ev = await buyer.wait_event("voucher")
    assert ev["d"]["percent_off"] == 15 and ev["d"]["min_spend"] == 1000
    assert (await buyer.err("voucher", code="SAVE15"))["code"] == "forbidden"

    await buyer.ok("cart_set", product="pA", qty=3)  # 5997
    await buyer.ok("cart_set", product="pB", qty=2)  # 666
    await buyer.ok("cart_set", product="pC", qty=1)  # 500: another seller's, not covered
    # eligible 6663, discount floor(6663 * 15 / 100) = 999, spread 899 + 100 (largest
    # remainder: 999*5997 mod 6663 = 966 < 999*666 mod 6663 = 5697)
    stale = await buyer.err("checkout", idempotency_key="k1", total=7163, voucher="SAVE15")
    assert stale["code"] == "conflict" and stale["total"] == 6164
    order = await buyer.ok("checkout", idempotency_key="k1", total=6164, voucher="SAVE15")
    by = {line["product"]: line for line in order["lines"]}
    assert (order["total"], order["discount"], order["voucher"]) == (6164, 999, "SAVE15")
    assert [by[p]["discount"] for p in ("pA", "pB", "pC")] == [899, 100, 0]
    assert [by[p]["amount"] for p in ("pA", "pB", "pC")] == [5997, 666, 500]
    # commission on what was paid: floor(5098 * 10%), floor(566 * 7.5%), floor(500 * 10%)
    assert [by[p]["commission"] for p in ("pA", "pB", "pC")] == [509, 42, 50]
    again = await buyer.ok("checkout", idempotency_key="k1", total=6164, voucher="SAVE15")
    assert again == order
    card = server.http("GET", "/api/vouchers/SAVE15").json()
    assert (card["used"], card["held"], card["discount_given"]) == (1, 0, 999)
    # per buyer (1): a second use by ann is refused, nothing is taken
    await buyer.ok("cart_set", product="pA", qty=1)
    err = await buyer.err("checkout", idempotency_key="k2", voucher="SAVE15")
    assert err["code"] == "limit_exceeded" and err["voucher"] == "SAVE15"
    assert server.http("GET", "/api/products/pA").json()["stock"] == 97
    # under the minimum spend, and covering nothing: refused with the reason
    bob = await joined_viewer(server, "bob", sid)
    await bob.ok("cart_set", product="pB", qty=1)
    err = await bob.err("checkout", idempotency_key="b1", voucher="SAVE15")
    assert (err["code"], err["reason"], err["subtotal"]) == ("voucher_not_applicable",
                                                             "min_spend", 333)
    await bob.ok("cart_remove", product="pB")
    await bob.ok("cart_set", product="pC", qty=3)
    err = await bob.err("checkout", idempotency_key="b2", voucher="SAVE15")
    assert (err["code"], err["reason"]) == ("voucher_not_applicable", "products")
    err = await bob.err("checkout", idempotency_key="b3", voucher="NOPE")
    assert (err["code"], err["field"]) == ("not_found", "voucher")
    assert server.http("GET", "/api/products/pB").json()["stock"] == 48
    assert server.http("GET", "/api/products/pC").json()["stock"] == 49
    # buy_now applies it too: 2 x 1999 = 3998 -> 599 off
    now = await bob.ok("buy_now", product="pA", qty=2, idempotency_key="b4", voucher="SAVE15")
    assert (now["total"], now["lines"][0]["discount"], now["lines"][0]["commission"]) == \
        (3399, 599, 339)

    seller = server.token("s1", "seller")
    oid = order["id"]
    r = server.http("POST", f"/api/orders/{oid}/refund", token=seller,
                    json={"refund_id": "r1", "lines": [{"product": "pA", "qty": 1}]})
    assert (r.json()["amount"], r.json()["clawback"]) == (1699, 169)  # of 5098 paid, 509
    r = server.http("POST", f"/api/orders/{oid}/refund", token=seller,
                    json={"refund_id": "r2", "lines": [{"product": "pA", "qty": 2}]})
    assert (r.json()["amount"], r.json()["clawback"]) == (3399, 340)  # exactly the rest
    ledger = server.http("GET", "/api/creators/cr/ledger", token=server.token("cr", "creator"))
    amounts = sorted(e["amount"] for e in ledger.json()["entries"])
    assert amounts == sorted([509, 42, 50, 339, -169, -340])
    assert ledger.json()["balance"] == 509 + 42 + 50 + 339 - 169 - 340
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("cr", "creator")).json()
    assert report["vouchers"] == {"orders": 2, "discount": 999 + 599}
    assert report["gmv"] == 6164 + 3399 and report["gmv_refunded"] == 5098
    assert report["commission"] == 509 + 42 + 50 + 339
    by_product = {p["product"]: p for p in report["products"]}
    assert by_product["pA"]["voucher_discount"] == 899 + 599
    uses = server.http("GET", "/api/vouchers/SAVE15", token=seller).json()
    assert uses["used"] == 2 and uses["discount_given"] == 1598
    assert sorted(u["discount"] for u in uses["uses"]) == [599, 999]
    for c in (creator, buyer, bob):
        await c.close()


async def test_voucher_race_500_buyers_50_uses(make_server: Any) -> None:
    server = make_server(store_timeout_s=5.0)  # a shared 2-core box: no store timeouts
    server.product("hot", seller="s1", price=1000, stock=1000, commission_bps=1000)
    sid = server.session(["hot"], creator="cr")
    _voucher(server, "RACE", amount_off=100, total_uses=50)
    buyers = [await WsClient.connect(server.ws_url, token=server.token(f"u{i}"))
              for i in range(500)]
    await asyncio.gather(*(b.ok("join", session=sid) for b in buyers))
    async def buy(b: WsClient) -> dict[str, Any]:  # a loaded box: give the storm time
        await b.ws.send(b.encode({"id": 1, "op": "buy_now", "product": "hot", "qty": 1,
                                  "idempotency_key": "race", "voucher": "RACE"}))
        return await b.reply(1, timeout=60)

    replies = await asyncio.gather(*(buy(b) for b in buyers))
    ok = [r["result"] for r in replies if r["ok"]]
    assert len(ok) == 50
    assert {r["error"]["code"] for r in replies if not r["ok"]} == {"voucher_used_up"}
    assert all((o["total"], o["discount"], o["lines"][0]["commission"]) == (900, 100, 90)
               for o in ok)
    card = server.http("GET", "/api/vouchers/RACE").json()
    assert (card["used"], card["held"], card["remaining"], card["discount_given"]) == \
        (50, 0, 0, 5000)
    assert server.http("GET", "/api/products/hot").json()["stock"] == 950  # aborts gave back
    ledger = server.http("GET", "/api/creators/cr/ledger", token=server.token("cr", "creator"))
    assert ledger.json()["balance"] == 50 * 90
    await asyncio.gather(*(b.close() for b in buyers))


async def test_retries_and_aborts_use_a_voucher_once(server: ServerThread) -> None:
    server.product("q1", seller="s1", price=800, stock=10)
    server.product("q2", seller="s1", price=200, stock=1)
    sid = server.session(["q1", "q2"])
    _voucher(server, "ONE", amount_off=300, total_uses=1)
    a = await joined_viewer(server, "amy", sid)
    await a.ok("cart_set", product="q1", qty=1)
    await a.ok("cart_set", product="q2", qty=1)
    other = await joined_viewer(server, "oz", sid)
    await other.ok("buy_now", product="q2", qty=1, idempotency_key="o")
    err = await a.err("checkout", idempotency_key="k", voucher="ONE")
    assert err["code"] == "out_of_stock"  # the attempt aborted: its use came back
    card = server.http("GET", "/api/vouchers/ONE").json()
    assert (card["used"], card["held"], card["remaining"]) == (0, 0, 1)
    await a.ok("cart_remove", product="q2")
    twins = [await joined_viewer(server, "amy", sid) for _ in range(5)]
    orders = await asyncio.gather(*(t.ok("checkout", idempotency_key="k", voucher="ONE")
                                    for t in [a, *twins]))
    assert len({o["id"] for o in orders}) == 1 and orders[0]["total"] == 500
    card = server.http("GET", "/api/vouchers/ONE").json()
    assert (card["used"], card["held"], card["remaining"]) == (1, 0, 0)
    retry = await a.ok("checkout", idempotency_key="k", voucher="ONE")
    assert retry["id"] == orders[0]["id"]
    assert (await a.err("checkout", idempotency_key="k", voucher="TWO"))["code"] in (
        "conflict", "not_found")
    for c in (a, other, *twins):
        await c.close()


async def test_the_sweep_finishes_or_undoes_a_use_after_a_crash(make_server: Any,
                                                                valkey_url: str) -> None:
    """A node that dies mid-purchase: a held use of an uncommitted attempt is released at
    the takeover time; a committed order's use is taken at the redo time. The "dead node"
    is a Node of the same deployment that runs some steps and stops; the server sweeps."""
    server = make_server(saga_takeover_ms=300, saga_redo_ms=300, counters_interval_s=0.1)
    server.product("z1", seller="s1", price=1000, stock=10, commission_bps=1000)
    _voucher(server, "CRASH", percent_off=20, total_uses=5)
    node = Node(server.settings, valkey_url)
    await node.store.open()
    await node.store.load_all()
    scripts, terms = node.scripts, await node.vouchers.terms("CRASH")
    plan = {"op": "checkout", "buyer": "zed", "currency": "USD", "room": "", "total": None,
            "lines": [{"product": "z1", "qty": 2, "seen": None, "session": None,
                       "attribution": "none", "creator": ""}],
            "voucher": terms.to_plan(), "voucher_room": ""}

    async def begun(oid: str) -> int:
        got = await scripts.begin_order(oid, "fp", orjson.dumps(plan),
                                        int(time.time() * 1000) + 300)
        await scripts.reserve(
            "z1", f"{oid}#{got.attempt}", "zed", 2, None, "list", "", "")
        await scripts.reserve_voucher("CRASH", f"{oid}#{got.attempt}", "zed", 400, "")
        return got.attempt

    async def card() -> dict[str, Any]:
        return dict(await node.vouchers.get("CRASH"))

    # 1. dies before commit: the sweep aborts the attempt, releasing units and the use
    await begun("ord_" + "1" * 20)
    assert (await card())["held"] == 1
    deadline = time.monotonic() + 5
    while (await card())["held"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert ((await card())["held"], (await card())["used"]) == (0, 0)
    assert server.http("GET", "/api/products/z1").json()["stock"] == 10
    # a late reserve of that abandoned attempt is refused (tombstone)
    with pytest.raises(ApiError):
        await scripts.reserve_voucher("CRASH", "ord_" + "1" * 20 + "#1", "zed", 400, "")
    # 2. dies after commit: the sweep applies the effects, the use among them
    oid = "ord_" + "2" * 20
    attempt = await begun(oid)
    line = {"product": "z1", "qty": 2, "unit_price": 1000, "amount": 2000, "discount": 400,
            "commission": 0, "seller": "s1", "session": None, "attribution": "none",
            "creator": ""}
    await scripts.commit_order(oid, attempt, {"buyer": "zed", "currency": "USD",
                                              "source": "checkout", "total": None,
                                              "voucher": "CRASH"},
                               [line], int(time.time() * 1000) + 300, [])
    deadline = time.monotonic() + 5
    while (await card())["used"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    got = await card()
    assert (got["used"], got["held"], got["discount_given"]) == (1, 0, 400)
    product = server.http("GET", "/api/products/z1").json()
    assert product["stock"] == 8
    await node.store.close()


# the arithmetic ---------------------------------------------------------------------------

amounts = st.lists(st.integers(0, 10_000_000), min_size=1, max_size=8)


@given(amounts=amounts, discount_share=st.integers(0, 1000))
def test_distribute_is_exact_and_bounded(amounts: list[int], discount_share: int) -> None:
    total = sum(amounts)
    discount = total * discount_share // 1000
    shares = distribute(discount, amounts)
    assert sum(shares) == discount
    assert all(0 <= s <= a for s, a in zip(shares, amounts, strict=True))
    # largest remainder: each share is its exact quota rounded down or up
    for s, a in zip(shares, amounts, strict=True):
        assert total == 0 or discount * a // total <= s <= discount * a // total + 1


@given(amounts=amounts, percent=st.integers(1, 100), amount_off=st.integers(1, 10**9),
       percent_kind=st.booleans(), min_spend=st.integers(0, 10**6))
def test_line_discounts_follow_the_rule(amounts: list[int], percent: int, amount_off: int,
                                        percent_kind: bool, min_spend: int) -> None:
    terms = Terms("V", "s1", percent if percent_kind else 0, 0 if percent_kind else amount_off,
                  min_spend, ())
    lines = [{"product": f"p{i}", "seller": "s1" if i % 3 else "s2", "amount": a}
             for i, a in enumerate(amounts)]
    eligible = [line["amount"] for line in lines if line["seller"] == "s1"]
    subtotal = sum(eligible)
    if not eligible or subtotal < min_spend:
        with pytest.raises(ApiError) as caught:
            line_discounts(terms, lines)
        assert caught.value.code.value == "voucher_not_applicable"
        return
    shares = line_discounts(terms, lines)
    expected = subtotal * percent // 100 if percent_kind else min(amount_off, subtotal)
    assert sum(shares) == expected == order_discount(terms, subtotal)
    assert all(isinstance(s, int) and 0 <= s <= line["amount"]
               for s, line in zip(shares, lines, strict=True))
    assert all(s == 0 for s, line in zip(shares, lines, strict=True) if line["seller"] != "s1")
