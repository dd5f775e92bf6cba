"""The web demo's voucher and waitlist: the creator shows a voucher card, a viewer applies
it in the cart drawer and checks out at the discounted total; a sold-out product's
waitlist, the restock offer, and buying the held unit."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.browser.conftest import LiveServer, Pages, wait_until

pytestmark = pytest.mark.browser


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


def go_live_and_pin(creator: Any, product: str, *viewers: Any) -> None:
    creator.click("#start-btn")
    creator.wait_for_selector("#status-badge[data-status=live]")
    for viewer in viewers:
        viewer.wait_for_selector("body[data-status=live]")
    creator.click(f".product-row[data-product={product}] [data-action=pin]")
    creator.wait_for_selector(f".product-row[data-product={product}] [aria-pressed=true]")
    for viewer in viewers:
        viewer.wait_for_selector(f"#pin-card[data-product={product}]", state="visible")


def test_voucher_card_and_checkout(live_server: LiveServer, pages: Pages) -> None:
    sid, token = live_server.new_session("Voucher test")
    creator = pages.creator(sid, token)
    buyer = pages.viewer("buyer", sid, delay_ms=0, phone=True)
    go_live_and_pin(creator, "demo_mug", buyer)  # $15.00

    code = f"BT{secrets.token_hex(3).upper()}"
    creator.fill("#voucher-code", code)
    creator.fill("#voucher-percent", "20")
    creator.fill("#voucher-uses", "5")
    creator.click("#voucher-submit")
    creator.wait_for_selector("#voucher-status:has-text('5 left')")
    buyer.wait_for_selector("#voucher-banner", state="visible")
    assert text(buyer, "#voucher-banner-code") == code
    assert "20% off" in text(buyer, "#voucher-banner")

    buyer.click("#add-cart")
    buyer.wait_for_selector("#cart-count:has-text('1')")
    buyer.click("#voucher-banner-use")  # fills the code in the drawer and applies it
    buyer.wait_for_selector("#cart-dialog[open] .cart-line[data-product=demo_mug]")
    buyer.wait_for_selector("#voucher-line", state="visible")
    wait_until(lambda: text(buyer, "#voucher-discount") == "\u2212$3.00", what="discount shown")
    assert text(buyer, "#cart-total") == "$12.00"
    pages.shoot("buyer-voucher-cart", buyer)
    buyer.click("#checkout-btn")
    buyer.wait_for_selector("#order-dialog[open]")
    assert text(buyer, "#order-total") == "$12.00"
    oid = buyer.get_attribute("#order-dialog", "data-order-id")
    me = buyer.evaluate("window.__livecart.state.me.token")
    order = live_server.http("GET", f"/api/orders/{oid}", token=me)
    assert (order["total"], order["discount"], order["voucher"]) == (1200, 300, code)
    assert order["lines"][0]["commission"] == 1200 * 1200 // 10_000  # on what was paid
    card = live_server.http("GET", f"/api/vouchers/{code}")
    assert (card["used"], card["discount_given"]) == (1, 300)
    creator.wait_for_selector("#voucher-status:has-text('4 left')", timeout=10_000)


def test_waitlist_offer_on_a_sold_out_product(live_server: LiveServer, pages: Pages) -> None:
    sid, token = live_server.new_session("Waitlist test")
    creator = pages.creator(sid, token)
    fan = pages.viewer("fan", sid, delay_ms=0)
    go_live_and_pin(creator, "demo_lipstick", fan)
    seller = live_server.token("seller_demo", "seller")
    live_server.http("PATCH", "/api/products/demo_lipstick", {"stock": 0}, seller)
    fan.wait_for_selector("#pin-card[data-sold-out=true]")
    fan.wait_for_selector("#waitlist-btn", state="visible")
    assert fan.locator("#buy-now").is_disabled()
    fan.click("#waitlist-btn")
    fan.wait_for_selector("#waitlist-btn:has-text('On the waitlist · #1')")
    live_server.http("PATCH", "/api/products/demo_lipstick", {"stock": 1}, seller)
    fan.wait_for_selector("#pin-card[data-sold-out=false]")  # held for this viewer
    fan.wait_for_selector("#buy-now:enabled")
    pages.shoot("fan-restocked", fan)
    fan.click("#buy-now")
    fan.wait_for_selector("#order-dialog[open]")
    assert text(fan, "#order-total") == "$19.00"
    product = live_server.http("GET", "/api/products/demo_lipstick")
    assert product["stock"] == 0
