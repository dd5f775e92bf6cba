"""On one Valkey a pin without a deal is one script that reads the product itself
(`Scripts.pin_reading_product`); otherwise (a deal, a deal pinned, a cluster) the node
reads session and product first. Both must answer and leave the same: two servers on the
standalone Valkey run the same pins, one forced through the node's reads, and every key
they wrote is compared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from server.valkey.embedded import EmbeddedValkey
from tests.conftest import make_settings
from tests.helpers import ServerThread, WsClient
from tests.test_order_place import _dump, _normal

pytestmark = pytest.mark.anyio

QUIET = {"counters_interval_s": 3600.0, "social_interval_s": 3600.0}


async def _read_first(*_: Any) -> None:
    return None  # "a deal is pinned": the node's reads and pin.lua with the product JSON


@pytest.fixture
def pair(valkey: EmbeddedValkey) -> Iterator[tuple[ServerThread, ServerThread]]:
    one = ServerThread(make_settings(**QUIET), valkey.url).start()
    reads = ServerThread(make_settings(**QUIET), valkey.url).start()
    reads.node.scripts.pin_reading_product = _read_first  # type: ignore[method-assign]
    yield one, reads
    one.stop()
    reads.stop()


async def _pins(server: ServerThread) -> tuple[str, str, list[Any]]:
    """Pins, a deal and the plain pin that closes it, an unpin, and every refusal."""
    server.product("p1", price=1000, stock=10)
    server.product("p2", title='Mug / "AC/DC" ünïcode', price=500, stock=3)
    server.product("p9")  # in no showcase
    sid = server.session(["p1", "p2"])
    later = server.session(["p1"], start=False)
    seen: list[Any] = []
    creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
    ann = await WsClient.connect(server.ws_url, token=server.token("ann"))
    await creator.ok("join", session=sid)
    await ann.ok("join", session=sid)
    seen.append(await creator.ok("pin", product="p1", stream_ts_ms=1000))
    seen.append(await creator.ok("pin", product="p2", stream_ts_ms=2000))
    ends = int(time.time() * 1000) + 600_000
    seen.append(await creator.ok("pin", product="p1", stream_ts_ms=3000, deal={
        "price": 800, "stock": 2, "per_buyer_limit": 1, "ends_at": ends}))
    seen.append(await creator.ok("pin", product="p2", stream_ts_ms=4000))  # closes the deal
    seen.append(await creator.ok("unpin", stream_ts_ms=5000))
    seen.append(await creator.ok("pin", product="p2", stream_ts_ms=6000))
    seen.append(await creator.ok("pin", product="p1", stream_ts_ms=7000, deal={
        "price": 700, "stock": 1, "per_buyer_limit": 1, "ends_at": ends}))
    seen.append(await creator.ok("unpin", stream_ts_ms=8000))  # closes that deal
    for args in ({"product": "nope"}, {"product": "p9"}, {"product": "p1", "session": "sess_nope"},
                 {"product": "p1", "session": later}):
        seen.append(await creator.err("pin", **args))
    seen.append(await ann.err("pin", product="p1"))
    await asyncio.sleep(0.2)
    await ann.ok("ping")
    seen.append([(e["t"], e["seq"], e["d"]) for e in ann.events])
    seen.append(server.http("GET", "/api/products/p2").json())
    await creator.close()
    await ann.close()
    return sid, later, seen


async def test_a_pin_reading_its_product_answers_and_writes_as_the_node_read(
        pair: tuple[ServerThread, ServerThread], valkey: EmbeddedValkey) -> None:
    one, reads = pair
    sid_one, later_one, seen_one = await _pins(one)
    sid_reads, later_reads, seen_reads = await _pins(reads)
    assert _normal(seen_one, sid_one) == _normal(seen_reads, sid_reads)
    codes = [x["code"] for x in seen_one[8:13]]
    assert codes == ["not_found", "bad_request", "not_found", "not_live", "forbidden"]
    assert seen_one[8]["product"] == "nope" and seen_one[10]["session"] == "sess_nope"
    # the product in the events is the product as the API shows it (the script's JSON)
    events, product = seen_one[13], seen_one[14]
    assert [t for t, _, _ in events] == ["pinned", "pinned", "pinned", "deal", "pinned",
                                         "unpinned", "pinned", "pinned", "deal", "unpinned"]
    assert [seq for _, seq, _ in events] == sorted(seq for _, seq, _ in events)
    assert events[6][2]["product"] == product and events[6][2]["deal"] is None
    assert events[8][2]["status"] == "closed" and events[9][2]["product"] == "p1"
    r = aioredis.from_url(valkey.url)
    try:
        state_one = await _dump(r, one.settings.key_prefix, sid_one)
        state_reads = await _dump(r, reads.settings.key_prefix, sid_reads)
    finally:
        await r.aclose()

    def parsed(state: dict[str, Any], later: str) -> Any:
        # the script's JSON escapes "/" (valid JSON, the same text once parsed)
        text = orjson.dumps(state).decode().replace(later, "LATER")
        out = orjson.loads(text.replace("\\\\/", "/"))
        # sets of session ids: their order was the random ids' order
        return {k: sorted(v) if k.endswith(":sessions") else v for k, v in out.items()}

    assert parsed(state_one, later_one) == parsed(state_reads, later_reads)
    assert '\\/' in orjson.dumps(state_one).decode()  # the one-script pin did write the JSON
    assert state_one[":{s:SID}:counters"]["pins"] == "6"


async def test_a_pin_on_one_valkey_is_one_script(valkey: EmbeddedValkey) -> None:
    server = ServerThread(make_settings(**QUIET), valkey.url).start()
    r = aioredis.from_url(valkey.url)
    try:
        server.product("p1")
        server.product("p2")
        sid = server.session(["p1", "p2"])
        creator = await WsClient.connect(server.ws_url, token=server.token("creator1", "creator"))
        await creator.ok("join", session=sid)
        await asyncio.sleep(0.3)  # the join's reads are done
        before = await r.info("commandstats")
        for i in range(20):
            await creator.ok("pin", product=f"p{1 + i % 2}")
        after = await r.info("commandstats")

        def calls(name: str) -> int:
            return int(after.get(f"cmdstat_{name}", {}).get("calls", 0)) - \
                int(before.get(f"cmdstat_{name}", {}).get("calls", 0))

        assert calls("evalsha") == 20  # one pin.lua each
        assert calls("hgetall") == 0  # no session or product read before it
        await creator.close()
    finally:
        server.stop()
        await r.aclose()
