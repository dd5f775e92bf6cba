"""Every command in README.md runs as written.

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
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e

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
    "# a viewer spike to 1,000 viewers in 5 s, two generator processes",
    "python3 -m uv run ruff check server tests loadtest",
]


def block(first_line: str, nth: int = 0) -> str:
    found = [b for b in BLOCKS if b.splitlines()[0] == first_line]
    assert len(found) > nth, f"README has no block starting with {first_line!r}"
    return found[nth]


def test_the_readme_blocks_are_the_ones_this_file_runs() -> None:
    assert [b.splitlines()[0] for b in BLOCKS] == FIRST_LINES
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"```sh\n(.*?)```", quick_start, re.S)) == 2  # exactly two commands


def test_the_environment_table_is_the_generated_one() -> None:
    from server.settings import env_table

    assert env_table(markdown=True) in README  # `livecart env --markdown`, one source


def test_the_test_command_is_the_ci_step() -> None:
    assert block("python3 -m uv run pytest").strip() == "python3 -m uv run pytest"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "python3 -m uv run pytest"


# --- running blocks ------------------------------------------------------------------------

def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    """A user's shell: no LIVECART_*/LC_* settings and not inside this venv (under `uv run
    pytest`, `python3` would be the venv's, which has no pip or uv)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIVECART_", "LC_", "VIRTUAL_ENV", "UV_RUN"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != venv_bin)
    env.update(UV_PROJECT=str(ROOT), LIVECART_LOG_LEVEL="warning", **extra)
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


# --- the blocks --------------------------------------------------------------------------

def test_quick_start_orders_stream_and_demo_reset(tmp_path: Path) -> None:
    require_free(8000)
    env = env_for(tmp_path)
    with running(block(FIRST_LINES[0]), tmp_path, env, tmp_path / "serve.log") as server:
        until(ready(8000), "server on :8000", server)
        home = httpx.get("http://127.0.0.1:8000/", timeout=10)
        assert home.status_code == 200 and "<html" in home.text.lower()
        seller = httpx.post("http://127.0.0.1:8000/api/tokens",
                            json={"sub": "seller_demo", "role": "seller"}).json()["token"]
        order = httpx.post("http://127.0.0.1:8000/api/orders",
                           headers={"Authorization": f"Bearer {seller}"},
                           json={"external_id": "readme-1", "buyer": "bob",
                                 "lines": [{"product": "demo_mug", "qty": 1,
                                            "unit_price": 1500}]}).json()
        # orders tail runs until Ctrl-C: wait for its line, then stop it
        with running(block(FIRST_LINES[2]), tmp_path, env, tmp_path / "tail.log") as tail:
            line = until(lambda: next((ln for ln in tail.output().splitlines()
                                       if ln.startswith("{")), None), "orders tail line", tail)
            assert orjson.loads(line)["order"] == order["id"]
        # redis-cli on the embedded server's socket
        out = run(block(FIRST_LINES[3]), tmp_path, env, tmp_path / "redis-cli.log", 30)
        assert out.splitlines()[0] == "OK" and order["id"] in out
    # with the server stopped (the demo show ended first), the reset brings it back
    token = None
    with running(block(FIRST_LINES[0]), tmp_path, env, tmp_path / "serve2.log") as server:
        until(ready(8000), "server on :8000", server)
        token = httpx.post("http://127.0.0.1:8000/api/tokens",
                           json={"sub": "creator_demo", "role": "creator"}).json()["token"]
        for action in ("start", "end"):
            httpx.post(f"http://127.0.0.1:8000/api/sessions/sess_demo_live/{action}",
                       headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    out = run(block(FIRST_LINES[6]), tmp_path, env, tmp_path / "reset.log", 60)
    assert "seeded the demo again" in out
    with running(block(FIRST_LINES[0]), tmp_path, env, tmp_path / "serve3.log") as server:
        until(ready(8000), "server on :8000", server)
        status = httpx.get("http://127.0.0.1:8000/api/sessions/sess_demo_live").json()["status"]
        assert status == "scheduled"


def test_install_as_an_application_and_the_help_commands(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    env = env_for(tmp_path, UV_TOOL_DIR=str(tmp_path / "tools"), UV_TOOL_BIN_DIR=str(bin_dir))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    out = run(block(FIRST_LINES[4]), ROOT, env, tmp_path / "install.log", 300)
    assert "livecart 0.1.0" in out
    out = run(block(FIRST_LINES[5]), tmp_path, env_for(tmp_path), tmp_path / "help.log", 120)
    assert "LIVECART_REDIS_URL" in out and "orders" in out
    assert re.search(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$", out, re.M), out[-2000:]


def test_several_nodes(tmp_path: Path) -> None:
    require_free(6390, 8001, 8002, 8003)
    with running(block(FIRST_LINES[7]), tmp_path, env_for(tmp_path),
                 tmp_path / "nodes.log") as nodes:
        for port in (8001, 8002, 8003):
            until(ready(port), f"node on :{port}", nodes)
        ids = {httpx.get(f"http://127.0.0.1:{port}/healthz").json()["node"]
               for port in (8001, 8002, 8003)}
        assert len(ids) == 3
        # one store: a session made on one node is seen by the others
        sessions = [{s["id"] for s in httpx.get(
            f"http://127.0.0.1:{port}/api/sessions").json()["sessions"]}
            for port in (8001, 8002, 8003)]
        assert sessions[0] == sessions[1] == sessions[2] and "sess_demo_live" in sessions[0]
    assert (tmp_path / ".livecart-valkey").is_dir()


def test_on_a_cluster(tmp_path: Path) -> None:
    require_free(7000, 7001, 7002, 17000, 17001, 17002, 8001, 8002)
    with running(block(FIRST_LINES[8]), tmp_path, env_for(tmp_path),
                 tmp_path / "cluster.log") as nodes:
        for port in (8001, 8002):
            until(ready(port), f"node on :{port}", nodes)
        sessions = [{s["id"] for s in httpx.get(
            f"http://127.0.0.1:{port}/api/sessions").json()["sessions"]} for port in (8001, 8002)]
        assert sessions[0] == sessions[1] and "sess_demo_live" in sessions[0]
        info = subprocess.run(["redis-cli", "-p", "7000", "CLUSTER", "INFO"], text=True,
                              capture_output=True, check=True).stdout
        assert "cluster_state:ok" in info and "cluster_known_nodes:3" in info
    assert len(list((tmp_path / ".livecart-cluster").glob("node-*/nodes.conf"))) == 3


def _listening_on(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_load_tests_and_benchmarks(tmp_path: Path) -> None:
    require_free(8000, 8089)
    env = env_for(tmp_path, LIVECART_DATA_DIR=str(tmp_path / "data"))
    with running(block(FIRST_LINES[9], nth=1), ROOT, env, tmp_path / "locust-ui.log") as ui:
        until(ready(8000), "server on :8000", ui)
        until(lambda: httpx.get("http://127.0.0.1:8089/", timeout=2).status_code == 200,
              "Locust web UI", ui)
        assert _listening_on(8089) == {"127.0.0.1"}  # loopback only
        out_dir, bench_dir = ROOT / "out", ROOT / "bench-out"
        had = {d: d.exists() for d in (out_dir, bench_dir)}
        out = run(block(FIRST_LINES[10]), ROOT, env, tmp_path / "headless.log", 600)
        stats = (out_dir / "spike_stats.csv").read_text()
        rows = {ln.split(",")[1]: ln.split(",") for ln in stats.splitlines()[1:]}
        # how many of the 1,000 join within the shape depends on the machine: the run
        # itself fails if no viewer joined or anything failed (exit code checked above)
        assert int(rows["join"][2]) > 0 and int(rows["join"][3]) == 0, stats
        assert int(rows["pin"][2]) > 0 and int(rows["pinned fan-out"][2]) > 0, stats
        assert '"orders_per_s"' in out
        assert "livecart" in out
        for d, existed in had.items():  # leave the checkout as it was
            if not existed:
                shutil.rmtree(d, ignore_errors=True)


def test_code_checks(tmp_path: Path) -> None:
    run(block(FIRST_LINES[11]), ROOT, env_for(tmp_path), tmp_path / "checks.log", 300)
