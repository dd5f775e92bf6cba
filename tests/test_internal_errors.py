"""A bug is ours, not the client's and not the store's: a command, a route or a store reply
we did not expect answers `internal` (HTTP 500) with a request id that is in the reply and
in the logged traceback, never `unavailable`, and it never counts toward the client's
abuse limit (docs/protocol.md, "Error codes")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.errors import ApiError, ErrorCode
from server.valkey.store import Store
from tests.helpers import TOO_BIG, ServerThread, WsClient

pytestmark = pytest.mark.anyio


async def test_a_bug_in_a_command_is_internal_with_a_request_id(
        server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(client: Any, args: Any) -> Any:
        raise RuntimeError("a bug")

    server.node.dispatcher.handlers["ping"] = broken
    c = await WsClient.connect(server.ws_url)
    for _ in range(3):
        err = await c.err("ping")
        assert err["code"] == "internal" and len(err["request_id"]) == 16, err
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == err["request_id"]]
    assert logged and logged[0].exc_info is not None
    await c.close()


async def test_internal_errors_do_not_count_toward_abuse(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(abuse_errors=3)

    async def broken(client: Any, args: Any) -> Any:
        raise RuntimeError("a bug")

    server.node.dispatcher.handlers["ping"] = broken
    c = await WsClient.connect(server.ws_url)
    for _ in range(6):
        assert (await c.err("ping"))["code"] == "internal"
    assert (await c.ok("leave")) == {"left": None}
    await c.close()


async def test_a_bug_in_an_http_route_is_500_internal(
        server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(pid: str) -> Any:
        raise RuntimeError("a bug")

    server.node.products.get = broken
    r = server.http("GET", "/api/products/p1")
    assert r.status_code == 500, r.text
    error = r.json()["error"]
    assert error["code"] == "internal" and error["request_id"]
    assert any(getattr(rec, "request_id", None) == error["request_id"] for rec in caplog.records)


async def test_a_store_reply_we_did_not_expect_is_internal_not_unavailable(
        valkey_url: str) -> None:
    store = Store(valkey_url)
    try:
        with pytest.raises(ApiError) as info:  # what `join {since: 2^64-1}` used to send
            await store.call("XRANGE", "lc:x", f"{TOO_BIG + 1}-0", "+")
        assert info.value.code is ErrorCode.INTERNAL and info.value.details["request_id"]
        with pytest.raises(ApiError) as info:
            await store.call("NO-SUCH-COMMAND")
        assert info.value.code is ErrorCode.INTERNAL
        with pytest.raises(ApiError) as info:
            await store.call("EVAL", "return redis.error_reply('OOM command not allowed')", 0)
        assert info.value.code is ErrorCode.UNAVAILABLE  # the store cannot serve: an outage
    finally:
        await store.close()
