"""README.md's other blocks, run as written: installing, several nodes, a cluster, the code
checks (tests/test_readme.py has the ones that serve on :8000)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.readme_blocks import (
    FIRST_LINES,
    ROOT,
    block,
    env_for,
    ready,
    require_free,
    run,
    running,
    until,
)

pytestmark = pytest.mark.e2e


# --- the blocks --------------------------------------------------------------------------

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


def test_code_checks(tmp_path: Path) -> None:
    run(block(FIRST_LINES[11]), ROOT, env_for(tmp_path), tmp_path / "checks.log", 300)
