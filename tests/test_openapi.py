"""The OpenAPI document says exactly what the server accepts and returns.

schemathesis (a dev dependency) runs with every check it has (`--checks all`: no 5xx,
status codes, content types, response schemas, valid data accepted, invalid data
rejected, 405 with Allow, auth not ignored, created resources found, ...) over every
operation, in all its phases (coverage, fuzzing, stateful), against a real server on real
Valkey. Examples are bounded and the seed fixed so the run is short and repeatable;
tests/schemathesis_hooks.py applies the rules between items that JSON Schema cannot say.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from server.api.routes import ROUTES
from tests.helpers import ServerThread

# Input, wire and schema checks: on the standalone store only (the stateful tests run on
# the cluster too).
pytestmark = pytest.mark.stores("standalone")


HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
MAX_EXAMPLES = 12


def _seed_formats(server: ServerThread) -> dict[str, str]:
    """A live session with an auction and a giveaway: the reads of those have data (the
    hooks put these ids in valid requests of their paths)."""
    import asyncio
    import time

    from tests.helpers import WsClient

    server.product("st_prize", stock=5)
    sid = server.session(["st_prize"], creator="st_creator")

    async def run() -> tuple[str, str]:
        c = await WsClient.connect(server.ws_url, token=server.token("st_creator", "creator"))
        await c.ok("join", session=sid)
        a = await c.ok("auction", product="st_prize", start_price=100, increment=10,
                       duration_s=600)
        g = await c.ok("giveaway", product="st_prize", winners=1,
                       ends_at=int(time.time() * 1000) + 600_000)
        await c.close()
        return str(a["auction"]["id"]), str(g["giveaway"]["id"])

    aid, gid = asyncio.run(run())
    return {"LC_ST_SESSION": sid, "LC_ST_AUCTION": aid, "LC_ST_GIVEAWAY": gid}


@pytest.mark.e2e
def test_schemathesis_every_check_passes(server: ServerThread, tmp_path: Path) -> None:
    token = server.token("st-admin", "admin")  # admin: every operation reaches its logic
    seeded = _seed_formats(server)
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.base}/openapi.json",
           "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "13",
           "--workers", "1", "--request-timeout", "10",
           "-H", f"Authorization: Bearer {token}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "NO_COLOR": "1", **seeded}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    report = run.stdout[-8000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "No issues found" in run.stdout, report
    assert "Tested: 28" in run.stdout, report  # every operation of the document


def test_the_document_names_every_route_and_method(server: ServerThread) -> None:
    doc = httpx.get(f"{server.base}/openapi.json").json()
    documented = {(path, m.upper()) for path, item in doc["paths"].items()
                  for m in item if m != "parameters"}
    served = {(r.path, m) for r in ROUTES for m in (r.methods or ()) if m != "HEAD"}
    assert served | {("/openapi.json", "GET")} == documented
