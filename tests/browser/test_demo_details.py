"""The web demo's details a demanding user checks: the console before Go live, viewer
counts without the creator, the chart agreeing with its tile, deals that are Buy now
only, the per-buyer limit, human toasts below the header, and a shoppable video that is
never presented as a live show."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import LiveServer, Pages, wait_until

pytestmark = pytest.mark.browser


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


def rect(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return dict(box)


def test_console_controls_viewers_and_chart(live_server: LiveServer, pages: Pages) -> None:
    sid, token = live_server.new_session("Console test")
    creator = pages.creator(sid, token)
    # before Go live: nothing can be pinned or put on a deal, and the page says why
    pins = creator.locator(".product-row [data-action=pin]")
    assert pins.count() == 4
    assert all(pins.nth(i).is_disabled() for i in range(4))
    assert all(b.is_disabled() for b in creator.locator(".product-row [data-action=deal]").all())
    assert creator.locator("#deal-submit").is_disabled()
    assert creator.locator("#deal-price").is_disabled()
    assert "go live" in text(creator, "#showcase-note").lower()
    assert creator.locator("#deal-locked").is_visible()

    one = pages.viewer("viewer-1", sid)
    two = pages.viewer("viewer-2", sid)
    creator.click("#start-btn")
    creator.wait_for_selector("#status-badge[data-status=live]")
    creator.wait_for_selector(".product-row[data-product=demo_mug] [data-action=pin]:enabled")
    assert creator.locator("#deal-submit").is_enabled()
    assert creator.locator("#deal-locked").is_hidden()

    # two viewer tabs are two viewers: the console itself is not one
    wait_until(lambda: text(creator, "#n-viewers") == "2", what="2 viewers on the tile")
    for viewer in (one, two):
        wait_until(lambda v=viewer: text(v, "#viewers") == "2", what="2 viewers on a viewer")
    creator.wait_for_timeout(1500)  # a few more ticks: still 2, never 3
    assert text(creator, "#n-viewers") == "2"
    # the chart's label says what the tile says
    wait_until(lambda: creator.evaluate("window.__livecart.state.chart?.label")
               == "2 viewers now", what="chart label = tile")

    # an order: its dot sits inside the chart, on the curve, not on the top edge
    creator.click(".product-row[data-product=demo_mug] [data-action=pin]")
    one.wait_for_selector("#pin-card[data-product=demo_mug]", state="visible")
    one.click("#buy-now")
    one.wait_for_selector("#order-dialog[open]")
    wait_until(lambda: creator.evaluate("(window.__livecart.state.chart?.dots || []).length"),
               what="an order dot on the chart")
    chart = creator.evaluate("window.__livecart.state.chart")
    for dot in chart["dots"]:
        assert dot["r"] <= dot["x"] <= chart["width"] - dot["r"], (dot, chart)
        assert dot["r"] < dot["y"] <= chart["height"] - dot["r"], (dot, chart)
        assert dot["y"] > 8 + dot["r"] + 6, "the dot is stuck to the chart's top edge"

    # a toast sits below the console's header
    creator.evaluate("import('/static/common.js').then((m) => m.toast('Hello there'))")
    creator.wait_for_selector(".toast:has-text('Hello there')")
    assert rect(creator, ".toast")["y"] >= rect(creator, "header")["y"] + rect(
        creator, "header")["height"]


def test_a_deal_card_offers_only_buy_now_and_stops_at_the_limit(live_server: LiveServer,
                                                                pages: Pages) -> None:
    sid, token = live_server.new_session("Deal card test")
    creator = pages.creator(sid, token)
    buyer = pages.viewer("buyer", sid, phone=True)
    creator.click("#start-btn")
    creator.wait_for_selector("#status-badge[data-status=live]")
    buyer.wait_for_selector("body[data-status=live]")
    creator.select_option("#deal-product", "demo_sneakers")
    creator.fill("#deal-price", "61.99")
    creator.fill("#deal-stock", "10")
    creator.fill("#deal-limit", "1")
    creator.fill("#deal-duration", "8")
    creator.click("#deal-submit")
    creator.wait_for_selector("#deal-status:has-text('10 left')")

    buyer.wait_for_selector("#pin-card[data-product=demo_sneakers]", state="visible")
    buyer.wait_for_selector("#pin-deal-row", state="visible")
    # only Buy now, on one line, and the card says why there is no cart
    assert buyer.locator("#add-cart").is_hidden()
    assert text(buyer, "#buy-now") == "Buy now · $61.99"
    button = rect(buyer, "#buy-now")
    assert button["height"] <= 44, f"'Buy now · $61.99' wraps: {button}"
    assert buyer.evaluate(
        "(b => b.scrollWidth <= b.clientWidth)(document.querySelector('#buy-now'))")
    note = text(buyer, "#pin-deal-note")
    assert "Buy now only" in note and "max 1 per buyer" in note and "$89.00" in note
    showcase_button = buyer.locator(".showcase-item[data-product=demo_sneakers] button")
    assert showcase_button.is_disabled() and "flash deal" in (
        showcase_button.get_attribute("aria-label") or "")

    buyer.click("#buy-now")
    buyer.wait_for_selector("#order-dialog[open]")
    assert text(buyer, "#order-total") == "$61.99"
    buyer.click("#order-dialog [data-close]")
    # the limit is reached: Buy now is off, and says so
    buyer.wait_for_selector("#buy-now:disabled:has-text('Limit reached')")

    # a reloaded tab does not know what it bought: the server's refusal reads as a sentence
    buyer.reload()
    buyer.wait_for_selector("#pin-card[data-product=demo_sneakers]", state="visible")
    buyer.click("#buy-now")
    toast = buyer.locator(".toast").last
    toast.wait_for()
    message = toast.inner_text()
    assert message == "You\u2019ve reached this deal\u2019s limit of 1 per buyer.", message
    assert "(" not in message and "_" not in message  # no raw codes
    top = rect(buyer, ".stage-top")
    assert rect(buyer, ".toast")["y"] >= top["y"] + top["height"], "the toast covers the header"
    buyer.wait_for_selector("#buy-now:disabled:has-text('Limit reached')")

    # when the deal closes, the card offers the cart again at the list price
    buyer.wait_for_selector("#add-cart", state="visible", timeout=15_000)
    assert text(buyer, "#buy-now") == "Buy now" and buyer.locator("#buy-now").is_enabled()
    assert buyer.locator("#pin-deal-note").is_hidden()
    assert buyer.locator(".showcase-item[data-product=demo_sneakers] button").is_enabled()


def test_the_shoppable_video_is_not_a_live_show(live_server: LiveServer, pages: Pages) -> None:
    landing = pages.open("landing", "/")
    card = landing.locator(".session-card[data-session=sess_demo_video]")
    card.wait_for()
    assert card.locator(".badge-status").inner_text() == "VIDEO"
    creator_href = card.locator("[data-role=creator-link]").get_attribute("href")
    console = pages.open("video-console", creator_href)
    console.wait_for_selector("body[data-conn=open] .product-row")
    assert text(console, "#status-badge") == "VIDEO"
    assert console.locator("#end-btn").is_hidden()
    assert console.locator("#deal-card").is_hidden()
    assert console.locator("#watch-link-0").is_hidden()
    assert "delay" not in text(console, "#watch-link").lower()
    assert console.locator(".product-row [data-action=deal]").count() == 0
    assert all(b.is_disabled() for b in console.locator("[data-action=pin]").all())
    assert "timeline" in text(console, "#showcase-note").lower()
