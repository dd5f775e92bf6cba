"""The web demo in a real browser: pins in sync with a delayed player, reconnects, cart and
checkout, flash-deal sell-out — creator console and viewer pages against a real server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import LiveServer, Pages, wait_until

pytestmark = pytest.mark.browser


def go_live(creator: Any, *viewers: Any) -> None:
    creator.click("#start-btn")
    creator.wait_for_selector("#status-badge[data-status=live]")
    for viewer in viewers:
        viewer.wait_for_selector("body[data-status=live]")


def pin(creator: Any, product: str) -> None:
    creator.click(f".product-row[data-product={product}] [data-action=pin]")
    creator.wait_for_selector(f".product-row[data-product={product}] [aria-pressed=true]")


def card_shows(page: Any, product: str, timeout: float = 10_000) -> None:
    page.wait_for_selector(f"#pin-card[data-product={product}]", state="visible", timeout=timeout)


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


def test_pin_appears_when_each_player_reaches_it(live_server: LiveServer, pages: Pages) -> None:
    sid, token = live_server.new_session("Sync test")
    creator = pages.creator(sid, token)
    live = pages.viewer("viewer-live-edge", sid, delay_ms=0)
    delayed = pages.viewer("viewer-4s", sid, delay_ms=4000, phone=True)

    # Before the creator starts: "starting soon" on the viewers.
    assert live.locator("#status-overlay").is_visible()
    assert "Starting soon" in text(live, "#status-overlay")

    go_live(creator, live, delayed)
    pin(creator, "demo_headphones")

    card_shows(live, "demo_headphones", timeout=4000)
    assert text(live, "#pin-title") == "Aurora wireless headphones"
    assert text(live, "#pin-price") == "$129.00"
    # The event reached the delayed viewer too, but its player is 4 s behind the live edge.
    assert delayed.locator("#pin-card").is_hidden()
    card_shows(delayed, "demo_headphones", timeout=9000)

    shown_live = int(live.get_attribute("#pin-card", "data-shown-at"))
    shown_delayed = int(delayed.get_attribute("#pin-card", "data-shown-at"))
    gap = shown_delayed - shown_live
    assert 3000 <= gap <= 6000, f"delayed player showed the pin {gap} ms after the live edge"
    # And it was the same pin (same stream position) on both.
    assert live.get_attribute("#pin-card", "data-stream-ts") == delayed.get_attribute(
        "#pin-card", "data-stream-ts")

    # Likes are batched into `like {count}` and come back through `counters`.
    for _ in range(5):
        live.click("#like-btn")
    wait_until(lambda: text(creator, "#n-likes") == "5", what="creator sees 5 likes")
    wait_until(lambda: text(delayed, "#likes") == "5", what="other viewer sees 5 likes")
    # Both viewers are counted, the creator's own console is not.
    wait_until(lambda: text(creator, "#n-viewers") == "2", what="viewer count")
    wait_until(lambda: text(live, "#viewers") == "2", what="viewer count on a viewer")

    # Unpin: the card goes away (at the live edge right away).
    creator.click(".product-row[data-product=demo_headphones] [data-action=pin]")  # toggles off
    creator.wait_for_selector(".product-row[data-product=demo_headphones] [aria-pressed=false]")
    live.wait_for_selector("#pin-card", state="hidden", timeout=4000)

    # Phone width: nothing sticks out sideways.
    assert delayed.evaluate("document.documentElement.scrollWidth") <= 390


def test_viewer_reconnects_and_recovers_missed_pins(live_server: LiveServer,
                                                    pages: Pages) -> None:
    sid, token = live_server.new_session("Reconnect test")
    creator = pages.creator(sid, token)
    viewer = pages.viewer("viewer", sid, delay_ms=0)
    go_live(creator, viewer)
    pin(creator, "demo_sneakers")
    card_shows(viewer, "demo_sneakers")

    # 1. The network goes away: visible "reconnecting" state.
    viewer.context.set_offline(True)
    viewer.wait_for_selector("body[data-conn=reconnecting]")
    banner = viewer.locator("#conn-banner")
    assert banner.is_visible()
    assert "reconnecting" in banner.inner_text().lower()
    pages.shoot("viewer-offline", viewer)

    # Meanwhile the creator pins something else.
    pin(creator, "demo_mug")

    # 2. Back online: the client rejoins with since/epoch and replays what it missed.
    viewer.context.set_offline(False)
    viewer.wait_for_selector("body[data-conn=open]")
    card_shows(viewer, "demo_mug")
    joins = viewer.evaluate("window.__livecart.state.joins")
    # Rejoined with since/epoch, and the missed `pinned` came back as a replayed event
    # (not from the client's fallback to the snapshot).
    assert joins[-1]["resumed"] is True and joins[-1]["recovered"] is True, joins
    assert not joins[-1]["replayMissing"], joins
    assert text(viewer, "#pin-title") == "Glow-in-the-dark mug"

    # 3. A socket dropped without the browser noticing (test hook): backoff + rejoin.
    viewer.evaluate("window.__livecart.client.simulateDrop()")
    viewer.wait_for_selector("body[data-conn=reconnecting]", timeout=2000)
    pin(creator, "demo_lipstick")
    viewer.wait_for_selector("body[data-conn=open]")
    card_shows(viewer, "demo_lipstick")
    viewer.wait_for_selector("#conn-banner", state="hidden", timeout=5000)
    # No pin was skipped or shown twice.
    shown = [e["product"] for e in viewer.evaluate("window.__livecart.state.shownLog")]
    assert shown == ["demo_sneakers", "demo_mug", "demo_lipstick"], shown


def test_cart_checkout_reaches_buyer_room_and_creator(live_server: LiveServer,
                                                      pages: Pages) -> None:
    sid, token = live_server.new_session("Cart test")
    creator = pages.creator(sid, token)
    buyer = pages.viewer("buyer", sid, delay_ms=0, phone=True)
    other = pages.viewer("other-viewer", sid, delay_ms=0)
    go_live(creator, buyer, other)
    pin(creator, "demo_sneakers")
    card_shows(buyer, "demo_sneakers")
    buyer_name = buyer.evaluate("window.__livecart.state.me.name")

    buyer.click("#add-cart")
    buyer.wait_for_selector("#cart-count:has-text('1')")
    buyer.click("#cart-btn")
    buyer.wait_for_selector("#cart-dialog[open] .cart-line[data-product=demo_sneakers]")
    buyer.click(".cart-line[data-product=demo_sneakers] [aria-label='Increase quantity']")
    buyer.wait_for_selector("#cart-count:has-text('2')")
    assert text(buyer, "#cart-total") == "$178.00"
    pages.shoot("buyer-cart", buyer)

    buyer.click("#checkout-btn")
    buyer.wait_for_selector("#order-dialog[open]")
    assert text(buyer, "#order-total") == "$178.00"
    assert buyer.get_attribute("#order-dialog", "data-order-id")
    pages.shoot("buyer-order", buyer)
    buyer.click("#order-dialog [data-close]")
    buyer.wait_for_selector("#cart-count", state="hidden")  # the cart was emptied

    # Social proof on the other viewer, orders and GMV on the creator.
    other.wait_for_selector(f"#ticker li:has-text('{buyer_name} bought 2')")
    creator.wait_for_selector(f"#orders .order-row:has-text('{buyer_name}')")
    wait_until(lambda: text(creator, "#n-orders") == "1", what="creator orders = 1")
    wait_until(lambda: text(creator, "#n-gmv") == "$178.00", what="creator GMV = $178.00")
    wait_until(lambda: text(creator, "#n-commission") == "$17.80", what="commission 10%")


def test_flash_deal_sells_out_for_everyone(live_server: LiveServer, pages: Pages) -> None:
    sid, token = live_server.new_session("Flash deal test")
    creator = pages.creator(sid, token)
    first = pages.viewer("viewer-1", sid, delay_ms=0)
    second = pages.viewer("viewer-2", sid, delay_ms=0, phone=True)
    go_live(creator, first, second)

    creator.select_option("#deal-product", "demo_lipstick")
    creator.fill("#deal-price", "9.99")
    creator.fill("#deal-stock", "2")
    creator.fill("#deal-limit", "1")
    creator.fill("#deal-duration", "120")
    creator.click("#deal-submit")
    error = creator.locator("#deal-error")
    creator.wait_for_selector("#deal-status:has-text('2 left')")
    assert error.is_hidden(), error.inner_text()

    for viewer in (first, second):
        card_shows(viewer, "demo_lipstick")
        viewer.wait_for_selector("#pin-deal-row", state="visible")
        assert text(viewer, "#pin-price") == "$9.99"
        assert text(viewer, "#pin-list-price") == "$19.00"
        assert text(viewer, "#pin-left") == "2 left"

    first.click("#buy-now")
    first.wait_for_selector("#order-dialog[open]")
    assert text(first, "#order-total") == "$9.99"
    first.click("#order-dialog [data-close]")
    second.wait_for_selector("#pin-left:has-text('1 left')")

    # The per-buyer limit is 1: Buy now is disabled for this buyer, and says why.
    first.wait_for_selector("#buy-now:disabled:has-text('Limit reached')")
    assert "most this deal allows" in text(first, "#pin-deal-note")

    second.click("#buy-now")
    second.wait_for_selector("#order-dialog[open]")
    second.click("#order-dialog [data-close]")

    for viewer in (first, second):
        viewer.wait_for_selector("#pin-card[data-sold-out=true]")
        assert viewer.locator("#pin-soldout").is_visible()
        assert viewer.locator("#buy-now").is_disabled()
    creator.wait_for_selector("#deal-status[data-sold-out=true]")
    wait_until(lambda: text(creator, "#n-orders") == "2", what="creator orders = 2")
    wait_until(lambda: text(creator, "#n-gmv") == "$19.98", what="creator GMV = 2 x $9.99")


def test_replay_shows_pins_at_their_stream_positions(live_server: LiveServer,
                                                     pages: Pages) -> None:
    sid, token = live_server.new_session("Replay test")
    creator = pages.creator(sid, token)
    creator.on("dialog", lambda dialog: dialog.accept())  # "End the show for everyone?"
    watcher = pages.viewer("live-watcher", sid, delay_ms=0)
    go_live(creator, watcher)
    pin(creator, "demo_mug")
    creator.wait_for_timeout(1200)
    pin(creator, "demo_sneakers")
    creator.wait_for_timeout(1000)
    creator.click("#end-btn")
    creator.wait_for_selector("#status-badge[data-status=ended]")

    # Someone watching live sees the end, and can switch to the replay.
    watcher.wait_for_selector("body[data-status=ended] #replay-btn", state="visible")
    watcher.click("#replay-btn")
    watcher.wait_for_selector("body[data-mode=vod] #live-badge:text('REPLAY')")

    # A viewer arriving after the end gets the replay: pins at their stream positions.
    late = pages.viewer("replay-viewer", sid, delay_ms=0, phone=True)
    late.wait_for_selector("body[data-mode=vod]")
    card_shows(late, "demo_mug", timeout=3000)
    card_shows(late, "demo_sneakers", timeout=4000)
    late.wait_for_selector("#pin-card", state="hidden", timeout=4000)  # the end unpinned
    log = late.evaluate("window.__livecart.state.shownLog")
    assert [e["product"] for e in log] == ["demo_mug", "demo_sneakers", None], log
    gap = log[1]["at"] - log[0]["at"]
    assert 700 <= gap <= 2500, f"replay showed the second pin {gap} ms after the first"
    assert watcher.locator("#status-overlay").is_hidden()  # the replay plays in full view


LIVECART_JS_SCENARIO = """
async () => {
  const { LivecartClient, LivecartError } = await import("/static/livecart.js");
  const sockets = [];
  class FakeWS {
    constructor(url, protocols) {
      Object.assign(this, { url, protocols, sent: [] });
      sockets.push(this);
      setTimeout(() => this.onopen?.(), 0);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close(code = 1000) { setTimeout(() => this.onclose?.({ code, reason: "" }), 0); }
    recv(obj) { this.onmessage({ data: JSON.stringify(obj) }); }
    last(op) { return [...this.sent].reverse().find((m) => m.op === op); }
    reply(op, result) { this.recv({ id: this.last(op).id, ok: true, result }); }
  }
  const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
  const until = async (f) => { for (let i = 0; i < 200 && !f(); i++) await tick(10); return f(); };
  const out = {};
  const c = new LivecartClient({ url: "ws://x/ws", token: "tok", WebSocket: FakeWS,
                                 pingIntervalMs: 0, minBackoffMs: 10, maxBackoffMs: 40 });
  const seen = [];
  const states = [];
  c.on("*", (ev) => seen.push(ev.seq ?? ev.t));
  c.on("state", (s) => states.push(s.state));
  await c.connect();
  let ws = sockets[0];
  out.url = ws.url;
  out.protocols = ws.protocols;
  ws.reply("ping", { pong: Date.now() + 5000 });
  await tick();
  out.offset = c.clockOffset;

  const joined = c.join("s1");
  ws.reply("join", { session: "s1", seq: 5, epoch: "e1" });
  await joined;
  ws.recv([{ t: "pinned", seq: 6, ts: 1, d: {} }, { t: "counters", ts: 1, d: {} },
           { t: "unpinned", seq: 7, ts: 1, d: {} }]);
  ws.recv({ t: "unpinned", seq: 7, ts: 1, d: {} });        // duplicate: dropped
  ws.recv({ t: "pinned", seq: 9, ts: 1, d: {} });          // gap: resync with since
  out.resync = ws.last("join");
  ws.reply("join", { session: "s1", seq: 9, epoch: "e1", recovered: true });
  ws.recv({ t: "pinned", seq: 8, ts: 1, d: {} });
  ws.recv({ t: "unpinned", seq: 9, ts: 1, d: {} });
  out.seen = [...seen];

  const failing = c.request("cart_add", { product: "p", qty: 3 });
  ws.recv({ id: ws.last("cart_add").id, ok: false,
            error: { code: "out_of_stock", message: "only 2 left", product: "p", available: 2 } });
  try { await failing; } catch (err) {
    out.error = { isError: err instanceof LivecartError, code: err.code, message: err.message,
                  details: err.details };
  }

  ws.onclose({ code: 1006, reason: "" });                  // network drop
  await until(() => sockets.length === 2 && sockets[1].last("join"));
  ws = sockets[1];
  out.rejoin = ws.last("join");
  out.statesAfterDrop = [...states];
  ws.reply("join", { session: "s1", seq: 9, epoch: "e1", recovered: true });
  await tick();

  ws.onclose({ code: 4001, reason: "bad token" });          // fatal: no retry
  await tick(120);
  out.socketsAfter4001 = sockets.length;
  out.finalState = c.state;
  return out;
}
"""


def test_livecart_js_protocol_client(live_server: LiveServer, pages: Pages) -> None:
    page = pages.open("client", "/")
    out = page.evaluate(LIVECART_JS_SCENARIO)
    assert out["url"] == "ws://x/ws?token=tok" and out["protocols"] == ["livecart.json"]
    assert 4900 < out["offset"] < 5100  # server clock estimate from the ping
    # Arrays and single events, in order; duplicates dropped; a gap triggers a resync.
    assert out["resync"]["since"] == 7 and out["resync"]["epoch"] == "e1"
    assert out["seen"] == [6, "counters", 7, 8, 9]
    assert out["error"] == {"isError": True, "code": "out_of_stock", "message": "only 2 left",
                            "details": {"product": "p", "available": 2}}
    # After a drop: reconnecting, a new socket, and the rejoin carries since/epoch.
    assert out["statesAfterDrop"][-2:] == ["reconnecting", "open"]
    assert out["rejoin"]["session"] == "s1"
    assert out["rejoin"]["since"] == 9 and out["rejoin"]["epoch"] == "e1"
    # 4001 (bad token) is final.
    assert out["socketsAfter4001"] == 2 and out["finalState"] == "closed"
