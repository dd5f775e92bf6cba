"""What an operator sees: logs (one JSON record per line, one INFO line per go-live, end,
deal and order), /metrics (business and process metrics), viewer counts without the
creator's own console, `livecart orders tail`, `livecart demo reset` and the CLI's help,
version, environment list and token refusal."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from server.auth import issue_token
from server.runtime.orders_tail import tail
from server.settings import ENV, Settings, env_table
from server.valkey.keys import Keys
from tests.helpers import SECRET, ServerThread, WsClient, unique_prefix
from tests.procs import NodeProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
LIVECART = str(Path(sys.executable).parent / "livecart")


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")}
    base["COLUMNS"] = "200"  # argparse wraps help to the terminal width
    return subprocess.run([LIVECART, *args], capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})}, cwd=cwd or ROOT)


async def _deal_then_buy(base: str, ws_url: str, *, sid: str | None = None) -> dict[str, Any]:
    """Create p1 and a live session over HTTP, pin a 1-unit deal, buy it (sold out),
    unpin, end. Returns the order."""
    seller = issue_token(SECRET, "s1", "seller", 600)
    creator = issue_token(SECRET, "c1", "creator", 600)
    auth = {"Authorization": f"Bearer {creator}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.post("/api/products", headers={"Authorization": f"Bearer {seller}"},
                            json={"id": "p1", "title": "Mug", "price": 1500, "stock": 5,
                                  "commission_bps": 1000})
        assert r.status_code == 201, r.text
        r = await http.post("/api/sessions", headers=auth,
                            json={"kind": "live", "title": "t", "showcase": ["p1"]})
        sid = r.json()["id"]
        assert (await http.post(f"/api/sessions/{sid}/start", headers=auth)).status_code == 200
    c = await WsClient.connect(ws_url, token=creator)
    await c.ok("join", session=sid)
    await c.ok("pin", product="p1", deal={"price": 999, "stock": 1, "per_buyer_limit": 1,
                                          "ends_at": int(time.time() * 1000) + 60_000})
    buyer = await WsClient.connect(ws_url, token=issue_token(SECRET, "b1", "viewer", 600))
    await buyer.ok("join", session=sid)
    order = await buyer.ok("buy_now", product="p1", qty=1, idempotency_key="k1", price=999)
    await buyer.ok("buy_now", product="p1", qty=1, idempotency_key="k1", price=999)  # retry
    await buyer.wait_event("sold_out")
    await c.ok("unpin")
    await c.ok("end")
    await c.close()
    await buyer.close()
    return dict(order)


@pytest.mark.e2e
async def test_logs_are_json_with_one_info_line_per_business_event(valkey_url: str) -> None:
    node = NodeProcess(valkey_url, unique_prefix(), "ops-node", LIVECART_LOG_LEVEL="info",
                       LIVECART_LOG_FORMAT="json").start()
    try:
        order = await _deal_then_buy(node.base, node.ws_url)
    finally:
        node.stop()
    lines = [ln for ln in node.output if ln.strip()]
    docs = [orjson.loads(ln) for ln in lines]  # every line is one JSON record
    assert sum("livecart ready on http://127.0.0.1:" in d["msg"] for d in docs) == 1

    def info(fragment: str) -> list[dict[str, Any]]:
        return [d for d in docs if d["level"] == "info" and fragment in d["msg"]]

    sid = order["lines"][0]["session"]
    for fragment in ("session went live", "deal opened on p1", "deal closed on p1",
                     "session ended"):
        found = info(fragment)
        assert len(found) == 1 and found[0]["session"] == sid, (fragment, found)
    placed = info(f"order {order['id']} placed")
    assert len(placed) == 1  # the idempotent retry placed nothing new
    assert placed[0]["order"] == order["id"] and placed[0]["session"] == sid
    assert placed[0]["total"] == 999 and placed[0]["user"] == "b1"
    assert info("deal opened")[0]["deal"].startswith("deal_")


@pytest.mark.e2e
async def test_json_logs_carry_node_and_session_and_never_tokens(valkey_url: str) -> None:
    node = NodeProcess(valkey_url, unique_prefix(), "log-node", LIVECART_LOG_LEVEL="info",
                       LIVECART_LOG_FORMAT="json").start()
    try:
        seller = issue_token(SECRET, "s1", "seller", 60)
        creator = issue_token(SECRET, "c1", "creator", 60)
        httpx.post(node.base + "/api/products", headers={"Authorization": f"Bearer {seller}"},
                   json={"id": "p1", "title": "t", "price": 100, "stock": 1,
                         "commission_bps": 0})
        r = httpx.post(node.base + "/api/sessions", headers={"Authorization": f"Bearer {creator}"},
                       json={"kind": "live", "title": "t", "showcase": ["p1"]})
        sid = r.json()["id"]
        httpx.post(node.base + f"/api/sessions/{sid}/start",
                   headers={"Authorization": f"Bearer {creator}"})
        c = await WsClient.connect(node.ws_url, token=creator)
        await c.ok("join", session=sid)
        await c.ok("pin", product="p1")
        await c.close()
    finally:
        node.stop()
    lines = [ln for ln in node.output if ln.startswith("{")]
    docs = [orjson.loads(ln) for ln in lines]
    assert docs and all(d["node"] == "log-node" for d in docs)
    assert any(d.get("session") == sid and "pinned" in d["msg"] for d in docs)
    assert creator not in "".join(node.output)
    # no log line per connection (a join spike would write one per viewer)
    assert not any("accepted" in d["msg"] or "connection open" in d["msg"] for d in docs)


async def test_metrics_count_orders_units_gmv_sold_out_and_the_process(
        server: ServerThread) -> None:
    await _deal_then_buy(server.base, server.ws_url)
    text = server.http("GET", "/metrics").text
    assert 'livecart_orders_total{currency="USD"} 1.0' in text
    assert 'livecart_units_total{currency="USD"} 1.0' in text
    assert 'livecart_gmv_minor_total{currency="USD"} 999.0' in text
    assert "livecart_sold_out_events_total 1.0" in text
    for family in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                   "process_open_fds"):
        assert family in text, family


async def test_metric_families(server: ServerThread) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    c = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    await c.ok("join", session=sid)
    await c.ok("pin", product="p1")
    await c.wait_event("pinned")
    text = server.http("GET", "/metrics").text
    for family in ("livecart_connections", "livecart_rooms", "livecart_joined_viewers",
                   "livecart_events_published_total", "livecart_events_received_total",
                   "livecart_events_delivered_total", "livecart_slow_consumer_evictions_total",
                   "livecart_store_errors_total", "livecart_store_reconnects_total",
                   "livecart_command_seconds_bucket", "livecart_fanout_seconds_bucket"):
        assert family in text, family
    assert 'livecart_command_seconds_count{op="pin",outcome="ok"} 1.0' in text
    await c.close()


async def test_the_creators_console_is_not_a_viewer(server: ServerThread) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    snap = await creator.ok("join", session=sid)
    await creator.drain(0.7)  # ticks with the creator alone in the room: 0 viewers
    alone = [snap["counters"]["viewers"],
             *(e["d"]["viewers"] for e in creator.events if e["t"] == "counters")]
    assert set(alone) == {0}  # the snapshot's count and every push (pushed on change only)
    viewers = [await WsClient.connect(server.ws_url) for _ in range(2)]
    for v in viewers:
        await v.ok("join", session=sid)
    ev = await creator.wait_event(lambda e: e["t"] == "counters" and e["d"]["viewers"] == 2)
    assert ev["d"]["viewers"] == 2
    await creator.drain(0.6)  # ticks later it still says 2: never 3 (or 1 before they came)
    counters = [e["d"]["viewers"] for e in creator.events if e["t"] == "counters"]
    assert counters[-1] == 2 and max(counters) == 2
    report = server.http("GET", f"/api/sessions/{sid}/report",
                         token=server.token("creator1", "creator")).json()
    assert report["viewers"]["unique"] == 2
    for c in (creator, *viewers):
        await c.close()


async def test_orders_tail_reads_every_stream_with_a_consumer_group(
        server: ServerThread) -> None:
    order = await _deal_then_buy(server.base, server.ws_url)
    keys = Keys(server.settings.key_prefix)
    store_url = server.node.store.url
    lines: list[str] = []
    notes: list[str] = []
    # a fresh group from the start sees the order; a second run of the same group sees
    # nothing new (acknowledged), a new group without --from-start waits for new entries
    got = await tail(store_url, keys, "billing", "w1", from_start=True, limit=1,
                     write=lines.append, note=notes.append)
    assert got == 1 and "created group 'billing'" in notes[0]
    doc = orjson.loads(lines[0])
    assert doc["stream"] in keys.orders_streams()
    assert doc["type"] == "order" and doc["order"] == order["id"] and doc["total"] == 999
    assert doc["json"]["lines"][0]["product"] == "p1"
    again: list[str] = []
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(tail(store_url, keys, "billing", "w1", from_start=True,
                                    limit=1, write=again.append, note=notes.append), 1.5)
    assert again == [] and "continues where it stopped" in notes[-1]


async def test_orders_tail_on_a_fresh_store_creates_the_stream(valkey_url: str) -> None:
    keys = Keys(unique_prefix())
    with pytest.raises(TimeoutError):  # no XGROUP error on a store without the stream
        await asyncio.wait_for(tail(valkey_url, keys, "g", "c", write=print,
                                    note=lambda _: None), 1.5)


@pytest.mark.e2e
def test_cli_orders_tail_and_demo_reset_on_the_embedded_store(tmp_path: Path) -> None:
    """`livecart orders tail` finds the embedded Valkey of the running server on the same
    data dir; `livecart demo reset` refuses while it runs, then restores an ended demo."""
    env = {"LIVECART_DATA_DIR": str(tmp_path / "data"), "LIVECART_LOG_LEVEL": "warning"}
    node = NodeProcess("", "lc", "demo-node", **env)
    node.env = {k: v for k, v in node.env.items()
                if k not in ("LIVECART_REDIS_URL", "LIVECART_KEY_PREFIX", "LIVECART_SECRET")}
    node.start("--demo")
    try:
        creator = httpx.post(node.base + "/api/tokens",
                             json={"sub": "creator_demo", "role": "creator"}).json()["token"]
        auth = {"Authorization": f"Bearer {creator}"}
        for action in ("start", "end"):
            r = httpx.post(f"{node.base}/api/sessions/sess_demo_live/{action}", headers=auth)
            assert r.status_code == 200, r.text
        seller = httpx.post(node.base + "/api/tokens",
                            json={"sub": "seller_demo", "role": "seller"}).json()["token"]
        r = httpx.post(node.base + "/api/orders", headers={"Authorization": f"Bearer {seller}"},
                       json={"external_id": "x1", "buyer": "bob",
                             "lines": [{"product": "demo_mug", "qty": 2, "unit_price": 1500}]})
        assert r.status_code == 201, r.text
        out = run_cli("orders", "tail", "--from-start", "--limit", "1", env=env)
        assert out.returncode == 0, out.stderr
        assert orjson.loads(out.stdout)["order"] == r.json()["id"]
        refused = run_cli("demo", "reset", env=env)
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        node.stop()
    no_server = run_cli("orders", "tail", "--limit", "1", env=env)
    assert no_server.returncode == 1 and "no livecart server is running" in no_server.stderr
    done = run_cli("demo", "reset", env=env)
    assert done.returncode == 0, done.stderr
    node = NodeProcess("", "lc", "demo-node-2", **env)
    node.env = {k: v for k, v in node.env.items()
                if k not in ("LIVECART_REDIS_URL", "LIVECART_KEY_PREFIX", "LIVECART_SECRET")}
    node.start("--demo")
    try:
        live = httpx.get(node.base + "/api/sessions/sess_demo_live").json()
        assert live["status"] == "scheduled"
        assert httpx.get(node.base + "/api/orders/" + r.json()["id"],
                         headers={"Authorization": f"Bearer {seller}"}).status_code == 404
    finally:
        node.stop()


def test_demo_reset_refuses_a_store_with_other_sessions(server: ServerThread,
                                                       valkey_url: str) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    env = {"LIVECART_REDIS_URL": valkey_url, "LIVECART_KEY_PREFIX": server.settings.key_prefix}
    out = run_cli("demo", "reset", env=env)
    assert out.returncode == 1 and "--force" in out.stderr and sid in out.stderr
    assert server.http("GET", f"/api/sessions/{sid}").status_code == 200  # untouched


def test_token_refuses_without_a_secret_unless_demo() -> None:
    refused = run_cli("token", "--sub", "ana", "--role", "viewer")
    assert refused.returncode == 2 and refused.stdout == ""
    assert "LIVECART_SECRET" in refused.stderr and "--demo" in refused.stderr
    demo = run_cli("token", "--sub", "ana", "--role", "viewer", "--demo")
    assert demo.returncode == 0 and demo.stdout.count(".") == 2
    signed = run_cli("token", "--sub", "ana", "--role", "viewer",
                     env={"LIVECART_SECRET": SECRET})
    from server.auth import verify_token

    assert verify_token(SECRET, signed.stdout.strip()).sub == "ana"


def test_help_version_and_the_environment_list() -> None:
    assert run_cli("--version").stdout.strip() == "livecart 0.1.0"
    top = run_cli("--help").stdout
    for var in ENV:  # the list comes from server/settings.py
        assert var.name in top
    serve = run_cli("serve", "--help").stdout
    assert "(default: 8000)" in serve and "(default: 127.0.0.1)" in serve
    assert "throw-away directory" in serve
    # every command and every option has a description (COLUMNS=200: one line each)
    commands = [[], ["serve"], ["valkey"], ["token"], ["env"], ["demo"], ["demo", "reset"],
                ["orders"], ["orders", "tail"]]
    for command in commands:
        out = run_cli(*command, "--help")
        assert out.returncode == 0, command
        usage, description = out.stdout.split("\n\n")[:2]
        assert usage.startswith("usage: livecart") and len(description) > 10, command
        options = [ln for ln in out.stdout.splitlines() if re.match(r"  (-\w, )?--\w", ln)]
        assert options, command
        for line in options:
            assert re.match(r"  \S.*\S  +\S", line), (command, line)  # option, then help
    tail_help = run_cli("orders", "tail", "--help").stdout
    assert "(default: livecart-tail)" in tail_help and "MKSTREAM" in tail_help
    assert run_cli("env").stdout.strip() == env_table()
    defaults = Settings()
    assert f"| `LIVECART_RATE_BURST` | {defaults.rate_burst} |" in env_table(markdown=True)
