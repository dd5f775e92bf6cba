"""`livecart serve --workers N`: N node processes on one port, supervised by this one.

Each worker is an ordinary node (`livecart serve` in a child process) with its own node
id (`<node id>-w<i>`), its own listening socket bound with `SO_REUSEPORT` to the same
port (the kernel spreads new connections over them), and the same store: the embedded
Valkey this process started, or `LIVECART_REDIS_URL`. Presence, recovery and fan-out work
across workers exactly as across nodes (they are nodes).

The supervisor starts worker 0 first (so `--demo` seeds once), then the others; prints one
`livecart ready on http://host:port ... workers=N` line when all are up; forwards their
output; restarts a worker that dies (unless it dies at once, which stops everything);
and on SIGTERM/SIGINT sends SIGTERM to every worker (each drains its viewers with 1001)
and waits up to `drain_timeout_s` + 5 s before killing what is left. Workers die with the
supervisor even on `kill -9` (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO

from server.settings import Settings

log = logging.getLogger("livecart.workers")

READY = re.compile(r"livecart ready on ")
PR_SET_PDEATHSIG = 1
QUICK_DEATH_S = 5.0  # a worker that dies sooner than this after starting is not restarted


def worker_count(value: str) -> int:
    """`--workers`: a positive integer, or `auto` (one per core)."""
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    count = int(value)
    if count < 1:
        raise ValueError("--workers must be ≥ 1 or auto")
    return count


def reuse_port_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket bound with SO_REUSEPORT (each worker has its own)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _die_with_parent() -> None:  # in the child, between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Worker:
    def __init__(self, index: int, argv: list[str], env: dict[str, str]) -> None:
        self.index = index
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0
        self.ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.ready.clear()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, preexec_fn=_die_with_parent)
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._forward, args=(self.proc.stdout,),
                                        daemon=True)
        self._reader.start()

    def _forward(self, stream: IO[str]) -> None:
        """Relay the worker's output; its own ready line only marks it ready."""
        for line in stream:
            if READY.search(line):
                self.ready.set()
                continue
            sys.stdout.write(line)
            sys.stdout.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            return False
        if self._reader is not None:
            self._reader.join(2)
        return True


def supervise(settings: Settings, store_url: str, banner: str) -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT; 0 when they all drained."""
    count = settings.workers
    # Reserve the port (a bound, non-listening SO_REUSEPORT socket receives no
    # connections) so port 0 means one port for every worker.
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    reserve = socket.socket(family, socket.SOCK_STREAM)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserve.bind((settings.host, settings.port))
    host, port = reserve.getsockname()[:2]
    argv = [sys.executable, "-m", "server.runtime.cli", "serve", "--host", settings.host,
            "--port", str(port), "--workers", "1"]
    if settings.demo:
        argv.append("--demo")
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_NODE_ID")}
    base.update({"LIVECART_REDIS_URL": store_url, "LIVECART_REUSE_PORT": "1",
                 "PYTHONUNBUFFERED": "1"})
    if settings.secret:
        base["LIVECART_SECRET"] = settings.secret
    workers = [Worker(i, argv, {**base, "LIVECART_NODE_ID": f"{settings.node_id}-w{i}"})
               for i in range(count)]
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        deadline = time.monotonic() + 60
        for group in (workers[:1], workers[1:]):  # worker 0 first: it seeds the demo
            for w in group:
                w.start()
            for w in group:
                while not w.ready.wait(0.1):
                    if stopping.is_set() or not w.alive() or time.monotonic() > deadline:
                        log.error("worker %d did not start (exit %s, %s)", w.index,
                                  w.proc.poll() if w.proc else None,
                                  "stopping" if stopping.is_set() else "timeout"
                                  if w.alive() else "exited")
                        return 1
        print(banner.format(host=host, port=port) + f" workers={count}", flush=True)
        while not stopping.wait(0.5):
            for w in workers:
                if w.alive():
                    continue
                if time.monotonic() - w.started < QUICK_DEATH_S:
                    log.error("worker %d exited at once (%s); stopping", w.index,
                              w.proc.returncode if w.proc else "?")
                    code = 1
                    stopping.set()
                    break
                log.warning("worker %d exited (%s); restarting it", w.index,
                            w.proc.returncode if w.proc else "?")
                w.start()
        return code
    finally:
        for w in workers:
            w.signal(signal.SIGTERM)
        until = time.monotonic() + settings.drain_timeout_s + 5
        for w in workers:
            if not w.wait(until - time.monotonic()):
                w.signal(signal.SIGKILL)
                w.wait(5)
        reserve.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
