"""README.md's "Several nodes" and "On a Valkey / Redis Cluster" blocks, run as written
(tests/readme_blocks.py): three nodes on one store, two on a 3-master cluster, each node
seeing the others' sessions. One file: both serve on :8001 and :8002."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.readme_blocks import (
    FIRST_LINES,
    block,
    env_for,
    ready,
    require_free,
    running,
    until,
)

pytestmark = pytest.mark.e2e


# --- the blocks --------------------------------------------------------------------------

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
