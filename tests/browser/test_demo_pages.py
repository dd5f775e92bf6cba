"""The seeded demo from the landing page on, in a realistic state; also produces the
screenshots in docs/screenshots/ (copied there when LIVECART_UPDATE_DOCS_SCREENSHOTS=1,
so an ordinary test run does not touch committed files)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.browser.conftest import DOCS_SCREENSHOTS, LiveServer, Pages, wait_until

pytestmark = pytest.mark.browser

DEMO_SESSION = "sess_demo_live"


def test_demo_walkthrough_from_the_landing_page(live_server: LiveServer, pages: Pages) -> None:
    landing = pages.open("landing", "/")
    card = landing.locator(f".session-card[data-session={DEMO_SESSION}]")
    card.wait_for()
    assert "Friday night drops" in card.inner_text()
    assert card.locator(".badge-status").inner_text() == "SOON"
    creator_href = card.locator("[data-role=creator-link]").get_attribute("href")
    assert creator_href.startswith(f"/demo/creator?session={DEMO_SESSION}&token=")
    watch_href = card.locator("[data-role=watch-link]").get_attribute("href")
    assert watch_href == f"/demo/watch?session={DEMO_SESSION}"
    new_viewer = card.locator("[data-role=new-viewer]")
    assert new_viewer.get_attribute("target") == "_blank"
    assert len(card.locator("img").all()) == 4

    # The creator follows the landing page's link (with the minted creator token).
    creator = pages.open("creator", creator_href, viewport={"width": 1280, "height": 900})
    creator.wait_for_selector("body[data-conn=open] .product-row")
    # Viewers: the default 3 s HLS delay on a phone, two shoppers at the live edge.
    phone = pages.open("viewer-phone", watch_href, phone=True)
    shopper1 = pages.open("shopper-1", watch_href + "&delay_ms=0")
    shopper2 = pages.open("shopper-2", watch_href + "&delay_ms=0")
    for page in (phone, shopper1, shopper2):
        page.wait_for_selector("body[data-conn=open][data-status=scheduled]")
    assert phone.locator("#status-overlay").is_visible()
    # Every tab is its own viewer with a friendly name.
    names = {p.evaluate("window.__livecart.state.me.name") for p in (phone, shopper1, shopper2)}
    subs = {p.evaluate("window.__livecart.state.me.sub") for p in (phone, shopper1, shopper2)}
    assert len(subs) == 3 and all(names)

    creator.click("#start-btn")
    for page in (phone, shopper1, shopper2):
        page.wait_for_selector("body[data-status=live]")
    creator.select_option("#deal-product", "demo_headphones")
    creator.fill("#deal-price", "99")
    creator.fill("#deal-stock", "40")
    creator.fill("#deal-limit", "2")
    creator.fill("#deal-duration", "600")
    creator.click("#deal-submit")
    creator.wait_for_selector("#deal-status:has-text('40 left')")

    for n, shopper in enumerate((shopper1, shopper2)):
        shopper.wait_for_selector("#pin-card[data-product=demo_headphones]", state="visible")
        shopper.click("#buy-now")
        shopper.wait_for_selector("#order-dialog[open]")
        shopper.click("#order-dialog [data-close]")
        # Purchases within one social-proof window merge into one line: one at a time.
        phone.wait_for_selector(f"#ticker li >> nth={n}")
    # the deal is Buy now only: the card has no Add to cart, the showcase adds the others
    assert shopper2.locator("#add-cart").is_hidden()
    shopper2.click(".showcase-item[data-product=demo_mug] button")
    shopper2.wait_for_selector("#cart-count:has-text('1')")
    for _ in range(7):
        phone.click("#like-btn")
    for _ in range(4):
        shopper1.click("#like-btn")

    phone.wait_for_selector("#pin-card[data-product=demo_headphones]", state="visible",
                            timeout=8000)
    phone.wait_for_selector("#pin-left:has-text('38 left')")
    assert "$99.00" in phone.locator("#pin-price").inner_text()
    wait_until(lambda: creator.locator("#n-orders").inner_text() == "2", what="2 orders")
    wait_until(lambda: creator.locator("#n-gmv").inner_text() == "$198.00", what="GMV $198")
    wait_until(lambda: creator.locator("#n-likes").inner_text() == "11", what="11 likes")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390

    landing.reload()
    landing.wait_for_selector(
        f".session-card[data-session={DEMO_SESSION}] .badge-status:text('LIVE')")
    phone.wait_for_timeout(700)  # let the card's entrance animation and the hearts settle

    shots = {
        "landing": pages.shoot("docs-landing", landing),
        "creator": pages.shoot("docs-creator", creator),
        "viewer": pages.shoot("docs-viewer", phone),
    }
    # Phone widths of the other pages: nothing sticks out sideways.
    for name, path in (("landing", "/"), ("creator", creator_href)):
        page = pages.open(f"{name}-phone", path, phone=True)
        page.wait_for_selector(".session-card, .product-row")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
    if os.environ.get("LIVECART_UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")
