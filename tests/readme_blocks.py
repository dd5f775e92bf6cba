"""Running README.md's blocks as written (tests/test_readme*.py).

Each ```sh block of the README is run by bash exactly as it stands in the README (this
file never copies a command); the test knows only which blocks exist (their first lines,
so a new or changed block fails here until it is run too), which ones start servers, and
what to check while they run. Blocks run in a temporary directory (UV_PROJECT points `uv
run` at this checkout), so `./.livecart` and friends are the test's own; the load-test
blocks, whose paths are relative to the checkout, run in it with LIVECART_DATA_DIR set.
`python3 -m uv run pytest` itself is the CI step: .ci/run runs exactly that line.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)
FIRST_LINES = [
    "python3 -m pip install uv && python3 -m uv run livecart serve --demo",
    "python3 -m uv run pytest",
    "python3 -m uv run livecart orders tail --group billing --from-start",
    "for b in $(seq 0 15); do",
    "python3 -m uv tool install .",
    "python3 -m uv run livecart --help",
    "python3 -m uv run livecart demo reset",
    'export LIVECART_SECRET=$(python3 -c "import secrets; print(secrets.token_hex(32))")',
    "python3 -m uv run livecart valkey --cluster 3 --port 7000 --data-dir .livecart-cluster &",
    "python3 -m uv run livecart demo reset",
    "# a viewer spike to 500 viewers in 3 s, two generator processes",
    "python3 -m uv run ruff check server tests loadtest",
]


def block(first_line: str, nth: int = 0) -> str:
    found = [b for b in BLOCKS if b.splitlines()[0] == first_line]
    assert len(found) > nth, f"README has no block starting with {first_line!r}"
    return found[nth]


# --- running blocks ------------------------------------------------------------------------

def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    """A user's shell: no LIVECART_*/LC_* settings and not inside this venv (under `uv run
    pytest`, `python3` would be the venv's, which has no pip or uv). One exception: the
    demo's ffmpeg stream is off (LIVECART_DEMO_STREAM=0) — these blocks are about serving,
    and tests/test_demo_stream.py runs the stream — so parallel test files keep their CPU."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIVECART_", "LC_", "VIRTUAL_ENV", "UV_RUN"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != venv_bin)
    env.update(UV_PROJECT=str(ROOT), LIVECART_LOG_LEVEL="warning", LIVECART_DEMO_STREAM="0",
               **extra)
    return env


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def require_free(*ports: int) -> None:
    busy = [p for p in ports if not port_free(p)]
    assert not busy, f"the README's commands use ports {busy}, which something else holds"


class Script:
    """One README block run by bash in its own process group (background jobs included)."""

    def __init__(self, text: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["bash", "-ec", text], cwd=cwd, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise AssertionError(f"still running after {timeout} s:\n{self.output()[-3000:]}") \
                from exc

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.proc.poll()  # reap bash once it exits: a zombie still "exists" in its group
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.log.close()


@contextlib.contextmanager
def running(text: str, cwd: Path, env: dict[str, str], log: Path) -> Iterator[Script]:
    script = Script(text, cwd, env, log)
    try:
        yield script
    finally:
        script.stop()


def until(check: Callable[[], Any], what: str, script: Script, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError):
            value = check()
            if value:
                return value
        if script.proc.poll() is not None and script.proc.returncode != 0:
            break
        time.sleep(0.2)
    raise AssertionError(f"no {what}:\n{script.output()[-3000:]}")


def ready(port: int) -> Callable[[], bool]:
    return lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200


def run(text: str, cwd: Path, env: dict[str, str], log: Path, timeout: float) -> str:
    script = Script(text, cwd, env, log)
    code = script.wait(timeout)
    script.stop()
    assert code == 0, script.output()[-3000:]
    return script.output()


