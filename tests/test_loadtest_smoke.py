"""Smoke tests of the load tests themselves: correctness, never speed.

1. The bench (livecart only, a few hundred viewers, a few seconds): every viewer joins
   and receives every pinned event, in order, with no gaps.
2. The Locust viewer scenario, headless in its own process (gevent must not meet this
   process's asyncio), against a real `livecart serve --demo --ephemeral`: exits 0 with
   zero failures under `--exit-code-on-error 1`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from loadtest import bench
from tests.procs import stop_process

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def test_bench_smoke_every_viewer_gets_every_event_in_order(tmp_path: Path) -> None:
    args = bench.parse(["--servers", "livecart", "--viewers", "300", "--spread", "1",
                        "--settle", "0.3", "--pins", "2", "--pin-gap", "0.1", "--rate", "20",
                        "--duration", "2", "--burst", "2", "--drain-timeout", "15",
                        "--workers", "2", "--quiet-pins", "40", "--out", str(tmp_path),
                        "--no-plots", "--no-progress"])
    assert bench.main_args(args) == 0
    result = orjson.loads((tmp_path / "result.json").read_bytes())
    res = result["rounds"][0]["livecart"]
    assert "error" not in res, res
    assert res["join"]["joined"] == 300 and res["join"]["errors"] == 0
    for pin in res["single_pin"]["pins"]:
        assert pin["received"] == 300 and pin["behind"] == 0 and pin["order_errors"] == 0
    st = res["stream"]
    assert st["send_errors"] == 0 and st["published"] == 40
    assert st["order_errors"] == 0 and st["behind_at_end"] == 0
    assert st["delivered"] == st["expected"] == 40 * 300
    # the bursts on the same connections: pings, the storm (exactly the deal's units), orders
    assert res["ping_burst"]["replies"] == {"ok": 300}
    assert res["storm"]["replies"] == {"ok": 100, "sold_out": 200}
    assert res["orders"]["replies"] == {"ok": 300}
    assert result["reference"]["count"] == 5000 and result["reference"]["usec_per"] > 0
    assert result["reference"]["one_at_a_time"]["count"] == 1250  # each reply awaited
    floors = result["reference"]["floors"]  # a pin's and an order's, beside the reference
    assert floors["pin"]["count"] == floors["order"]["count"] == 5000
    assert floors["pin"]["usec_per"] > 0 and floors["order"]["usec_per"] > 0
    assert res["storm"]["valkey"]["usec_per"] > 0
    assert res["quiet_pins"]["ok"] == 40 and res["quiet_pins"]["valkey"]["usec_per"] > 0
    md = (tmp_path / "result.md").read_text()
    assert md.count("| livecart |") == 2  # the fan-out table and the bursts table
    assert "storm p99 / ping p99 (livecart)" in md
    assert "Valkey per pin / reference (livecart)" in md
    assert "Floor of a pin on the same Valkey" in md and "Floor of an order" in md
    assert "The same reference sent one call at a time" in md


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    # no ffmpeg demo stream: these runs are about the WebSocket load, not the video
    env = {**os.environ, "LIVECART_LOG_LEVEL": "warning", "LIVECART_DEMO_STREAM": "0"}
    env.pop("LIVECART_REDIS_URL", None)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(BIN / "livecart"), "serve", "--demo", "--ephemeral", "--port",
                             "0"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(rb"ready on (http://[\d.]+:\d+)", (tmp_path / "server.log").read_bytes())
            if m:
                break
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        else:
            raise AssertionError("server did not start")
        yield m.group(1).decode()
    finally:
        stop_process(proc)
        log.close()


def test_locust_viewer_scenario_headless(demo_server: str, tmp_path: Path) -> None:
    env = {**os.environ, "LC_PIN_EVERY_S": "0.5"}
    env.pop("LC_SHAPE", None)
    env.pop("LIVECART_SECRET", None)
    out = subprocess.run(
        [str(BIN / "locust"), "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
         "--host", demo_server, "-u", "20", "-r", "20", "-t", "5s", "--stop-timeout", "3",
         "--csv", str(tmp_path / "run"), "--exit-code-on-error", "1", "--only-summary",
         "CreatorUser", "ViewerUser"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    stats = (tmp_path / "run_stats.csv").read_text()
    rows = {line.split(",")[1]: line.split(",") for line in stats.splitlines()[1:]}
    assert "pinned fan-out" in rows, stats
    assert int(rows["pinned fan-out"][2]) > 0  # request count
    assert all(int(r[3]) == 0 for r in rows.values()), stats  # failure counts


def _locust(host: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    for name in ("LC_SHAPE", "LIVECART_SECRET"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run(
        [str(BIN / "locust"), "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
         "--host", host, "--stop-timeout", "3", "--csv", str(tmp_path / "run"),
         "--only-summary", *args],
        cwd=ROOT, env=full, capture_output=True, text=True, timeout=90)


def _stats(tmp_path: Path) -> dict[str, list[str]]:
    lines = (tmp_path / "run_stats.csv").read_text().splitlines()[1:]
    return {line.split(",")[1]: line.split(",") for line in lines}


def test_the_storm_shape_pins_deals_and_buys_them(demo_server: str, tmp_path: Path) -> None:
    out = _locust(demo_server, tmp_path, LC_SHAPE="storm", LC_USERS="20", LC_RAMP_S="1",
                  LC_HOLD_S="4", LC_DEAL_EVERY_S="2")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _stats(tmp_path)
    assert int(rows["pin deal"][2]) >= 2 and int(rows["pin deal"][3]) == 0
    assert "pin" not in rows  # the deal creator pins deals only
    assert int(rows["buy_now deal"][2]) >= 20  # every buyer bought into a deal


def test_the_deal_creator_has_no_plain_pin_task() -> None:
    code = ("import loadtest.locustfile as f; "
            "print(sorted(t.__name__ for t in f.DealCreatorUser.tasks))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['pin_deal']"


def test_a_run_that_did_not_do_its_job_fails(demo_server: str, tmp_path: Path) -> None:
    # buyers without a deal creator: no request fails, but no buy_now is ever sent
    out = _locust(demo_server, tmp_path, "-u", "5", "-r", "5", "-t", "3s", "StormBuyerUser")
    assert out.returncode == 1, out.stderr[-3000:]
    assert "StormBuyerUser never succeeded at 'buy_now deal'" in out.stderr
    # a deal size no product can hold: the deal creator fails and says why
    out = _locust(demo_server, tmp_path, "-u", "1", "-r", "1", "-t", "8s", "DealCreatorUser",
                  LC_DEAL_STOCK="100000")  # time to start and pin even on a loaded box
    assert out.returncode == 1
    assert "has the 100000 units in stock a deal needs" in out.stdout + out.stderr, \
        (out.stdout + out.stderr)[-4000:]
    # viewers of a session that does not exist never join
    out = _locust(demo_server, tmp_path, "-u", "3", "-r", "3", "-t", "3s", "ViewerUser",
                  LC_SESSION="sess_nope")
    assert out.returncode == 1
    assert "ViewerUser never succeeded at 'join'" in out.stderr


def test_an_ended_show_fails_the_run_at_once(demo_server: str, tmp_path: Path) -> None:
    import httpx2 as httpx

    token = httpx.post(demo_server + "/api/tokens",
                       json={"sub": "creator_demo", "role": "creator"}).json()["token"]
    for action in ("start", "end"):
        r = httpx.post(f"{demo_server}/api/sessions/sess_demo_live/{action}",
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    started = time.monotonic()
    out = _locust(demo_server, tmp_path, LC_SHAPE="storm", LC_USERS="5", LC_RAMP_S="1",
                  LC_HOLD_S="30")
    assert out.returncode == 1
    assert time.monotonic() - started < 25  # it stopped instead of running its 31 s
    assert "sess_demo_live is ended" in out.stderr and "livecart demo reset" in out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_the_spike_recipe_with_two_processes(demo_server: str, tmp_path: Path) -> None:
    """The README's headless recipe, small: the master judges the workers' stats."""
    out = _locust(demo_server, tmp_path, "--processes", "2", LC_SHAPE="spike", LC_USERS="40",
                  LC_RAMP_S="1", LC_HOLD_S="3", LC_DOWN_S="1")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _stats(tmp_path)
    assert int(rows["join"][2]) == 40 and int(rows["join"][3]) == 0
    assert int(rows["pin"][2]) >= 1


def test_the_chatstorm_shape_chats_and_keeps_pins_only_viewers_quiet(
        demo_server: str, tmp_path: Path) -> None:
    out = _locust(demo_server, tmp_path, LC_SHAPE="chatstorm", LC_USERS="12", LC_RAMP_S="1",
                  LC_HOLD_S="4", LC_PIN_EVERY_S="0.5", LC_CHAT_EVERY_S="0.5")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = _stats(tmp_path)
    for name in ("chat", "chat fan-out", "join pins-only", "pinned fan-out"):
        assert name in rows and int(rows[name][2]) > 0, (name, rows.keys())
    assert "chat to pins-only" not in rows
    assert int(rows["chat"][3]) == 0 and int(rows["join pins-only"][3]) == 0


def test_scriptcost_places_every_order_and_pin_and_reports_the_ratios() -> None:
    import asyncio

    from loadtest import scriptcost

    lines: list[str] = []
    out = asyncio.run(scriptcost.measure(64, 1, report=lines.append))
    # measure() itself asserts the product sold and the sessions counted every order and pin
    row = out["per_round"][0]
    measured = ("reference", "order_alone", "order_batched", "pin")
    assert set(row) == {f"{m}{part}" for m in measured for part in ("_us", "_commands_us")} \
        | {"alone_ratio", "batched_ratio", "pin_ratio"}
    # every script spends time inside the commands it calls
    assert all(row[f"{m}_commands_us"] > 0 for m in measured), row
    assert out["orders_per_call"] == 32 and len(lines) == 1 and "32 per call" in lines[0]
    assert "pin.lua" in lines[0]
    with pytest.raises(SystemExit):  # not a multiple of the orders per call
        scriptcost.main(["--orders", "33"])
