"""`GET /api/sessions/{id}/stream.m3u8`: the session's playlist with its pins as
EXT-X-DATERANGE tags (server/video/hls.py), from the source server/video/streams.py fetches.

A live session's ranges come from its pin log on the stream clock; a video's from its
timeline, counted from its playlist's first segment. After a live show ends its playlist
is served as the VOD of the show (the segments between its start and its end that the
source still lists).
"""

from __future__ import annotations

from server.errors import ApiError, ErrorCode
from server.facts import Session
from server.rooms.sessions import Sessions
from server.video import hls
from server.video.streams import StreamSource, clock_ms, live_ranges, upstream_failed, video_ranges


async def session_playlist(sessions: Sessions, source: StreamSource, session: Session) -> str:
    """The rewritten playlist: `no_stream`, `stream_origin_refused`, `stream_upstream_failed`."""
    url = session.stream_url
    if not url:
        raise ApiError(ErrorCode.NO_STREAM, f"session {session.id!r} names no stream_url",
                       session=session.id)
    text = await source.playlist(url)
    try:
        if session.kind == "video":
            first = hls.first_program_date_time(text)
            ranges = video_ranges(session, first) if first is not None else []
        else:
            if session.status == "ended" and session.ended_at is not None:
                text = hls.clip(text, clock_ms(session, 0), session.ended_at
                                + session.stream_clock_offset_ms)
            ranges = live_ranges(session, await sessions.pin_log(session.id))
        return hls.rewrite(text, url, ranges)
    except hls.PlaylistError as exc:
        raise upstream_failed(url, str(exc)) from exc
