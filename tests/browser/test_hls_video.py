"""Real video: the demo's ffmpeg HLS stream played by hls.js. Pins land on the frame where
they were made, for each viewer at its own distance behind the live edge, in the replay,
and as EXT-X-DATERANGE metadata cues in a page with no WebSocket at all.

Every timing is measured in the page: a MutationObserver on the pin card notes the
program date-time of the frame on screen (`hls.playingDate`) when the card changes."""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

import httpx2 as httpx
import pytest

from server.video.hls import parse_date_ms
from tests.browser.conftest import LiveServer, Pages, wait_until
from tests.browser.test_web_demo import go_live, pin

pytestmark = pytest.mark.browser

LIVE_STREAM = "/demo-stream/live/index.m3u8"
TOLERANCE_MS = 300

# The card's changes with the frame on screen at that moment.
OBSERVE = """() => {
  const card = document.querySelector("#pin-card");
  window.__cardLog = [];
  const note = () => {
    const product = card.hidden ? null : (card.dataset.product || null);
    const last = window.__cardLog[window.__cardLog.length - 1];
    if (last && last.product === product) return;
    const d = window.__player && window.__player.hls.playingDate;
    window.__cardLog.push({ product, at: Date.now(), pdt: d ? d.getTime() : null,
                            pos: window.__player ? window.__player.video.currentTime : null });
  };
  new MutationObserver(note).observe(card, { attributes: true });
  note();
}"""


def _need_ffmpeg() -> None:
    """Like Chromium (conftest): skipped locally without ffmpeg, a failure in CI."""
    if shutil.which("ffmpeg") is None:
        problem = "ffmpeg is not installed (apt-get install ffmpeg)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def stream_session(server: LiveServer, url: str, title: str) -> tuple[str, str]:
    sid, token = server.new_session(title)
    server.http("PATCH", f"/api/sessions/{sid}", {"stream_url": url}, token)
    return sid, token


def stream_has(server: LiveServer, segments: int) -> None:
    """Wait until the demo's live playlist holds `segments` segments (it starts with the
    server: a player asked to stay n s behind live can only once n s of stream exist)."""
    def enough() -> bool:
        body = httpx.get(server.base + LIVE_STREAM, timeout=5).text
        return body.count("#EXTINF") >= segments

    wait_until(enough, timeout=30, what=f"{segments} segments in the live playlist")


def stream_reaches(server: LiveServer, ms: int) -> None:
    """Wait until the demo's live playlist has a segment ending at or after `ms` (epoch ms;
    the demo's stream clock is this machine's wall clock)."""
    def reached() -> bool:
        body = httpx.get(server.base + LIVE_STREAM, timeout=5).text
        segments = re.findall(r"#EXTINF:([\d.]+),\s+#EXT-X-PROGRAM-DATE-TIME:(\S+)", body)
        if not segments:
            return False
        seconds, start = segments[-1]
        return parse_date_ms(start) + float(seconds) * 1000 >= ms

    wait_until(reached, timeout=30, what=f"the live playlist to reach {ms}")


def playing(page: Any) -> None:
    page.wait_for_selector("body[data-player=hls]")
    wait_until(lambda: page.evaluate("!!(window.__player && window.__player.hls.playingDate)"),
               timeout=15, what="the video to play")


def card_log(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("window.__cardLog"))


def shown(page: Any, product: str | None, timeout: float = 15) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((e for e in card_log(page)[1:] if e["product"] == product), None)

    entry = wait_until(find, timeout=timeout, what=f"the card to show {product}")
    return dict(entry)


def test_two_viewers_see_the_pin_on_their_own_frame(live_server: LiveServer,
                                                    pages: Pages) -> None:
    _need_ffmpeg()
    # through the allow-listed loopback fetch (--demo), not the demo's own path
    sid, token = stream_session(live_server, live_server.base + LIVE_STREAM, "HLS sync")
    # the far player stays 3 + 4 s behind live: that much stream, and some, must exist
    stream_has(live_server, 10)
    creator = pages.creator(sid, token)
    near = pages.viewer("hls-near", sid, delay_ms=0)
    far = pages.viewer("hls-far", sid, delay_ms=4000, phone=True)
    go_live(creator, near, far)
    for page in (near, far):
        playing(page)
        page.evaluate(OBSERVE)
    assert far.evaluate("window.__player.distanceMs()") > \
        near.evaluate("window.__player.distanceMs()")

    pin(creator, "demo_mug")
    pinned = live_server.http("GET", f"/api/sessions/{sid}")["pinned"]
    started = live_server.http("GET", f"/api/sessions/{sid}")["started_at"]
    assert pinned["pinned_at"] == started + pinned["stream_ts_ms"]  # the demo's one clock
    creator.wait_for_timeout(1500)
    # the unpin lands on the server between these two wall-clock moments (the demo's
    # stream clock is this machine's wall clock: the assert above)
    unpin_from = int(time.time() * 1000)
    creator.click(".product-row[data-product=demo_mug] [data-action=pin]")  # unpin
    creator.wait_for_selector(".product-row[data-product=demo_mug] [aria-pressed=false]")
    unpin_by = int(time.time() * 1000)

    for page in (near, far):
        on = shown(page, "demo_mug")
        off = shown(page, None)
        # the card followed this player's own frame, not the event's arrival
        assert abs(on["pdt"] - pinned["pinned_at"]) <= TOLERANCE_MS, (on, pinned)
        unpin_pdt = off["pdt"]
        assert unpin_pdt - pinned["pinned_at"] >= 1200, (on, off)
        assert unpin_from - TOLERANCE_MS <= unpin_pdt <= unpin_by + TOLERANCE_MS, (
            off, unpin_from, unpin_by)
        assert [e["product"] for e in card_log(page)] == [None, "demo_mug", None]
    # when the pin landed, each player was at its own distance behind the live edge (wall
    # clock minus the frame's time), and the far one showed it later by that much
    behind = {name: shown(page, "demo_mug")["at"] - shown(page, "demo_mug")["pdt"]
              for name, page in (("near", near), ("far", far))}
    assert behind["far"] - behind["near"] > 1500, behind
    lag = shown(far, "demo_mug")["at"] - shown(near, "demo_mug")["at"]
    assert abs(lag - (behind["far"] - behind["near"])) <= 2 * TOLERANCE_MS, (lag, behind)
    # the unpin lands on the same frame for both (their PDT at the hide agrees)
    assert abs(shown(far, None)["pdt"] - shown(near, None)["pdt"]) <= 2 * TOLERANCE_MS
    assert "behind live" in near.locator("#clock-delay").inner_text()


def test_the_replay_shows_the_pins_at_the_same_frames(live_server: LiveServer,
                                                      pages: Pages) -> None:
    _need_ffmpeg()
    sid, token = stream_session(live_server, LIVE_STREAM, "HLS replay")
    creator = pages.creator(sid, token)
    creator.on("dialog", lambda dialog: dialog.accept())  # "End the show for everyone?"
    go_live(creator)
    creator.wait_for_timeout(1000)
    pin(creator, "demo_sneakers")
    creator.wait_for_timeout(1200)
    pin(creator, "demo_lipstick")
    creator.wait_for_timeout(1200)
    creator.click("#end-btn")
    creator.wait_for_selector("#status-badge[data-status=ended]")
    session = live_server.http("GET", f"/api/sessions/{sid}")
    timeline = session["timeline"]
    assert [e["product"] for e in timeline] == ["demo_sneakers", "demo_lipstick"]
    # the segment holding the show's last moment is written up to a segment after it: a
    # replay opened before that would end before the end's unpin
    stream_reaches(live_server, session["ended_at"])

    late = pages.viewer("hls-replay", sid, delay_ms=0, phone=True)
    late.wait_for_selector("body[data-mode=vod]")
    playing(late)
    late.evaluate(OBSERVE)
    first, second = shown(late, "demo_sneakers"), shown(late, "demo_lipstick")
    shown(late, None)  # the end unpinned
    for entry, moment in ((first, timeline[0]), (second, timeline[1])):
        frame = session["started_at"] + moment["at_ms"]  # = that pin's pinned_at
        # replays read the pin from `position`, asked as the video crosses its edge: a round
        # trip (and, for the first pin, the join) late at most; never early
        assert -100 <= entry["pdt"] - frame <= 500, (entry, moment)
    assert [e["product"] for e in card_log(late)] == [None, "demo_sneakers", "demo_lipstick",
                                                      None]
    assert late.locator("#live-badge").inner_text() == "REPLAY"


# No WebSocket in this page: opening one fails loudly.
CUE_PAGE = """async ([src, product]) => {
  window.WebSocket = function () { window.__sockets = (window.__sockets || 0) + 1;
                                   throw new Error("no WebSocket here"); };
  const video = document.createElement("video");
  video.muted = true; video.autoplay = true;
  document.body.append(video);
  const hls = new Hls({ enableDateRangeMetadataCues: true, liveSyncDuration: 3 });
  window.__cues = []; window.__ranges = {};
  hls.on(Hls.Events.LEVEL_UPDATED, (_e, data) => {
    for (const [id, r] of Object.entries(data.details.dateRanges || {}))
      window.__ranges[id] = { cls: r.class, start: r.startDate.getTime(),
                              product: r.attr["X-PRODUCT"] };
  });
  video.textTracks.addEventListener("addtrack", (e) => {
    const track = e.track;
    if (track.kind !== "metadata") return;
    track.mode = "hidden";
    track.addEventListener("cuechange", () => {
      for (const cue of Array.from(track.activeCues || [])) {
        if (!cue.value || cue.value.key !== "X-PRODUCT" || cue.value.data !== product) continue;
        if (window.__cues.some((c) => c.id === cue.id)) continue;
        const d = hls.playingDate;
        window.__cues.push({ id: cue.id, data: cue.value.data, at: Date.now(),
                             pdt: d ? d.getTime() : null });
      }
    });
  });
  hls.loadSource(src);
  hls.attachMedia(video);
  window.__hls = hls;
}"""


def test_a_daterange_cue_fires_in_plain_hlsjs_without_a_websocket(live_server: LiveServer,
                                                                  pages: Pages) -> None:
    _need_ffmpeg()
    sid, token = stream_session(live_server, LIVE_STREAM, "HLS cues")
    creator = pages.creator(sid, token)
    go_live(creator)
    player = pages.open("plain-hlsjs", "/healthz")
    player.set_content("<!doctype html><title>plain hls.js</title><body></body>")
    player.add_script_tag(url=live_server.base + "/static/vendor/hls.min.js")
    player.evaluate(CUE_PAGE, [f"/api/sessions/{sid}/stream.m3u8", "demo_headphones"])
    wait_until(lambda: player.evaluate("!!window.__hls.playingDate"), timeout=15,
               what="the plain player to play")
    pin(creator, "demo_headphones")
    pinned = live_server.http("GET", f"/api/sessions/{sid}")["pinned"]
    cue = wait_until(lambda: (player.evaluate("window.__cues") or [None])[0], timeout=15,
                     what="a DATERANGE cue for the pin")
    ranges = player.evaluate("window.__ranges")
    assert ranges[cue["id"]] == {"cls": "com.livecart.pin", "start": pinned["pinned_at"],
                                 "product": "demo_headphones"}
    # the cue entered when this player's video reached the pin (cue timing is per
    # timeupdate, about every 250 ms)
    assert -TOLERANCE_MS <= cue["pdt"] - pinned["pinned_at"] <= 2 * TOLERANCE_MS, cue
    assert not player.evaluate("window.__sockets || 0")
    assert player.evaluate("!!window.__livecart") is False
