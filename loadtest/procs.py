"""Processes the bench starts (Valkey, livecart nodes, peers) and what /proc says about them."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
READY = re.compile(rb"ready on http://([\d.]+):(\d+)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (threads included)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Proc:
    """A child server process whose output goes to a log file; `ready()` waits for its
    'ready on http://host:port' line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **env}
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                      stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.pid = self.popen.pid
        (log_dir / f"{name}.pid").write_text(str(self.pid))  # for py-spy and friends
        self.host = ""
        self.port = 0

    def ready(self, timeout_s: float = 20.0) -> Proc:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = READY.search(self.log_path.read_bytes())
            if m:
                self.host, self.port = m.group(1).decode(), int(m.group(2))
                return self
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def stop(self, timeout_s: float = 8.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        self.log.close()


def http(method: str, url: str, body: Any = None, token: str | None = None,
         timeout_s: float = 10.0) -> Any:
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        raw = resp.read()
    ctype = resp.headers.get("Content-Type", "")
    return orjson.loads(raw) if "json" in ctype else raw


def scrape(base: str) -> dict[str, float]:
    """The livecart metrics the bench reads: fan-out sum/count/buckets, delivered."""
    text = http("GET", base + "/metrics").decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("livecart_fanout_seconds", "livecart_events_delivered",
                            "livecart_events_received", "livecart_slow_consumer")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def python() -> str:
    return sys.executable


def livecart_bin() -> str:
    candidate = Path(sys.executable).parent / "livecart"
    return str(candidate) if candidate.exists() else "livecart"
