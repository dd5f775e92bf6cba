"""Real server processes for multi-node tests: `livecart serve` on port 0 per node."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.helpers import SECRET

READY = re.compile(r"livecart ready on http://127\.0\.0\.1:(\d+)")
LIVECART = str(Path(sys.executable).parent / "livecart")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; reaped either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class NodeProcess:
    def __init__(self, redis_url: str, prefix: str, node_id: str, **env: Any) -> None:
        self.env = {
            **os.environ, "LIVECART_REDIS_URL": redis_url, "LIVECART_KEY_PREFIX": prefix,
            "LIVECART_SECRET": SECRET, "LIVECART_NODE_ID": node_id,
            "LIVECART_COUNTERS_INTERVAL_S": "0.3", "LIVECART_PRESENCE_TTL_S": "2",
            "LIVECART_STORE_TIMEOUT_S": "1", "LIVECART_LOG_LEVEL": "warning",
            **{k: str(v) for k, v in env.items()},
        }
        self.node_id = node_id
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, *args: str, timeout: float = 20.0) -> NodeProcess:
        self.proc = subprocess.Popen(
            [LIVECART, "serve", "--port", "0", *args], env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        # one reader thread keeps draining the pipe (a full pipe would block the server)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                m = READY.search(line)
                if m:
                    self.port = int(m.group(1))
                    return self
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"node {self.node_id} did not start:\n{''.join(self.output)}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
        if self._reader is not None:
            self._reader.join(5)  # the rest of its logs
