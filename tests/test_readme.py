"""Every command in README.md runs as written (tests/readme_blocks.py runs them).

Each ```sh block of the README is run by bash exactly as it stands in the README (no test
copies a command); the tests know only which blocks exist (their first lines, so a new or
changed block fails here until it is run too), which ones start servers, and what to check
while they run. This file has the blocks that serve on :8000 (run one after another); the
others are in tests/test_readme_install.py, test_readme_scaling.py and
test_readme_code_checks.py, so that they can run side by side with these."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest

from tests.readme_blocks import (
    BLOCKS,
    FIRST_LINES,
    README,
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
        # how many of the 500 join within the shape depends on the machine: the run
        # itself fails if no viewer joined or anything failed (exit code checked above)
        assert int(rows["join"][2]) > 0 and int(rows["join"][3]) == 0, stats
        assert int(rows["pin"][2]) > 0 and int(rows["pinned fan-out"][2]) > 0, stats
        assert '"orders_per_s"' in out
        assert "livecart" in out
        for d, existed in had.items():  # leave the checkout as it was
            if not existed:
                shutil.rmtree(d, ignore_errors=True)
