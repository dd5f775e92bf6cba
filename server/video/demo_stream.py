"""The demo's real video: a generated live HLS stream and a short VOD, made by ffmpeg.

With `--demo` and `ffmpeg` on PATH the node runs one ffmpeg child that paints a test
pattern with a UTC clock (180x320 portrait, 10 fps, x264 ultrafast, one thread, `nice`) into a
live HLS stream of 1 s segments with `EXT-X-PROGRAM-DATE-TIME` on every segment (the
encoder's wall clock: the server's clock, so `stream_clock_offset_ms` is 0), keeping the
last 2 minutes; and once, a 60 s VOD for the shoppable video. Both live under
`<data dir>/demo-stream/` (a temporary directory with `--ephemeral`) and are served at
`/demo-stream/live/index.m3u8` and `/demo-stream/vod/index.m3u8`. The child is stopped
with the server and dies with it (PDEATHSIG) even on `kill -9`. Several processes on one
data directory (`--workers`) share one ffmpeg: the first to lock the directory runs it.

Without ffmpeg (or with `LIVECART_DEMO_STREAM=0`) the demo says so once in the log and its
sessions name no stream: the viewer page draws its stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from server.settings import Settings

log = logging.getLogger("livecart.demo_stream")

LIVE_URL = "/demo-stream/live/index.m3u8"
VOD_URL = "/demo-stream/vod/index.m3u8"
SIZE, FPS = "180x320", 10  # portrait, like a phone-shot live
LIVE_SEGMENT_S = 1
LIVE_WINDOW_SEGMENTS = 120  # 2 minutes: a replay right after a short show still plays
VOD_SECONDS = 60  # the shoppable video's timeline spans 60 s (server/api/demo.py)
RESTARTS = 3
_PR_SET_PDEATHSIG = 1
_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf")


def _child_setup() -> None:  # between fork and exec: own group, dies with us, low priority
    os.setpgrp()
    os.nice(10)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _clock_filter(text: str) -> str:
    font = f"fontfile={_FONT}:" if _FONT.is_file() else ""
    return (f"drawtext={font}fontsize=17:fontcolor=white:box=1:boxcolor=black@0.6:"
            f"boxborderw=4:x=(w-tw)/2:y=h*0.3:text='{text}'")


def live_args(ffmpeg: str, out: Path) -> list[str]:
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-threads", "1",
           "-pix_fmt", "yuv420p", "-g", str(FPS * LIVE_SEGMENT_S), "-keyint_min",
           str(FPS * LIVE_SEGMENT_S), "-sc_threshold", "0"]
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}",
            "-vf", _clock_filter(r"%{gmtime\:%H\\\:%M\\\:%S} UTC"), *enc,
            "-f", "hls", "-hls_time", str(LIVE_SEGMENT_S),
            "-hls_list_size", str(LIVE_WINDOW_SEGMENTS),
            "-hls_flags", "delete_segments+program_date_time+independent_segments+"
                          "omit_endlist+temp_file",
            "-hls_segment_filename", str(out / "seg-%06d.ts"), str(out / "index.m3u8")]


def vod_args(ffmpeg: str, out: Path) -> list[str]:
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}",
            "-vf", _clock_filter(r"%{pts\:hms}"), "-t", str(VOD_SECONDS),
            "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-pix_fmt", "yuv420p",
            "-g", str(FPS * 2), "-sc_threshold", "0",
            "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
            "-hls_flags", "program_date_time+independent_segments",
            "-hls_segment_filename", str(out / "seg-%03d.ts"), str(out / "index.m3u8")]


class DemoStream:
    """`start()` / `stop()` with the server; `available` once ffmpeg runs (or another
    process on the same directory runs it)."""

    def __init__(self, settings: Settings) -> None:
        self.ffmpeg = shutil.which("ffmpeg")
        self._tmp = tempfile.mkdtemp(prefix="livecart-stream-") if settings.ephemeral else None
        self.root = Path(self._tmp) if self._tmp else settings.data_dir / "demo-stream"
        self.live: subprocess.Popen[bytes] | None = None
        self.vod: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.available = False

    def start(self) -> bool:
        """Start generating (or join the process that does); False: no real stream."""
        if self.ffmpeg is None:
            log.warning("ffmpeg is not on PATH: the demo plays its drawn stand-in instead of "
                        "a real HLS stream (apt-get install ffmpeg)")
            return False
        (self.root / "live").mkdir(parents=True, exist_ok=True)
        (self.root / "vod").mkdir(parents=True, exist_ok=True)
        lock = (self.root / "lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            log.info("the demo stream in %s is made by another process", self.root)
            self.available = True
            return True
        self._lock = lock
        for old in (self.root / "live").iterdir():  # a fresh live stream every start
            old.unlink(missing_ok=True)
        self.live = self._spawn(live_args(self.ffmpeg, self.root / "live"))
        vod_done = (self.root / "vod" / "index.m3u8")
        if not (vod_done.is_file() and "#EXT-X-ENDLIST" in vod_done.read_text()):
            self.vod = self._spawn(vod_args(self.ffmpeg, self.root / "vod"))
        self.available = True
        self._watch = asyncio.get_running_loop().create_task(self._keep_running())
        log.info("demo stream: ffmpeg writes live HLS to %s", self.root / "live")
        return True

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.root / "ffmpeg.log").open("ab") as errors:  # never a pipe nobody reads
            return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=errors, preexec_fn=_child_setup)

    def _errors(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "ffmpeg.log").read_text(errors="replace")[-500:].strip()
        return ""

    async def _keep_running(self) -> None:
        """Restart a live ffmpeg that died (a few times), saying why once each."""
        restarts = 0
        while self.live is not None:
            await asyncio.sleep(1.0)
            if self.vod is not None and self.vod.poll() is not None:
                self.vod = None  # the VOD is made (or failed: the next start tries again)
            proc = self.live
            if proc is None or proc.poll() is None:
                continue
            err = self._errors()
            if restarts >= RESTARTS or self.ffmpeg is None:
                log.error("demo stream: ffmpeg exited (%s) for good: %s", proc.returncode, err)
                self.live = None
                return
            restarts += 1
            log.warning("demo stream: ffmpeg exited (%s), restarting: %s", proc.returncode, err)
            self.live = self._spawn(live_args(self.ffmpeg, self.root / "live"))

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for proc in (self.live, self.vod):
            if proc is not None and proc.poll() is None:
                proc.kill()  # nothing of a generated stream is worth a graceful end
                await asyncio.to_thread(proc.wait)
        self.live = self.vod = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def mount(self) -> Mount:
        return Mount("/demo-stream", app=_HlsFiles(self.root), name="demo-stream")


_TYPES = {".m3u8": b"application/vnd.apple.mpegurl", ".ts": b"video/mp2t"}


class _HlsFiles:
    """Static HLS files: the right media types, playlists never cached, any origin."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.files = StaticFiles(directory=root, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        suffix = os.path.splitext(str(scope.get("path", "")))[1]
        if suffix == ".m3u8" and scope["type"] == "http":
            await self._playlist(scope, receive, send)
            return

        async def patched(message: Message) -> None:
            if message["type"] == "http.response.start" and suffix in _TYPES:
                headers: list[Any] = [(k, v) for k, v in message.get("headers", [])
                                      if k.lower() not in (b"content-type", b"cache-control")]
                headers += [(b"content-type", _TYPES[suffix]),
                            (b"access-control-allow-origin", b"*"),
                            (b"cache-control", b"no-cache" if suffix == ".m3u8"
                             else b"max-age=60")]
                message = {**message, "headers": headers}
            await send(message)

        await self.files(scope, receive, patched)

    async def _playlist(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A playlist is read whole, once: ffmpeg replaces it (rename) every segment, and a
        file response that took its length from one version and its bytes from the next
        sent more than its Content-Length (the connection then broke mid-response)."""
        full, found = self.files.lookup_path(self.files.get_path(scope))
        body = None
        if found is not None:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                body = await asyncio.to_thread(Path(full).read_bytes)
        if body is None:
            response = Response("Not Found", status_code=404)
        else:
            response = Response(body, headers={
                "content-type": _TYPES[".m3u8"].decode(), "cache-control": "no-cache",
                "access-control-allow-origin": "*"})
        await response(scope, receive, send)
