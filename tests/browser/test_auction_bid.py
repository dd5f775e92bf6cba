"""The web demo's auction and giveaway: the creator starts them from the console, viewers
bid (timer, outbid toast) and enter, and every page shows the same close."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import LiveServer, Pages, wait_until

pytestmark = pytest.mark.browser


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


def test_a_bid_from_the_viewer_page(live_server: LiveServer, pages: Pages) -> None:
    sid, token = live_server.new_session("Auction test")
    creator = pages.creator(sid, token)
    one, two = pages.viewer("bidder-1", sid), pages.viewer("bidder-2", sid)
    creator.click("#start-btn")
    creator.wait_for_selector("#status-badge[data-status=live]")
    creator.select_option("#auction-form select[name=product]", "demo_mug")
    creator.fill("#auction-form input[name=duration_s]", "4")
    creator.click("#auction-submit")
    for page in (one, two):
        page.wait_for_selector("#auction-card:not([hidden]) #bid-btn:enabled")
    assert "No bids yet" in text(one, "#auction-top")
    assert text(one, "#auction-timer") not in ("", "0:00")  # the timer runs
    name_one = one.evaluate("window.__livecart.state.me.name")
    name_two = two.evaluate("window.__livecart.state.me.name")
    one.click("#bid-btn")
    wait_until(lambda: name_one in text(two, "#auction-top"), what="bidder 1 on top everywhere")
    two.wait_for_selector("#bid-btn:enabled")
    two.click("#bid-btn")
    wait_until(lambda: name_two in text(one, "#auction-top"), what="bidder 2 on top")
    one.wait_for_selector(".toast:has-text('outbid')")  # the outbid toast
    for page in (one, two):
        page.wait_for_selector("#auction-outcome", timeout=15_000)
        assert f"Sold to {name_two}" in text(page, "#auction-outcome")
    two.wait_for_selector(".toast:has-text('You won the auction')")
    wait_until(lambda: "closed (sold)" in text(creator, "#formats-status"),
               what="the console shows the close")

    # a giveaway from the console; one viewer enters and wins
    creator.fill("#giveaway-form input[name=duration_s]", "8")  # time to enter on a loaded box
    creator.click("#giveaway-submit")
    one.wait_for_selector("#giveaway-card:not([hidden]) #enter-btn:enabled")
    one.click("#enter-btn")
    one.wait_for_selector("#enter-btn:disabled")
    assert "in ✓" in text(one, "#enter-btn")
    for page in (one, two):
        page.wait_for_selector("#giveaway-winners", timeout=25_000)
        assert text(page, "#giveaway-winners") == f"Winners: {name_one}"
    one.wait_for_selector(".toast:has-text('You won the giveaway')")
    pages.shoot("viewer-after", one)
