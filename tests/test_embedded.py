"""`livecart serve` as a real process with its embedded Valkey: persistence across restarts,
no orphaned Valkey after kill -9, one server per data dir, and a required secret."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from server.auth import issue_token
from tests.helpers import SECRET

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"livecart ready on (http://127\.0\.0\.1:\d+) node=(\S+)")


def env(data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")}
    e["LIVECART_SECRET"] = SECRET
    e["LIVECART_LOG_LEVEL"] = "warning"
    e["PYTHONPATH"] = str(ROOT)
    if data_dir is not None:
        e["LIVECART_DATA_DIR"] = str(data_dir)
    e.update(extra)
    return e


def serve_cmd(*flags: str) -> list[str]:
    # the same entry point as `.venv/bin/livecart`, run from this checkout
    return [sys.executable, "-m", "server.runtime.cli", "serve", "--port", "0", *flags]


class Proc:
    def __init__(self, proc: subprocess.Popen[str], base: str, node: str) -> None:
        self.proc, self.base, self.node = proc, base, node


def start(data_dir: Path | None, *flags: str, timeout: float = 20) -> Proc:
    # the ready line is a log record on stderr (JSON by default), like every other line
    proc = subprocess.Popen(serve_cmd(*flags), env=env(data_dir), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if not line:
            raise AssertionError(f"server exited ({proc.wait()}): {''.join(seen)}")
        m = READY.search(line)
        if m:
            return Proc(proc, m.group(1), m.group(2))
    proc.kill()
    raise AssertionError("server did not print its ready line")


def stop(p: Proc, sig: int = signal.SIGTERM) -> bool:
    """Stop with a signal; True when it exited cleanly (0, or re-raised the signal as uvicorn
    does after a graceful shutdown)."""
    p.proc.send_signal(sig)
    try:
        return p.proc.wait(15) in (0, -sig)
    finally:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def valkeys_for(data_dir: Path) -> list[int]:
    """Pids of live valkey-server processes whose command line or cwd names data_dir."""
    found = []
    needle = str(data_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
            state = next(line for line in (entry / "status").read_text().splitlines()
                         if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "valkey" in cmdline and (needle in cmdline or cwd == needle) and " Z " not in state:
            found.append(int(entry.name))
    return found


def test_data_persists_across_a_restart(tmp_path: Path, procs: list[Proc]) -> None:
    data = tmp_path / "data"
    p = start(data)
    procs.append(p)
    seller = issue_token(SECRET, "s1", "seller", 600)
    r = httpx.post(p.base + "/api/products", headers={"Authorization": f"Bearer {seller}"},
                   json={"id": "keep-me", "title": "Kept", "price": 500, "stock": 3,
                         "commission_bps": 100}, timeout=10)
    assert r.status_code == 201, r.text
    health = httpx.get(p.base + "/healthz", timeout=10).json()
    assert health["node"] == p.node
    assert stop(p)
    assert valkeys_for(data) == []
    p2 = start(data)
    procs.append(p2)
    r = httpx.get(p2.base + "/api/products/keep-me", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Kept" and r.json()["stock"] == 3
    assert httpx.get(p2.base + "/readyz", timeout=10).status_code == 200
    assert stop(p2)


def test_kill_9_leaves_no_orphaned_valkey(tmp_path: Path, procs: list[Proc]) -> None:
    data = tmp_path / "d"
    p = start(data)
    procs.append(p)
    assert len(valkeys_for(data)) == 1
    p.proc.kill()
    p.proc.wait()
    deadline = time.monotonic() + 3
    while valkeys_for(data):
        assert time.monotonic() < deadline, f"orphaned valkey: {valkeys_for(data)}"
        time.sleep(0.05)
    # and the data dir is usable again right away
    p2 = start(data)
    procs.append(p2)
    assert httpx.get(p2.base + "/readyz", timeout=10).status_code == 200
    assert stop(p2)


def test_second_server_on_the_same_data_dir_fails_clearly(tmp_path: Path,
                                                          procs: list[Proc]) -> None:
    data = tmp_path / "shared"
    p = start(data)
    procs.append(p)
    second = subprocess.run(serve_cmd(), env=env(data), cwd=ROOT, text=True,
                            capture_output=True, timeout=30)
    assert second.returncode != 0
    assert "in use by another livecart server" in second.stderr
    assert "LIVECART_REDIS_URL" in second.stderr
    # the first one is unharmed
    assert httpx.get(p.base + "/readyz", timeout=10).status_code == 200
    assert len(valkeys_for(data)) == 1
    assert stop(p)


def test_missing_secret_is_a_startup_error(tmp_path: Path) -> None:
    e = env(tmp_path / "nosecret")
    del e["LIVECART_SECRET"]
    res = subprocess.run(serve_cmd("--ephemeral"), env=e, cwd=ROOT, text=True,
                         capture_output=True, timeout=30)
    assert res.returncode != 0
    assert "LIVECART_SECRET" in res.stderr
    assert "ready" not in res.stdout + res.stderr


def test_short_secret_is_a_startup_error() -> None:
    e = env(None, LIVECART_SECRET="too-short")
    res = subprocess.run(serve_cmd("--ephemeral"), env=e, cwd=ROOT, text=True,
                         capture_output=True, timeout=30)
    assert res.returncode != 0 and "LIVECART_SECRET" in res.stderr


def test_ephemeral_demo_serves_and_cleans_up(procs: list[Proc]) -> None:
    p = start(None, "--ephemeral", "--demo")
    procs.append(p)
    r = httpx.post(p.base + "/api/tokens", json={"sub": "ana", "role": "viewer"}, timeout=10)
    assert r.status_code == 200 and r.json()["token"]
    sessions = httpx.get(p.base + "/api/sessions", timeout=10).json()["sessions"]
    assert sessions  # the demo seed
    vk = _children_valkeys(p.proc.pid)
    assert len(vk) == 1
    temp_dir = Path(os.readlink(f"/proc/{vk[0]}/cwd"))  # valkey runs in its data dir
    assert temp_dir.is_dir()
    assert stop(p)
    assert valkeys_for(temp_dir) == []
    assert not temp_dir.exists()  # --ephemeral removes its temp dir on SIGTERM


def _children_valkeys(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == ppid and b"valkey" in cmdline:
            out.append(int(entry.name))
    return out
