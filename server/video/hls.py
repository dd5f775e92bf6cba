"""HLS media playlists with pins as timed metadata: pure text in, text out, no I/O.

`rewrite(playlist, base_url, ranges)` returns the playlist with every URI resolved against
`base_url` (the playlist's own URL, so it still plays when served from elsewhere) and one
`EXT-X-DATERANGE` tag per range (RFC 8216 §4.3.2.7), each placed right before the first
segment that ends after its START-DATE (ranges starting after the last segment go at the
end). Ranges that ended before the playlist's first segment are left out. A playlist
without `EXT-X-PROGRAM-DATE-TIME` gets no DATERANGE (the RFC requires one). With no
ranges and URIs that are already absolute the playlist comes back byte for byte.

`clip(playlist, start_ms, end_ms)` turns a live playlist into the VOD of one window (a
replay): the segments overlapping [start_ms, end_ms) of program date-time, with
`EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

PIN_CLASS = "com.livecart.pin"
_URI_ATTR = re.compile(r'URI="([^"]*)"')
_SAFE_VALUE = re.compile(r'^[^"\r\n]*$')


class PlaylistError(ValueError):
    """The text is not an HLS media playlist (the message says why)."""


@dataclass(frozen=True, slots=True)
class DateRange:
    """One pin on the stream clock: [start_ms, end_ms) in epoch ms of program date-time."""

    id: str
    start_ms: int
    product: str
    end_ms: int | None = None
    deal_price: int | None = None

    def tag(self) -> str:
        for value in (self.id, self.product):
            if not _SAFE_VALUE.match(value):
                raise ValueError(f"{value!r} cannot be a quoted-string attribute")
        attrs = [f'ID="{self.id}"', f'CLASS="{PIN_CLASS}"',
                 f'START-DATE="{iso_ms(self.start_ms)}"']
        if self.end_ms is not None:
            end = max(self.end_ms, self.start_ms)
            attrs += [f'END-DATE="{iso_ms(end)}"', f"DURATION={(end - self.start_ms) / 1000:.3f}"]
        attrs.append(f'X-PRODUCT="{self.product}"')
        if self.deal_price is not None:
            attrs.append(f"X-DEAL-PRICE={int(self.deal_price)}")
        return "#EXT-X-DATERANGE:" + ",".join(attrs)


def iso_ms(epoch_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-12-02T01:39:03.123Z."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_date_ms(value: str) -> int:
    """An EXT-X-PROGRAM-DATE-TIME value (ISO 8601 with a zone) as epoch ms."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if re.search(r"[+-]\d{4}$", text):  # ffmpeg writes +0000
        text = text[:-2] + ":" + text[-2:]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PlaylistError(f"bad EXT-X-PROGRAM-DATE-TIME {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


@dataclass(slots=True)
class _Segment:
    first_line: int  # index of the segment's first tag line (or its URI)
    uri_line: int
    start_ms: int | None  # program date-time of its first frame
    duration_ms: int
    discontinuity: bool

    @property
    def end_ms(self) -> int | None:
        return None if self.start_ms is None else self.start_ms + self.duration_ms


def _segments(lines: list[str]) -> list[_Segment]:
    if not lines or lines[0].strip() != "#EXTM3U":
        raise PlaylistError("not an HLS playlist (no #EXTM3U first line)")
    out: list[_Segment] = []
    first: int | None = None
    pdt: int | None = None
    duration = 0
    disc = False
    clock: int | None = None  # the next segment's start when it has no PDT of its own
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-STREAM-INF") or line.startswith("#EXT-X-I-FRAME-STREAM-INF"):
            raise PlaylistError("a multivariant (master) playlist, not a media playlist")
        is_segment_tag = line.startswith(("#EXTINF:", "#EXT-X-PROGRAM-DATE-TIME:",
                                          "#EXT-X-DISCONTINUITY", "#EXT-X-BYTERANGE:",
                                          "#EXT-X-KEY:", "#EXT-X-MAP:", "#EXT-X-GAP",
                                          "#EXT-X-BITRATE:")) \
            and not line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:")
        if line.startswith("#"):
            if is_segment_tag and first is None:
                first = i
            if line.startswith("#EXTINF:"):
                try:
                    duration = round(float(line[8:].split(",", 1)[0]) * 1000)
                except ValueError as exc:
                    raise PlaylistError(f"bad #EXTINF line {line!r}") from exc
            elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                pdt = parse_date_ms(line.split(":", 1)[1])
            elif line.startswith("#EXT-X-DISCONTINUITY") and \
                    not line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE"):
                disc = True
            continue
        start = pdt if pdt is not None else clock
        out.append(_Segment(first if first is not None else i, i, start, duration, disc))
        clock = None if start is None else start + duration
        first, pdt, duration, disc = None, None, 0, False
    return out


def _absolute(line: str, base_url: str) -> str:
    stripped = line.strip()
    if not stripped:
        return line
    if stripped.startswith("#"):
        if 'URI="' not in stripped:
            return line
        return _URI_ATTR.sub(lambda m: f'URI="{urljoin(base_url, m.group(1))}"', line)
    return urljoin(base_url, stripped)


def first_program_date_time(playlist: str) -> int | None:
    """The first segment's program date-time (epoch ms), if the playlist has one."""
    segments = _segments(playlist.replace("\r\n", "\n").split("\n"))
    return segments[0].start_ms if segments else None


def has_program_date_time(playlist: str) -> bool:
    return "#EXT-X-PROGRAM-DATE-TIME:" in playlist


def rewrite(playlist: str, base_url: str, ranges: list[DateRange]) -> str:
    """The playlist with absolute URIs and the ranges as EXT-X-DATERANGE tags (above)."""
    newline = "\r\n" if "\r\n" in playlist else "\n"
    lines = playlist.split(newline)
    segments = _segments(lines)
    out_lines = [_absolute(line, base_url) for line in lines]
    if not ranges or not has_program_date_time(playlist) or not segments:
        return newline.join(out_lines)
    window_start = segments[0].start_ms
    wanted = sorted((r for r in ranges
                     if window_start is None or r.end_ms is None or r.end_ms >= window_start),
                    key=lambda r: (r.start_ms, r.id))
    before: dict[int, list[str]] = {}
    tail: list[str] = []
    for r in wanted:
        for seg in segments:
            if seg.end_ms is not None and r.start_ms < seg.end_ms:
                before.setdefault(seg.first_line, []).append(r.tag())
                break
        else:
            tail.append(r.tag())
    result: list[str] = []
    end_at = next((i for i, line in enumerate(lines) if line.strip() == "#EXT-X-ENDLIST"),
                  None)
    for i, line in enumerate(out_lines):
        if i == end_at:
            result.extend(tail)
            tail = []
        result.extend(before.get(i, ()))
        result.append(line)
    if tail:  # after the last segment, before the file's final newline
        at = len(result) - 1 if result and result[-1] == "" else len(result)
        result[at:at] = tail
    return newline.join(result)


def clip(playlist: str, start_ms: int, end_ms: int) -> str:
    """The segments overlapping [start_ms, end_ms) as a VOD playlist (a live show's replay).
    A playlist without program date-time, or already a VOD, comes back unchanged."""
    newline = "\r\n" if "\r\n" in playlist else "\n"
    lines = playlist.split(newline)
    segments = _segments(lines)
    if "#EXT-X-ENDLIST" in playlist or not has_program_date_time(playlist) or not segments:
        return playlist
    keep = [s for s in segments if s.start_ms is not None and s.end_ms is not None
            and s.end_ms > start_ms and s.start_ms < end_ms]
    header_end = segments[0].first_line
    dropped_before = segments.index(keep[0]) if keep else len(segments)
    discontinuities = sum(1 for s in segments[:dropped_before] if s.discontinuity)
    head: list[str] = []
    for line in lines[:header_end]:
        tag = line.strip()
        if tag.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            line = f"#EXT-X-MEDIA-SEQUENCE:{int(tag.split(':', 1)[1]) + dropped_before}"
        elif tag.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            line = f"#EXT-X-DISCONTINUITY-SEQUENCE:{int(tag.split(':', 1)[1]) + discontinuities}"
        elif tag.startswith("#EXT-X-PLAYLIST-TYPE:") or not tag:
            continue
        head.append(line)
    head.insert(1, "#EXT-X-PLAYLIST-TYPE:VOD")
    carried: dict[str, str] = {}  # the EXT-X-MAP / EXT-X-KEY in force at the first kept one
    for seg in segments[:dropped_before]:
        for x in lines[seg.first_line:seg.uri_line]:
            if x.strip().startswith(("#EXT-X-MAP:", "#EXT-X-KEY:")):
                carried[x.strip().split(":", 1)[0]] = x
    body: list[str] = []
    for n, seg in enumerate(keep):
        block = [x for x in lines[seg.first_line:seg.uri_line + 1] if x.strip()]
        if n == 0:
            own = {x.strip().split(":", 1)[0] for x in block}
            block = [x for tag, x in carried.items() if tag not in own] + block
        body.extend(block)
    return newline.join([*head, *body, "#EXT-X-ENDLIST", ""])
