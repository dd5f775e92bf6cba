"""`livecart serve --demo` and its ffmpeg child: a live HLS stream with program date-time on
every 1 s segment, a VOD for the shoppable video, served by the app; the child dies with
the server (even on SIGKILL); without ffmpeg the demo says so once and names no stream."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx2 as httpx
import pytest

from server.settings import SettingsError, from_env
from tests.conftest import unique_prefix
from tests.procs import NodeProcess

# The demo's processes: on the standalone store only (nothing here is per shard).
pytestmark = [pytest.mark.e2e, pytest.mark.stores("standalone")]
T = TypeVar("T")


def _state(pid: int) -> tuple[str, str, int] | None:
    """(name, state, parent pid) from /proc, None once the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = raw.split("(", 1)[1].rsplit(")", 1)
    fields = rest.split()
    return name, fields[0], int(fields[1])


def _children(pid: int, name: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        child = int(stat.parent.name)
        info = _state(child)
        if info is not None and info[0] == name and info[2] == pid and info[1] != "Z":
            found.append(child)
    return found


def _wait(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_the_demo_stream_is_real_hls_and_dies_with_the_server(valkey_url: str) -> None:
    node = NodeProcess(valkey_url, unique_prefix(), "demo-stream").start("--demo", "--ephemeral")
    try:
        base = f"http://127.0.0.1:{node.port}"

        def live() -> str | None:
            r = httpx.get(base + "/demo-stream/live/index.m3u8", timeout=5)
            return r.text if r.status_code == 200 and r.text.count("#EXTINF") >= 3 else None

        text = _wait(live, 20, "three live segments")
        r = httpx.get(base + "/demo-stream/live/index.m3u8", timeout=5)
        assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert r.headers["cache-control"] == "no-cache"
        lines = text.splitlines()
        assert "#EXT-X-ENDLIST" not in text  # live
        infs = [i for i, x in enumerate(lines) if x.startswith("#EXTINF:")]
        for i in infs:  # every segment: 1 s, with its program date-time, then its URI
            assert 0.9 <= float(lines[i][8:].split(",")[0]) <= 1.1, lines[i]
            assert lines[i + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:"), lines[i + 1]
        segment = httpx.get(base + "/demo-stream/live/" + lines[infs[0] + 2], timeout=5)
        assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp2t"
        assert segment.content[:1] == b"\x47"  # an MPEG-TS sync byte

        session = httpx.get(base + "/api/sessions/sess_demo_live", timeout=5).json()
        assert session["stream_url"] == "/demo-stream/live/index.m3u8"
        served = httpx.get(base + "/api/sessions/sess_demo_live/stream.m3u8", timeout=5).text
        assert "/demo-stream/live/seg-" in served

        def vod() -> str | None:
            r = httpx.get(base + "/demo-stream/vod/index.m3u8", timeout=5)
            return r.text if r.status_code == 200 and "#EXT-X-ENDLIST" in r.text else None

        vod_text = _wait(vod, 30, "the VOD")
        total = sum(float(x[8:].split(",")[0]) for x in vod_text.splitlines()
                    if x.startswith("#EXTINF:"))
        assert 59 <= total <= 61
        video = httpx.get(base + "/api/sessions/sess_demo_video/stream.m3u8", timeout=5).text
        assert video.count('CLASS="com.livecart.pin"') == 4  # the video's four moments

        assert node.proc is not None
        ffmpeg = _children(node.proc.pid, "ffmpeg")
        assert len(ffmpeg) == 1, ffmpeg  # the live one (the VOD's is done)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        _wait(lambda: (_state(ffmpeg[0]) or ("", "Z", 0))[1] == "Z", 10,
              "ffmpeg to die with the server")
    finally:
        node.kill()


def test_without_ffmpeg_the_demo_says_so_once_and_names_no_stream(valkey_url: str,
                                                                  tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    node = NodeProcess(valkey_url, unique_prefix(), "no-ffmpeg", PATH=str(bare),
                       LIVECART_LOG_LEVEL="info", LIVECART_LOG_FORMAT="text")
    node.start("--demo", "--ephemeral")
    try:
        base = f"http://127.0.0.1:{node.port}"
        assert httpx.get(base + "/api/sessions/sess_demo_live", timeout=5).json()[
            "stream_url"] is None
        r = httpx.get(base + "/api/sessions/sess_demo_live/stream.m3u8", timeout=5)
        assert r.status_code == 409 and r.json()["error"]["code"] == "no_stream"
        assert sum("ffmpeg is not on PATH" in line for line in node.output) == 1
    finally:
        node.kill()


def test_stream_settings_from_the_environment() -> None:
    s = from_env({"LIVECART_STREAM_ORIGINS": "https://cdn.example, http://10.0.0.5:8080 ,",
                  "LIVECART_STREAM_CACHE_MS": "250", "LIVECART_DEMO_STREAM": "0"})
    assert s.stream_origins == ("https://cdn.example", "http://10.0.0.5:8080")
    assert s.stream_cache_ms == 250 and s.demo_stream is False
    for bad in ({"LIVECART_STREAM_ORIGINS": "https://cdn.example/path"},
                {"LIVECART_STREAM_ORIGINS": "cdn.example"},
                {"LIVECART_STREAM_MAX_BYTES": "0"}, {"LIVECART_STREAM_TIMEOUT_S": "-1"}):
        with pytest.raises(SettingsError):
            from_env(bad)
