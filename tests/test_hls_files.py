"""The demo's HLS files: a playlist is served whole and consistent even while ffmpeg
replaces it — its Content-Length is the length of the body that follows."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from server.video.demo_stream import _HlsFiles

pytestmark = pytest.mark.anyio

OLD = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\nseg1.ts\n"
NEW = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\nseg1.ts\nseg2.ts\nseg3.ts\n"


async def get(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "",
             "query_string": b"", "headers": [], "http_version": "1.1"}
    sent: list[dict[str, Any]] = []
    asked: list[int] = []

    async def receive() -> dict[str, Any]:
        if asked:  # the client stays connected until the response is done
            await asyncio.Event().wait()
        asked.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def test_a_playlist_replaced_while_it_is_served_is_sent_whole(tmp_path: Path) -> None:
    playlist = tmp_path / "index.m3u8"
    playlist.write_bytes(OLD)
    app = _HlsFiles(tmp_path)
    looked_up = app.files.lookup_path

    def ffmpeg_replaces_it_now(path: str) -> Any:
        found = looked_up(path)  # the file as it was when looked up ...
        fresh = tmp_path / "index.m3u8.tmp"
        fresh.write_bytes(NEW)
        os.replace(fresh, playlist)  # ... and ffmpeg's next version renamed over it
        return found

    app.files.lookup_path = ffmpeg_replaces_it_now  # type: ignore[method-assign]
    status, headers, body = await get(app, "/index.m3u8")
    assert status == 200
    assert body in (OLD, NEW)
    assert int(headers[b"content-length"]) == len(body)
    assert headers[b"content-type"] == b"application/vnd.apple.mpegurl"
    assert headers[b"cache-control"] == b"no-cache"


async def test_a_missing_playlist_is_404_and_segments_are_files(tmp_path: Path) -> None:
    app = _HlsFiles(tmp_path)
    assert (await get(app, "/nope.m3u8"))[0] == 404
    assert (await get(app, "/../etc/passwd.m3u8"))[0] == 404
    (tmp_path / "seg1.ts").write_bytes(b"\x47" * 188)
    status, headers, body = await get(app, "/seg1.ts")
    assert status == 200 and body == b"\x47" * 188
    assert headers[b"content-type"] == b"video/mp2t"
