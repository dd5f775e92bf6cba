"""A session's HLS stream: which URLs may be named, fetching them, and pins as date ranges.

A `stream_url` is an absolute `http(s)` URL whose origin is on `LIVECART_STREAM_ORIGINS`
(with `--demo`, any loopback origin too), or — `--demo` only — a path under
`/demo-stream/`, the node's own generated stream, read from its directory. The server
never fetches anything else: no redirects are followed, no proxy is used, a fetch has a
timeout and a size cap, and each URL is fetched at most once per `LIVECART_STREAM_CACHE_MS`
per node however many viewers reload it (one fetch in flight per URL).

The stream clock (docs/protocol.md, "Real video"): a pin's moment in program date-time is
`started_at + stream_ts_ms + stream_clock_offset_ms` — `pinned_at + offset` when the
creator's client sends no `stream_ts_ms`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.errors import ApiError, ErrorCode
from server.facts import Session
from server.settings import Settings
from server.video.hls import DateRange

DEMO_PREFIX = "/demo-stream/"
MAX_URL = 2048
MAX_OFFSET_MS = 24 * 3600 * 1000


def refused(url: str, why: str) -> ApiError:
    return ApiError(ErrorCode.STREAM_ORIGIN_REFUSED, f"stream_url {url[:200]!r}: {why}",
                    field="stream_url")


def upstream_failed(url: str, why: str) -> ApiError:
    return ApiError(ErrorCode.STREAM_UPSTREAM_FAILED, f"the stream {url[:200]!r}: {why}")


def _origin(scheme: str, host: str, port: int | None) -> str:
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, settings: Settings) -> str:
    """The URL if a session may name it; `stream_origin_refused` (403) otherwise."""
    if len(url) > MAX_URL or any(c.isspace() for c in url):
        raise refused(url, f"must be a URL of at most {MAX_URL} characters without spaces")
    if url.startswith(DEMO_PREFIX):
        if not settings.demo:
            raise refused(url, "/demo-stream/ paths exist only with --demo")
        if ".." in url or not url.endswith(".m3u8"):
            raise refused(url, "not a playlist of the demo stream")
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise refused(url, "not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refused(url, "must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise refused(url, "must not carry credentials")
    host = parts.hostname.lower()
    allowed = {o.lower().rstrip("/") for o in settings.stream_origins}
    origin = _origin(parts.scheme, host if ":" not in host else f"[{host}]", port)
    if origin in allowed or (settings.demo and _loopback(host)):
        return url
    raise refused(url, f"origin {origin} is not in LIVECART_STREAM_ORIGINS")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is answered as the failure it is, never followed


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


@dataclass(slots=True)
class _Cached:
    at: float
    text: str


class StreamSource:
    """Fetches playlists for `stream.m3u8`: cached, one fetch in flight per URL."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.local_root: Path | None = None  # --demo: the directory of /demo-stream/
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Future[str]] = {}

    async def playlist(self, url: str) -> str:
        """The playlist's text: `stream_origin_refused`, `stream_upstream_failed`."""
        check_url(url, self.settings)
        ttl = self.settings.stream_cache_ms / 1000
        hit = self._cache.get(url)
        if hit is not None and time.monotonic() - hit.at < ttl:
            return hit.text
        running = self._inflight.get(url)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            text = await self._load(url)
            self._cache[url] = _Cached(time.monotonic(), text)
            if len(self._cache) > 1000:  # bounded: drop the oldest
                oldest = min(self._cache, key=lambda k: self._cache[k].at)
                self._cache.pop(oldest, None)
            future.set_result(text)
            return text
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(url, None)

    async def _load(self, url: str) -> str:
        cap = self.settings.stream_max_bytes
        if url.startswith(DEMO_PREFIX):
            return await asyncio.to_thread(self._read_local, url, cap)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._fetch, url, cap),
                                          self.settings.stream_timeout_s)
        except TimeoutError as exc:
            raise upstream_failed(url, f"no answer within {self.settings.stream_timeout_s} s") \
                from exc

    def _read_local(self, url: str, cap: int) -> str:
        root = self.local_root
        if root is None:
            raise upstream_failed(url, "the demo stream is not running (is ffmpeg installed?)")
        path = (root / url[len(DEMO_PREFIX):]).resolve()
        if not path.is_relative_to(root.resolve()):
            raise refused(url, "outside the demo stream")
        try:
            with path.open("rb") as f:
                raw = f.read(cap + 1)
        except OSError as exc:
            raise upstream_failed(url, "the demo stream has no such playlist yet") from exc
        return _decode(url, raw, cap)

    def _fetch(self, url: str, cap: int) -> str:
        request = urllib.request.Request(url, headers={"User-Agent": "livecart",
                                                       "Accept": "application/vnd.apple.mpegurl"})
        try:
            with _OPENER.open(request, timeout=self.settings.stream_timeout_s) as response:
                raw = response.read(cap + 1)
        except urllib.error.HTTPError as exc:
            raise upstream_failed(url, f"answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise upstream_failed(url, f"unreachable ({exc})") from exc
        return _decode(url, raw, cap)


def _decode(url: str, raw: bytes, cap: int) -> str:
    if len(raw) > cap:
        raise upstream_failed(url, f"the playlist is over {cap} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise upstream_failed(url, "the playlist is not UTF-8 text") from exc


# pins on the stream clock ---------------------------------------------------------------

def clock_ms(session: Session, stream_ts_ms: int) -> int:
    """Program date-time (epoch ms) of a stream position of this session."""
    start = session.started_at if session.started_at is not None else session.created_at
    return start + stream_ts_ms + session.stream_clock_offset_ms


def live_ranges(session: Session, log: list[dict[str, Any]]) -> list[DateRange]:
    """A live session's pin log as date ranges: each pin lasts until the next pin or unpin.
    The ID (`<session>.pin.<n>`, n its place in the log) is the same on every reload."""
    out: list[DateRange] = []
    for i, item in enumerate(log):
        if item.get("op") != "pin":
            continue
        end = next((clock_ms(session, int(nxt.get("at", 0))) for nxt in log[i + 1:]), None)
        deal = item.get("deal_price")
        out.append(DateRange(f"{session.id}.pin.{i}", clock_ms(session, int(item.get("at", 0))),
                             str(item["product"]), end,
                             int(deal) if isinstance(deal, int) else None))
    return out


def video_ranges(session: Session, first_pdt_ms: int) -> list[DateRange]:
    """A video's timeline on its playlist's clock (position 0 = the first segment)."""
    entries = session.timeline
    out: list[DateRange] = []
    for i, e in enumerate(entries):
        until = e.get("until_ms")
        if until is None and i + 1 < len(entries):
            until = entries[i + 1]["at_ms"]
        out.append(DateRange(f"{session.id}.at.{int(e['at_ms'])}", first_pdt_ms + int(e["at_ms"]),
                             str(e["product"]), None if until is None else first_pdt_ms + until))
    return out
