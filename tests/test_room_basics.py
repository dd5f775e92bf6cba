from __future__ import annotations

import asyncio

import pytest

from tests.helpers import ServerThread, WsClient

pytestmark = pytest.mark.anyio


async def test_pin_reaches_every_viewer_in_both_codecs(server: ServerThread) -> None:
    server.product("p1")
    sid = server.session(["p1"])
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    viewers = [await WsClient.connect(server.ws_url, use_msgpack=bool(i % 2)) for i in range(4)]
    for v in [creator, *viewers]:
        snap = await v.ok("join", session=sid)
        assert snap["status"] == "live" and snap["pinned"] is None
    result = await creator.ok("pin", product="p1")
    assert result["pinned"]["product"]["id"] == "p1"
    for v in viewers:
        ev = await v.wait_event("pinned")
        assert ev["seq"] == result["seq"]
        assert ev["d"]["product"]["id"] == "p1"
        assert ev["d"]["stream_ts_ms"] >= 0
    await asyncio.gather(*(v.close() for v in [creator, *viewers]))
