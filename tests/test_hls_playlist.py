"""Pins as HLS timed metadata: the playlist rewrite (pure), the stream_url allow-list, and
`GET /api/sessions/{id}/stream.m3u8` through the real API with pins added and removed live."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from server.errors import ApiError
from server.facts import Session
from server.settings import Settings
from server.video import hls
from server.video.hls import DateRange, iso_ms
from server.video.streams import check_url, clock_ms, live_ranges
from tests.helpers import ServerThread, WsClient

T0 = 1_764_640_000_000  # 2025-12-02T01:46:40.000Z
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ATTR = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",]*)(?:,|$)')
SHOW = ["a", "b"]


def live_playlist(t0: int, n: int = 4, first_seq: int = 0, uri: str = "seg-{}.ts") -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:1",
             f"#EXT-X-MEDIA-SEQUENCE:{first_seq}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for i in range(n):
        pdt = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((t0 + i * 1000) // 1000))
        lines += ["#EXTINF:1.000000,", f"#EXT-X-PROGRAM-DATE-TIME:{pdt}."
                  f"{(t0 + i * 1000) % 1000:03d}+0000", uri.format(first_seq + i)]
    return "\n".join(lines) + "\n"


def daterange_attrs(line: str) -> dict[str, str]:
    assert line.startswith("#EXT-X-DATERANGE:")
    body = line.split(":", 1)[1]
    attrs = dict(ATTR.findall(body))
    assert ",".join(f"{k}={v}" for k, v in attrs.items()) == body, "attribute list syntax"
    return attrs


def check_daterange(attrs: dict[str, str]) -> None:
    """RFC 8216 §4.3.2.7 as we use it: quoted strings, ISO 8601 dates with ms."""
    for name in ("ID", "CLASS", "START-DATE", "X-PRODUCT"):
        assert attrs[name].startswith('"') and attrs[name].endswith('"'), name
    assert attrs["CLASS"] == '"com.livecart.pin"'
    assert ISO_MS.match(attrs["START-DATE"].strip('"'))
    if "END-DATE" in attrs:
        assert ISO_MS.match(attrs["END-DATE"].strip('"'))
        assert attrs["END-DATE"] >= attrs["START-DATE"]
        assert re.fullmatch(r"\d+\.\d{3}", attrs["DURATION"])
    if "X-DEAL-PRICE" in attrs:
        assert re.fullmatch(r"\d+", attrs["X-DEAL-PRICE"])


def segment_uris(text: str) -> list[str]:
    return [x for x in text.splitlines() if x and not x.startswith("#")]


# the rewrite, pure -------------------------------------------------------------------------

def test_iso_dates_have_milliseconds_in_utc() -> None:
    assert iso_ms(T0) == "2025-12-02T01:46:40.000Z"
    assert iso_ms(T0 + 7) == "2025-12-02T01:46:40.007Z"
    assert hls.parse_date_ms("2025-12-02T01:46:40.250+0000") == T0 + 250
    assert hls.parse_date_ms("2025-12-02T02:46:40.250+01:00") == T0 + 250
    assert hls.parse_date_ms("2025-12-02T01:46:40.250Z") == T0 + 250


def test_no_pins_and_absolute_uris_pass_through_byte_for_byte() -> None:
    text = live_playlist(T0, uri="https://cdn.example/live/seg-{}.ts")
    assert hls.rewrite(text, "https://cdn.example/live/index.m3u8", []) == text
    crlf = text.replace("\n", "\r\n")
    assert hls.rewrite(crlf, "https://cdn.example/live/index.m3u8", []) == crlf


def test_relative_uris_become_absolute_and_nothing_else_changes() -> None:
    text = live_playlist(T0).replace("#EXT-X-INDEPENDENT-SEGMENTS",
                                     '#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI="init.mp4"')
    out = hls.rewrite(text, "https://cdn.example/live/index.m3u8", [])
    assert segment_uris(out) == [f"https://cdn.example/live/seg-{i}.ts" for i in range(4)]
    assert '#EXT-X-MAP:URI="https://cdn.example/live/init.mp4"' in out
    strip = [x for x in out.splitlines() if x.startswith("#") and "URI=" not in x]
    assert strip == [x for x in text.splitlines() if x.startswith("#") and "URI=" not in x]
    assert segment_uris(hls.rewrite(text, "/demo-stream/live/index.m3u8", []))[0] == \
        "/demo-stream/live/seg-0.ts"


def test_ranges_are_placed_in_order_before_their_segment() -> None:
    text = live_playlist(T0, n=4)
    ranges = [DateRange("s.pin.2", T0 + 2500, "b", None, 6900),
              DateRange("s.pin.0", T0 + 300, "a", T0 + 2500),
              DateRange("s.pin.9", T0 + 9000, "a")]  # after the last segment
    out = hls.rewrite(text, "https://cdn.example/x/index.m3u8", ranges).splitlines()
    tags = [i for i, line in enumerate(out) if line.startswith("#EXT-X-DATERANGE")]
    assert len(tags) == 3
    attrs = [daterange_attrs(out[i]) for i in tags]
    for a in attrs:
        check_daterange(a)
    assert [a["ID"] for a in attrs] == ['"s.pin.0"', '"s.pin.2"', '"s.pin.9"']
    assert attrs[0]["START-DATE"] == '"2025-12-02T01:46:40.300Z"'
    assert attrs[0]["END-DATE"] == '"2025-12-02T01:46:42.500Z"'
    assert attrs[0]["DURATION"] == "2.200"
    assert attrs[1]["X-DEAL-PRICE"] == "6900" and "END-DATE" not in attrs[1]
    assert "X-DEAL-PRICE" not in attrs[0]
    # each sits right before the segment that contains its start: its EXTINF follows
    assert out[tags[0] + 1].startswith("#EXTINF") and out[tags[0] + 2].endswith(":40.000+0000")
    assert out[tags[1] + 2].endswith(":42.000+0000")
    assert tags[2] == len(out) - 1  # later than every segment: at the end
    assert out[0] == "#EXTM3U" and len(segment_uris("\n".join(out))) == 4


def test_ranges_that_ended_before_the_window_are_left_out() -> None:
    text = live_playlist(T0 + 60_000)
    ranges = [DateRange("old", T0, "a", T0 + 1000), DateRange("open", T0 + 2000, "b")]
    out = hls.rewrite(text, "https://cdn.example/x/index.m3u8", ranges)
    assert 'ID="old"' not in out
    first = out.splitlines().index(next(x for x in out.splitlines() if 'ID="open"' in x))
    assert out.splitlines()[first + 1].startswith("#EXTINF")  # before the first segment


def test_no_program_date_time_means_no_daterange() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n"
    out = hls.rewrite(text, "https://cdn.example/v/index.m3u8", [DateRange("x", T0, "a")])
    assert "DATERANGE" not in out and "https://cdn.example/v/a.ts" in out


def test_not_a_media_playlist_is_refused() -> None:
    for text in ("", "hello", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n"):
        with pytest.raises(hls.PlaylistError):
            hls.rewrite(text, "https://cdn.example/x.m3u8", [])


def test_clip_makes_the_vod_of_a_show() -> None:
    text = live_playlist(T0, n=6, first_seq=40)
    out = hls.clip(text, T0 + 1500, T0 + 3200)
    assert segment_uris(out) == ["seg-41.ts", "seg-42.ts", "seg-43.ts"]
    lines = out.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-PLAYLIST-TYPE:VOD"]
    assert "#EXT-X-MEDIA-SEQUENCE:41" in lines and lines[-1] == "#EXT-X-ENDLIST"
    assert hls.clip(out, T0, T0 + 1) == out  # already a VOD
    # a discontinuity dropped with its segment moves the discontinuity sequence on
    marked = text.replace("#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
                          '#EXT-X-MAP:URI="init.mp4"')
    marked = marked.replace("#EXTINF:1.000000,\n#EXT-X-PROGRAM-DATE-TIME:2025-12-02T01:46:40",
                            "#EXT-X-DISCONTINUITY\n#EXTINF:1.000000,\n"
                            "#EXT-X-PROGRAM-DATE-TIME:2025-12-02T01:46:40", 1)
    cut = hls.clip(marked, T0 + 1500, T0 + 3200).splitlines()
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:3" in cut
    assert cut.index('#EXT-X-MAP:URI="init.mp4"') < cut.index("seg-41.ts")  # still in force
    assert "#EXT-X-DISCONTINUITY" not in cut


def test_a_pin_log_on_the_stream_clock() -> None:
    session = Session(id="s", creator="c", kind="live", title="t", status="live",
                      showcase=SHOW, created_at=T0 - 5000, started_at=T0, ended_at=None,
                      pin=None, pin_deal="", pin_deal_product="", seq=0, epoch="e",
                      timeline=[], stream_url="https://cdn.example/x.m3u8",
                      stream_clock_offset_ms=-250)
    log = [{"op": "pin", "at": 1000, "product": "a", "pinned_at": T0 + 1000},
           {"op": "pin", "at": 3000, "product": "b", "pinned_at": T0 + 3000, "deal_price": 500},
           {"op": "unpin", "at": 4500}, {"op": "pin", "at": 6000, "product": "a"}]
    assert clock_ms(session, 1000) == T0 + 750
    assert live_ranges(session, log) == [
        DateRange("s.pin.0", T0 + 750, "a", T0 + 2750),
        DateRange("s.pin.1", T0 + 2750, "b", T0 + 4250, 500),
        DateRange("s.pin.3", T0 + 5750, "a", None),
    ]


def test_the_allow_list() -> None:
    prod = Settings(secret="s" * 32, stream_origins=("https://cdn.example", "http://10.0.0.5:8080"))
    assert check_url("https://cdn.example/live/index.m3u8", prod)
    assert check_url("https://CDN.example:443/a.m3u8", prod)
    assert check_url("http://10.0.0.5:8080/a.m3u8", prod)
    refused = ["https://evil.example/a.m3u8", "http://cdn.example/a.m3u8",  # scheme counts
               "https://cdn.example.evil.example/a.m3u8", "http://10.0.0.5/a.m3u8",
               "http://127.0.0.1:8000/a.m3u8", "file:///etc/passwd", "ftp://cdn.example/a",
               "https://user:pw@cdn.example/a.m3u8", "/demo-stream/live/index.m3u8",
               "cdn.example/a.m3u8", "https://cdn.example/a b.m3u8"]
    for url in refused:
        with pytest.raises(ApiError) as err:
            check_url(url, prod)
        assert err.value.code == "stream_origin_refused", url
    demo = Settings(demo=True)
    for url in ("http://127.0.0.1:9/a.m3u8", "http://localhost:8000/x.m3u8",
                "http://[::1]:8000/x.m3u8", "/demo-stream/live/index.m3u8"):
        assert check_url(url, demo) == url
    for url in ("http://192.168.1.2/a.m3u8", "/demo-stream/../../etc/passwd.m3u8"):
        with pytest.raises(ApiError):
            check_url(url, demo)


# through the real API ----------------------------------------------------------------------

class Upstream:
    """A loopback HTTP server holding playlists (the origin a session's stream names)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, bytes]] = {}
        self.hits: dict[str, int] = {}
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.hits[self.path] = upstream.hits.get(self.path, 0) + 1
                status, body = upstream.files.get(self.path, (404, b"no"))
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere.m3u8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return self.origin + path


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.httpd.shutdown()
    up.httpd.server_close()


def playlist_of(server: ServerThread, sid: str) -> Any:
    return server.http("GET", f"/api/sessions/{sid}/stream.m3u8")


def ranges_in(text: str) -> list[dict[str, str]]:
    out = [daterange_attrs(x) for x in text.splitlines() if x.startswith("#EXT-X-DATERANGE")]
    for a in out:
        check_daterange(a)
    return out


@pytest.mark.anyio
async def test_pins_added_and_removed_live_through_the_api(server: ServerThread,
                                                           upstream: Upstream) -> None:
    for p in SHOW:
        server.product(p, price=1000)
    creator_token = server.token("creator1", "creator")
    sid = server.session(SHOW)
    no_stream = playlist_of(server, sid)
    assert no_stream.status_code == 409 and no_stream.json()["error"]["code"] == "no_stream"
    started = server.http("GET", f"/api/sessions/{sid}").json()["started_at"]
    text = live_playlist(started - 2000, n=8)
    upstream.files["/live/index.m3u8"] = (200, text.encode())
    r = server.http("PATCH", f"/api/sessions/{sid}", token=creator_token,
                    json={"stream_url": upstream.url("/live/index.m3u8")})
    assert r.status_code == 200, r.text
    assert r.json()["stream_url"] == upstream.url("/live/index.m3u8")
    assert r.json()["stream_clock_offset_ms"] == 0

    r = playlist_of(server, sid)  # no pins: the upstream playlist, URIs made absolute
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.text == hls.rewrite(text, upstream.url("/live/index.m3u8"), [])
    assert segment_uris(r.text)[0] == upstream.url("/live/seg-0.ts")
    assert "DATERANGE" not in r.text

    creator = await WsClient.connect(server.ws_url, token=creator_token)
    await creator.ok("join", session=sid)
    pin = (await creator.ok("pin", product="a", stream_ts_ms=1000))["pinned"]
    assert pin["stream_ts_ms"] == 1000
    ranges = ranges_in(playlist_of(server, sid).text)
    assert len(ranges) == 1 and ranges[0]["X-PRODUCT"] == '"a"'
    assert ranges[0]["START-DATE"] == f'"{iso_ms(started + 1000)}"'
    assert "END-DATE" not in ranges[0] and "X-DEAL-PRICE" not in ranges[0]

    deal = {"price": 600, "stock": 5, "per_buyer_limit": 1,
            "ends_at": int(time.time() * 1000) + 60_000}
    await creator.ok("pin", product="b", stream_ts_ms=2500, deal=deal)
    ranges = ranges_in(playlist_of(server, sid).text)
    assert [(a["X-PRODUCT"], a.get("X-DEAL-PRICE")) for a in ranges] == [('"a"', None),
                                                                        ('"b"', "600")]
    assert ranges[0]["END-DATE"] == ranges[1]["START-DATE"] == f'"{iso_ms(started + 2500)}"'
    assert ranges[0]["ID"] != ranges[1]["ID"]

    await creator.ok("unpin", stream_ts_ms=4000)
    ranges = ranges_in(playlist_of(server, sid).text)
    assert ranges[1]["END-DATE"] == f'"{iso_ms(started + 4000)}"'
    assert ranges[1]["DURATION"] == "1.500"
    # the same IDs on every reload; the offset moves every date
    again = ranges_in(playlist_of(server, sid).text)
    assert [a["ID"] for a in again] == [a["ID"] for a in ranges]
    server.http("PATCH", f"/api/sessions/{sid}", token=creator_token,
                json={"stream_clock_offset_ms": 250})
    shifted = ranges_in(playlist_of(server, sid).text)
    assert shifted[0]["START-DATE"] == f'"{iso_ms(started + 1250)}"'

    # ended: the show's VOD (segments between its start and its end) with the same ranges
    await creator.ok("end")
    ended = playlist_of(server, sid).text
    assert "#EXT-X-ENDLIST" in ended and "#EXT-X-PLAYLIST-TYPE:VOD" in ended
    assert len(ranges_in(ended)) == 2
    assert len(segment_uris(ended)) < 8
    await creator.close()


def test_stream_url_errors(make_server: Any, upstream: Upstream) -> None:
    server = make_server(demo=False, stream_origins=(upstream.origin,), stream_timeout_s=1.0)
    server.product("a")
    tok = server.token("creator1", "creator")
    body = {"kind": "live", "title": "t", "showcase": ["a"]}
    r = server.http("POST", "/api/sessions", token=tok,
                    json=body | {"stream_url": "https://elsewhere.example/x.m3u8"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "stream_origin_refused"
    for bad in ({"stream_url": 5}, {"stream_clock_offset_ms": "1"},
                {"stream_clock_offset_ms": 10**12}):
        r = server.http("POST", "/api/sessions", token=tok, json=body | bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", bad
    r = server.http("POST", "/api/sessions", token=tok, json=body | {
        "stream_url": upstream.url("/missing.m3u8"), "stream_clock_offset_ms": -1200})
    assert r.status_code == 201, r.text
    assert r.json()["stream_clock_offset_ms"] == -1200
    sid = r.json()["id"]
    path = f"/api/sessions/{sid}"
    # loopback is not allowed outside --demo (only the listed origin is)
    r = server.http("PATCH", path, token=tok, json={"stream_url": "http://127.0.0.1:1/x.m3u8"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "stream_origin_refused"
    r = server.http("PATCH", path, token=server.token("other", "creator"),
                    json={"stream_url": upstream.url("/x.m3u8")})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = server.http("PATCH", "/api/sessions/nope", token=tok, json={"stream_url": None})
    assert r.status_code == 404
    assert server.http("PATCH", path, token=tok, json={}).status_code == 400
    assert server.http("PATCH", path, token=tok, json={"title": "x"}).status_code == 400
    # upstream failures: 404, a redirect (never followed), too large, not a playlist
    upstream.files["/redirect.m3u8"] = (302, b"")
    upstream.files["/big.m3u8"] = (200, b"#EXTM3U\n" + b"#" * 2_000_000)
    upstream.files["/text.m3u8"] = (200, b"<html>hello</html>")
    for name in ("/missing.m3u8", "/redirect.m3u8", "/big.m3u8", "/text.m3u8"):
        server.http("PATCH", path, token=tok, json={"stream_url": upstream.url(name)})
        r = playlist_of(server, sid)
        assert r.status_code == 502, (name, r.text)
        assert r.json()["error"]["code"] == "stream_upstream_failed", name
    assert upstream.hits.get("/elsewhere.m3u8") is None
    # removing the stream
    r = server.http("PATCH", path, token=tok, json={"stream_url": None})
    assert r.status_code == 200 and r.json()["stream_url"] is None
    assert playlist_of(server, sid).json()["error"]["code"] == "no_stream"


def test_one_fetch_per_cache_window(make_server: Any, upstream: Upstream) -> None:
    server = make_server(stream_cache_ms=60_000)
    server.product("a")
    upstream.files["/c.m3u8"] = (200, live_playlist(T0).encode())
    tok = server.token("creator1", "creator")
    sid = server.http("POST", "/api/sessions", token=tok, json={
        "kind": "live", "title": "t", "showcase": ["a"],
        "stream_url": upstream.url("/c.m3u8")}).json()["id"]
    for _ in range(5):
        assert playlist_of(server, sid).status_code == 200
    assert upstream.hits["/c.m3u8"] == 1
